"""Type checks: the .pyi stubs match the compiled modules, and mypy passes on the docs' examples
and on the public modules listed below (runs when mypy is installed: pip install ".[typing]")."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import DOCS, code_blocks, pages

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "wmfast"

# Modules mypy checks strictly (errors reported). The others are followed silently: at the time
# of writing mypy reports errors in mcts.py, cem.py, tabular.py, agents/, demos/, dreamer/losses.py,
# dreamer/nets.py, dreamer/rssm.py, muzero/networks.py and muzero/distributed.py.
CHECKED = [
    "__init__.py", "_core.pyi", "_torch.pyi", "_build_info.pyi", "_convert.py", "_torch_ext.py",
    "cli.py", "imagination.py", "native.py", "transforms.py", "muzero/__init__.py",
    "muzero/config.py", "muzero/loss.py", "muzero/reanalyse.py", "muzero/replay.py",
    "muzero/selfplay.py", "muzero/stochastic.py", "dreamer/__init__.py", "dreamer/config.py",
    "dreamer/distributions.py", "dreamer/world_model.py", "agents/__init__.py",
]


def stub_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names - {"__all__"}


@pytest.mark.parametrize("module", ["_core", "_torch"])
def test_stubs_name_what_the_compiled_module_has(module):
    if module == "_torch":
        from wmfast import _torch_ext

        compiled = _torch_ext.load()
    else:
        compiled = importlib.import_module(f"wmfast.{module}")
    public = {name for name in dir(compiled) if not name.startswith("_")}
    assert stub_names(PACKAGE / f"{module}.pyi") == public, (
        f"python/wmfast/{module}.pyi is stale: regenerate it (see its first lines)")


def test_typed_marker_and_license():
    assert (PACKAGE / "py.typed").exists()
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def docs_examples(folder: Path) -> list[Path]:
    """Writes the runnable python blocks of each docs page into one module per page."""
    written = []
    for page in pages():
        code = [body for _, language, body, runs in code_blocks(page)
                if language == "python" and runs]
        if code:
            name = str(page.relative_to(DOCS)).replace("/", "_").replace("-", "_")[:-3]
            path = folder / f"docs_{name}.py"
            path.write_text("\n".join(code), encoding="utf-8")
            written.append(path)
    return written


def test_mypy_passes_on_the_public_api_and_the_docs_examples(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[typing]')")
    examples = docs_examples(tmp_path)
    assert examples
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--follow-imports=silent", "--cache-dir", str(ROOT / ".mypy_cache"),
               "--python-executable", sys.executable, "--no-error-summary",
               *[str(PACKAGE / name) for name in CHECKED], *map(str, examples)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
