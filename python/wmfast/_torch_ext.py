"""Loads ``wmfast._torch`` (the libtorch-linked module) after checking the torch it was built for.

A module compiled against one torch minor version may crash or fail with an undefined-symbol
error under another, so the version recorded at build time is compared before the import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REBUILD_COMMAND = "pip install --no-build-isolation --force-reinstall --no-deps ."

_module: ModuleType | None = None


def _minor(version: str) -> tuple[int, ...]:
    release = version.split("+")[0].split(".")
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in release[:2])


def check_torch_version(built_with: str, running: str) -> None:
    """Raises ImportError when the two torch versions differ in their major.minor release."""
    if _minor(built_with) != _minor(running):
        raise ImportError(
            f"wmfast._torch was built against torch {built_with}, but torch {running} is "
            f"installed; extensions that link libtorch must be rebuilt for each torch minor "
            f"version. Rebuild wmfast from its source folder with: {REBUILD_COMMAND}"
        )


def load() -> ModuleType:
    """Returns ``wmfast._torch``, importing it on first use."""
    global _module
    if _module is None:
        import torch

        from wmfast import _build_info

        check_torch_version(_build_info.TORCH_VERSION, torch.__version__)
        _module = importlib.import_module("wmfast._torch")
    return _module
