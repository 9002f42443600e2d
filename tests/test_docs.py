"""The documentation's examples run, and the site builds without broken references.

Every fenced ``python`` block in docs/**/*.md runs, the blocks of a page in order in one
namespace (a page's later examples may use names its earlier ones defined), in a temporary
folder. A block preceded by the line ``<!-- docs: no-run -->`` is shown but not run (a command
that takes minutes, or needs a network or an optional extra). ``mkdocs build --strict`` runs
when mkdocs is installed (pip install ".[docs]").
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NO_RUN = "<!-- docs: no-run -->"
FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(path: Path) -> list[tuple[int, str, str, bool]]:
    """(first line number, language, code, runs) for each fenced block of a Markdown page."""
    blocks = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match:
            start, language = i, match.group(1)
            runs = start > 0 and lines[start - 1].strip() == NO_RUN
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"{path}:{start + 1}: unclosed code block")
            blocks.append((start + 2, language, "\n".join(body) + "\n", not runs))
        i += 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []


def python_pages() -> list[Path]:
    return [page for page in pages()
            if any(language == "python" and runs for _, language, _, runs in code_blocks(page))]


def test_the_docs_have_runnable_examples():
    assert len(python_pages()) >= 6


@pytest.mark.parametrize("page", python_pages(), ids=lambda page: str(page.relative_to(DOCS)))
def test_examples_run(page, tmp_path, monkeypatch):
    import numpy as np
    import torch

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    np.random.seed(0)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    default_dtype = torch.get_default_dtype()
    threads = torch.get_num_threads()
    try:
        for line, language, code, runs in code_blocks(page):
            if language != "python" or not runs:
                continue
            # Offset the code so that tracebacks give the Markdown file's line numbers.
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # noqa: S102
    finally:
        torch.set_default_dtype(default_dtype)
        torch.set_num_threads(threads)


def test_no_run_marks_precede_code_blocks():
    for page in pages():
        lines = page.read_text(encoding="utf-8").split("\n")
        for number, text in enumerate(lines):
            if text.strip() == NO_RUN:
                following = lines[number + 1] if number + 1 < len(lines) else ""
                assert following.startswith("```"), (
                    f"{page}:{number + 1}: {NO_RUN} must stand right before a code block")


def test_every_page_is_in_the_navigation():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace(
        "!!python/name:", ""))

    def listed(nav) -> set[str]:
        found: set[str] = set()
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found |= listed(value) if isinstance(value, list) else {value}
        return found

    in_nav = listed(config["nav"])
    on_disk = {str(page.relative_to(DOCS)) for page in pages()}
    assert on_disk == in_nav


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
         "--config-file", str(ROOT / "mkdocs.yml")],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "wmfast" / "index.html").exists()
