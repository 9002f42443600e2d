"""scikit-build-core metadata provider: wmfast's version with the torch it is built against.

Like other compiled torch extensions (torchvision, torch-scatter), a wheel of wmfast works only
with the torch it was compiled against, so its version carries that torch as a local version
label: 0.1.0+torch2.13.0.cpu, 0.1.0+torch2.12.0.cu130. The base version is read from
python/wmfast/__init__.py (one place); the torch version from the installed torch's metadata
(the build runs without isolation, against the torch already installed).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

__all__ = ["dynamic_metadata", "local_version"]


def local_version(base: str, torch_version: str) -> str:
    """base + "+torch" + torch's version, its own local label joined by a dot."""
    public, _, label = torch_version.partition("+")
    suffix = f"torch{public}" + (f".{label}" if label else "")
    return f"{base}+{re.sub(r'[^A-Za-z0-9.]', '.', suffix)}"


def dynamic_metadata(field, settings, project=None):  # noqa: ARG001 (the provider protocol)
    if field != "version":
        raise ValueError(f"tools/torch_local_version.py provides the version, not {field!r}")
    init = Path(__file__).resolve().parent.parent / "python" / "wmfast" / "__init__.py"
    match = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no __version__ = \"...\" line in {init}")
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            "wmfast needs torch installed before it is built: pip install torch, then "
            "pip install --no-build-isolation ."
        ) from None
    return local_version(match.group(1), torch_version)
