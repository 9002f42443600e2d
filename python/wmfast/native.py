"""NativeModel: a torch model compiled ahead of time, run by wmfast's C++ core without Python.

``NativeModel.export`` traces a module or function with ``torch.export`` (with a dynamic batch
dimension), compiles it with AOTInductor into a ``.pt2`` package and loads it in C++ through
libtorch. Packages are cached by content, so exporting the same model twice does not recompile,
and can be saved and shipped: ``NativeModel.load(path)`` needs no Python source of the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wmfast import _torch_ext, _validate
from wmfast._convert import to_tensor

__all__ = ["ExportError", "NativeModel"]

_MAX_BATCH = 1 << 20
# The manifest wmfast adds to every package it writes: the SHA-256 of every other member and the
# specs, checked before torch's loader sees the package.
_MANIFEST = "extra/wmfast_manifest.json"
_MANIFEST_FORMAT = 1


# Inductor settings of every package. By default Inductor writes small 1-D weights (<= 8
# entries: a policy head's bias) into the kernels as literals, and replaces weights of one
# uniform value (a zero-initialised head) and what is computed from them by `full` calls: such
# weights are then not constants of the package, and load_weights could not replace them.
_COMPILE_OPTIONS = {"always_keep_tensor_constants": True, "joint_graph_constant_folding": False}


class ExportError(RuntimeError):
    """A model could not be exported (torch.export or AOTInductor failed)."""


def default_cache_dir() -> Path:
    """$WMFAST_CACHE, else ~/.cache/wmfast: where exported packages are kept."""
    root = os.environ.get("WMFAST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wmfast")
    return Path(root) / "native"


class _Forward(nn.Module):
    """Wraps a module, a bound method of a module or a function as the module torch.export
    traces, flattening a dataclass/tuple output into a tuple of tensors."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.method = None
        if isinstance(fn, nn.Module):
            self.inner, self.method = fn, "forward"
        elif inspect.ismethod(fn) and isinstance(fn.__self__, nn.Module):
            self.inner, self.method = fn.__self__, fn.__name__
        else:
            self.fn = fn
            # A method of a plain object holding modules (muzero.SearchModel holds its network):
            # the modules are registered here, so that their weights are the package's named
            # weights (inner.<attribute>.<parameter>, replaceable by load_weights) and part of
            # the cache key.
            owner = getattr(fn, "__self__", None) if inspect.ismethod(fn) else None
            modules = {name: value for name, value in vars(owner).items()
                       if isinstance(value, nn.Module)} if owner is not None else {}
            if modules:
                self.inner = nn.ModuleDict(modules)

    def call(self, *inputs: torch.Tensor) -> Any:
        if self.method is not None:
            return getattr(self.inner, self.method)(*inputs)
        return self.fn(*inputs)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in _flatten(self.call(*inputs))[0] if t is not None)


def _flatten(output: Any) -> tuple[list[torch.Tensor | None], str, list[str]]:
    """(tensors, type path, field names) of a model output."""
    if isinstance(output, torch.Tensor):
        return [output], "tensor", []
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        fields = [f.name for f in dataclasses.fields(output)]
        kind = f"{type(output).__module__}:{type(output).__qualname__}"
        return [getattr(output, name) for name in fields], kind, fields
    if isinstance(output, (tuple, list)):
        return list(output), "tuple", []
    raise ExportError(f"the model must return a tensor, a tuple of tensors or a dataclass of "
                      f"tensors, got {type(output).__name__}")


def _spec(tensors: Sequence[torch.Tensor]) -> str:
    return ";".join(f"{str(t.dtype).removeprefix('torch.')}:{','.join(map(str, t.shape[1:]))}"
                    for t in tensors)


def _fingerprint(wrapper: _Forward, example_inputs: Sequence[torch.Tensor],
                 num_threads: int, weight_values: bool = True) -> str:
    """A key that changes when the code, the weights (their values, or with
    ``weight_values=False`` only their names, shapes and dtypes), the input specs, the threads or
    torch change."""
    digest = hashlib.sha256()
    digest.update(f"manifest{_MANIFEST_FORMAT}|".encode())  # packages without one are not reused
    digest.update(f"{_COMPILE_OPTIONS}|".encode())
    digest.update(f"{torch.__version__}|{_spec(example_inputs)}|{num_threads}|".encode())
    digest.update(str([x.device for x in example_inputs]).encode())
    target = getattr(wrapper.inner, wrapper.method) if wrapper.method else wrapper.fn
    try:
        digest.update(inspect.getsource(target).encode())
    except (OSError, TypeError):
        digest.update(repr(target).encode())
    # The code of every module class involved (the exported method's owner holds modules whose
    # forward it calls: a subclass that changes them must not reuse the package).
    for kind in dict.fromkeys(type(m) for m in wrapper.modules() if m is not wrapper):
        digest.update(f"{kind.__module__}.{kind.__qualname__}|".encode())
        try:
            digest.update(inspect.getsource(kind).encode())
        except (OSError, TypeError):
            pass
    if weight_values:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in wrapper.state_dict().items()}, buffer)
        digest.update(buffer.getvalue())
    else:
        digest.update(b"weights by name|")
        digest.update(str([(k, tuple(v.shape), v.dtype)
                           for k, v in wrapper.state_dict().items()]).encode())
    return digest.hexdigest()[:32]


class NativeModel:
    """A model exported with AOTInductor that the C++ core runs without the GIL.

    Attributes:
      path: the ``.pt2`` package.
      device: where the model runs ("cpu", "cuda:0").
      input_specs / output_specs: per-input/output dtype and shape, e.g. "float32[B, 64]".
    """

    def __init__(self, path: str | os.PathLike, *, num_runners: int | None = None) -> None:
        """Loads a package written by ``export`` (or ``save``).

        ``num_runners`` model instances (default: the CPU count, at most 4) let that many threads
        call the model at once: ``MCTS(num_threads=k)`` gives each thread its own shard of trees
        and model calls when k <= num_runners.
        """
        if num_runners is None:
            num_runners = min(4, os.cpu_count() or 1)
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no native model package at {path!r}")
        num_runners = _validate.as_int(num_runners, "num_runners", 1, 1024)
        specs = verify_package(path)
        ext = _torch_ext.load()
        self._native = _load_cleaning_up(ext, path, num_runners)
        metadata = self._native.metadata
        got = (metadata.get("wmfast_inputs"), metadata.get("wmfast_outputs"))
        if got != specs:
            raise ValueError(f"native model package {path!r}: its metadata (inputs {got[0]!r}, "
                             f"outputs {got[1]!r}) disagrees with its manifest (inputs "
                             f"{specs[0]!r}, outputs {specs[1]!r}); refusing to run it")
        self._output_type = metadata.get("wmfast_output_type", "tuple")
        self._output_fields = [f for f in metadata.get("wmfast_output_fields", "").split(",") if f]
        self._output_none = {f for f in metadata.get("wmfast_output_none", "").split(",") if f}

    @classmethod
    def load(cls, path: str | os.PathLike, *, num_runners: int | None = None) -> NativeModel:
        """Loads a package written by ``export`` or ``save`` (the same as the constructor)."""
        return cls(path, num_runners=num_runners)

    @classmethod
    def export(cls, fn: Callable[..., Any], example_inputs: Sequence[torch.Tensor], *,
               cache_dir: str | os.PathLike | None = None, num_runners: int | None = None,
               num_threads: int | None = None, max_batch: int = _MAX_BATCH,
               cache_by_weights: bool = True) -> NativeModel:
        """Exports ``fn`` (a module, a bound method of a module such as
        ``model.recurrent_inference``, or a function of tensors) for inputs shaped like
        ``example_inputs`` with any batch size from 1 to ``max_batch``.

        The package is cached under ``cache_dir`` (default: $WMFAST_CACHE or ~/.cache/wmfast)
        by a fingerprint of the code, the weights, the input specs and the torch version.
        AOTInductor compiles the number of CPU threads of each kernel into the package:
        ``num_threads`` (default: ``torch.get_num_threads()`` now) is part of the fingerprint.
        Export with ``num_threads=1`` to run one shard of trees per thread
        (``MCTS(num_threads=k)``).

        ``cache_by_weights=False`` leaves the weights' values out of the cache key (their names,
        shapes and dtypes stay in): a cached package compiled for other values of the same
        parameters is reused, and the module's current weights are put into it with
        ``load_weights``. A model whose weights keep changing (a learner's) then compiles once.
        This needs the weights to be parameters or buffers of the exported module (or of the
        modules held by the exported method's object); tensors captured otherwise are compiled
        in as they are.

        Raises ExportError, with torch's reason, when the model cannot be exported; such a model
        still runs as a Python callback (pass the model itself to the planner).
        """
        if num_threads is None:
            num_threads = torch.get_num_threads()
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        example_inputs = tuple(example_inputs)
        if not example_inputs or not all(isinstance(x, (torch.Tensor, np.ndarray))
                                         for x in example_inputs):
            raise TypeError("example_inputs must be a non-empty sequence of tensors (or numpy "
                            f"arrays), got {[type(x).__name__ for x in example_inputs]}")
        example_inputs = tuple(to_tensor(x, f"example_inputs[{i}]")
                               for i, x in enumerate(example_inputs))
        batch = example_inputs[0].shape[0] if example_inputs[0].dim() else 0
        if any(x.dim() == 0 or x.shape[0] != batch for x in example_inputs):
            raise ValueError("example_inputs must share a leading batch dimension, got shapes "
                             f"{[tuple(x.shape) for x in example_inputs]}")
        devices = {x.device for x in example_inputs}
        if len(devices) != 1:
            raise ValueError(f"example_inputs must be on one device, got {sorted(map(str, devices))}")
        if batch < 2:  # a batch of 1 would be specialised by torch.export
            example_inputs = tuple(torch.cat([x, x]) for x in example_inputs)
        # One tensor passed as two inputs is traced as one input: the package would then read
        # the first of them for both. Inputs sharing memory are copied apart.
        storages: set[int] = set()
        separate = []
        for x in example_inputs:
            key = x.untyped_storage().data_ptr()
            separate.append(x.clone() if key in storages else x)
            storages.add(key)
        example_inputs = tuple(separate)
        wrapper = _Forward(fn)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / (f"{_fingerprint(wrapper, example_inputs, num_threads, cache_by_weights)}"
                         ".pt2")
        cached = path.exists()
        if not cached:
            _compile(wrapper, example_inputs, path, max_batch, num_threads)
        model = cls(path, num_runners=num_runners)
        if cached and not cache_by_weights and hasattr(wrapper, "inner"):
            model.load_weights(wrapper.inner, prefix="inner.")
        return model

    def save(self, path: str | os.PathLike) -> None:
        """Copies the package to ``path`` (load it back with ``NativeModel.load``).

        Raises ValueError after ``load_weights``: the package holds the exported weights, not the
        loaded ones (export the model again to save those)."""
        if self.weights_version:
            raise ValueError(
                f"this NativeModel's weights were replaced by load_weights "
                f"({self.weights_version} time(s)); its package {self.path!r} holds the exported "
                "weights, not these: export the model again to save them")
        shutil.copyfile(self.path, path)

    @property
    def weights(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The compiled model's weights (its AOTInductor constants): {name: (shape, dtype)},
        named as in the exported module (the module or the owner of the exported method is
        ``inner``, e.g. ``inner.dynamics.0.weight``)."""
        return {name: (tuple(shape), dtype) for name, shape, dtype in self._native.constants}

    @property
    def weights_version(self) -> int:
        """How many times ``load_weights`` replaced the weights (0: the exported ones)."""
        return self._native.weights_version

    def load_weights(self, source: nn.Module | dict[str, torch.Tensor], *,
                     prefix: str | None = None, strict: bool = True) -> list[str]:
        """Replaces the compiled model's weights in place, without recompiling, in every runner
        (AOTInductor's constant buffers), from an ``nn.Module`` or a ``state_dict`` with the
        parameter names, shapes and dtypes of the exported module.

        Names: ``source``'s names are matched to the model's (``weights``) under a prefix, found
        by itself (``inner.`` for an exported module or method, ``inner.network.`` when the
        exported method's owner holds the module as ``network``, ...) or given as ``prefix``.

        Args:
          source: the module (its parameters and buffers) or a state_dict.
          prefix: the prefix of the model's weight names that ``source``'s names lack.
          strict: every weight of the model under the prefix must be in ``source`` (False: the
            missing ones keep their values).

        Returns:
          ``source``'s names the compiled model does not use (e.g. the parameters of functions
          that were not exported), which were ignored.

        Raises ValueError (naming the weight) for a missing weight, or a wrong shape or dtype;
        nothing changes then.

        Threads: a call waits for the searches (``MCTS.search``) and plans (``CEM.plan``) running
        with this model, which see one set of weights from start to end; a direct call
        (``native(...)``) sees either the old or the new weights.
        """
        tensors = _named_tensors(source)
        if self._native.metadata.get("wmfast_weights_replaceable") != "1":
            raise ValueError(
                f"load_weights: the native model package {self.path!r} was compiled by an older "
                "wmfast, which let Inductor write small or uniform weights into its kernels: they "
                "cannot be replaced. Export the model again")
        names = self.weights
        if prefix is None:
            prefix = _weights_prefix(list(names), list(tensors))
        elif not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
        wanted = {name[len(prefix):]: name for name in names if name.startswith(prefix)}
        if strict:
            missing = sorted(set(wanted) - set(tensors))
            if missing:
                raise ValueError(
                    f"load_weights: source has no {missing[0]!r} (the model's weight "
                    f"{prefix + missing[0]!r}, shape {list(names[prefix + missing[0]][0])}); "
                    f"{len(missing)} of the model's {len(wanted)} weights under prefix "
                    f"{prefix!r} are missing: {missing[:6]}. Pass strict=False to keep them")
        update = {}
        for key, tensor in tensors.items():
            name = wanted.get(key)
            if name is None:
                continue
            shape, dtype = names[name]
            if tuple(tensor.shape) != shape or str(tensor.dtype).removeprefix("torch.") != dtype:
                raise ValueError(
                    f"load_weights: weight {key!r} has shape {list(tensor.shape)} and dtype "
                    f"{str(tensor.dtype).removeprefix('torch.')}: the native model's {name!r} "
                    f"has shape {list(shape)} and dtype {dtype}")
            update[name] = tensor.detach()
        self._native.load_weights(update)
        return sorted(k for k in tensors if k not in wanted)

    @property
    def path(self) -> str:
        return self._native.path

    @property
    def device(self) -> torch.device:
        return torch.device(self._native.device)

    @property
    def input_specs(self) -> list[str]:
        return list(self._native.input_specs)

    @property
    def output_specs(self) -> list[str]:
        return list(self._native.output_specs)

    def __call__(self, *inputs: Any) -> Any:
        """Runs the model from C++ (shapes, dtypes and device checked) and rebuilds the output
        (torch tensors, on the model's device). Numpy arrays and lists are taken as CPU tensors,
        floating point in ``torch.get_default_dtype()``."""
        outputs = list(self._native.run([x if isinstance(x, torch.Tensor)
                                         else to_tensor(x, f"input {i}")
                                         for i, x in enumerate(inputs)]))
        if self._output_type == "tensor":
            return outputs[0]
        if self._output_type == "tuple":
            return tuple(outputs)
        module, _, qualname = self._output_type.partition(":")
        kind: Any = importlib.import_module(module)
        for part in qualname.split("."):
            kind = getattr(kind, part)
        values = iter(outputs)
        return kind(**{f: None if f in self._output_none else next(values)
                       for f in self._output_fields})

    def __repr__(self) -> str:
        return (f"NativeModel({self.path!r}, device={self._native.device}, "
                f"inputs={self.input_specs}, outputs={self.output_specs})")


def _named_tensors(source: Any) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        # named_buffers: non-persistent buffers are constants of the model too
        return {**dict(source.named_buffers()), **source.state_dict()}
    if isinstance(source, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                        for k, v in source.items()):
        return dict(source)
    raise TypeError("load_weights: source must be an nn.Module or a state_dict (a dict of str "
                    f"to tensors), got {type(source).__name__}")


def _weights_prefix(names: list[str], keys: list[str]) -> str:
    """The prefix under which most of ``keys`` are model weight ``names``."""
    counts: dict[str, int] = {}
    known = set(names)
    for name in names:
        for key in keys:
            if name == key or name.endswith("." + key):
                prefix = name[:len(name) - len(key)]
                counts[prefix] = counts.get(prefix, 0) + 1
    if not counts:
        raise ValueError(
            f"load_weights: none of source's {len(keys)} names ({keys[:4]}...) is a weight of "
            f"the native model (its weights: {sorted(known)[:6]}...)")
    best = max(counts.values())
    prefixes = sorted(p for p, c in counts.items() if c == best)
    if len(prefixes) > 1:
        raise ValueError(f"load_weights: source's names match the model's weights under several "
                         f"prefixes {prefixes}; pass prefix= to choose")
    return prefixes[0]


def _package_root(names: Sequence[str]) -> str:
    roots = {name.split("/", 1)[0] for name in names if "/" in name}
    return next(iter(roots)) if len(roots) == 1 else ""


def _member_digests(archive: zipfile.ZipFile, skip: str) -> dict[str, str]:
    digests = {}
    for info in archive.infolist():
        if info.filename == skip or info.is_dir():
            continue
        digest = hashlib.sha256()
        with archive.open(info) as member:  # zipfile checks the member's CRC-32 as it reads
            for block in iter(lambda: member.read(1 << 20), b""):
                digest.update(block)
        digests[info.filename] = digest.hexdigest()
    return digests


def _write_manifest(path: str, metadata: dict[str, str]) -> None:
    """Adds wmfast's manifest (member digests and specs) to a freshly written package."""
    with zipfile.ZipFile(path, "a") as archive:
        root = _package_root(archive.namelist())
        name = f"{root}/{_MANIFEST}" if root else _MANIFEST
        manifest = {"format": _MANIFEST_FORMAT, "inputs": metadata["wmfast_inputs"],
                    "outputs": metadata["wmfast_outputs"],
                    "members": _member_digests(archive, skip=name)}
        archive.writestr(name, json.dumps(manifest, sort_keys=True))


def verify_package(path: str) -> tuple[str, str]:
    """Checks a package before torch's loader opens it (a corrupted shared library inside would
    crash the process there): a zip archive whose members match their CRC-32 and wmfast's
    manifest (SHA-256 of every member, so a changed metadata file is caught too). Returns the
    manifest's (input specs, output specs); raises ValueError naming the path otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            root = _package_root(names)
            name = f"{root}/{_MANIFEST}" if root else _MANIFEST
            if name not in names:
                raise ValueError(
                    f"native model package {path!r} has no wmfast manifest ({_MANIFEST}): it was "
                    "not written by this version of wmfast.NativeModel.export (or was altered); "
                    "export the model again")
            manifest = json.loads(archive.read(name))
            digests = _member_digests(archive, skip=name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError,
            json.JSONDecodeError, KeyError, ValueError, RuntimeError, zlib.error) as error:
        if isinstance(error, ValueError) and "native model package" in str(error):
            raise
        raise ValueError(f"native model package {path!r} is corrupted: "
                         f"{type(error).__name__}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        raise ValueError(f"native model package {path!r}: unknown manifest format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    expected = manifest.get("members")
    if expected != digests:
        changed = sorted(set(expected or {}) ^ set(digests)
                         | {k for k in digests if (expected or {}).get(k) != digests[k]})
        raise ValueError(f"native model package {path!r} does not match its manifest "
                         f"(changed, added or missing members: {changed[:5]}); refusing to load "
                         "it: export the model again")
    inputs, outputs = manifest.get("inputs"), manifest.get("outputs")
    if not isinstance(inputs, str) or not isinstance(outputs, str):
        raise ValueError(  # noqa: TRY004 - a damaged file, not a wrong argument type
            f"native model package {path!r}: its manifest lacks the input/output specs; "
            "export the model again")
    return inputs, outputs


_EXTRACT_DIR = re.compile(r"^[A-Za-z0-9]{6}$")


def _extraction_dirs() -> set[str]:
    # torch's loader extracts a package into /tmp/XXXXXX (mkdtemp) and leaves it when it fails.
    try:
        return {e.path for e in os.scandir("/tmp") if _EXTRACT_DIR.match(e.name) and e.is_dir()}
    except OSError:
        return set()


def _load_cleaning_up(ext: Any, path: str, num_runners: int) -> Any:
    """Loads through the C++ runner; after a failed load, removes the folders torch's loader
    extracted this package into (new /tmp/XXXXXX folders holding this package's files)."""
    before = _extraction_dirs()
    try:
        return ext.NativeModel(path, num_runners)
    except BaseException:
        with zipfile.ZipFile(path) as archive:
            members = {n.split("/")[-1] for n in archive.namelist() if not n.endswith("/")}
        for folder in _extraction_dirs() - before:
            found = {f for _, _, files in os.walk(folder) for f in files}
            if found and found <= members | {f for f in found if f.endswith((".so", ".o"))}:
                shutil.rmtree(folder, ignore_errors=True)
        raise


def _compile(wrapper: _Forward, example_inputs: tuple[torch.Tensor, ...], path: Path,
             max_batch: int, num_threads: int) -> None:
    with torch.no_grad():
        tensors, kind, fields = _flatten(wrapper.call(*example_inputs))
    if not all(t is None or isinstance(t, torch.Tensor) for t in tensors):
        raise ExportError("every output of the model must be a tensor (or None for an optional "
                          f"dataclass field), got {[type(t).__name__ for t in tensors]}")
    present = [t for t in tensors if t is not None]
    if any(t.dim() == 0 or t.shape[0] != example_inputs[0].shape[0] for t in present):
        raise ExportError("every output must have the batch dimension first, got shapes "
                          f"{[tuple(t.shape) for t in present]}")
    metadata = {
        "wmfast_inputs": _spec(example_inputs),
        "wmfast_outputs": _spec(present),
        "wmfast_device": str(example_inputs[0].device),
        "wmfast_output_type": kind,
        "wmfast_output_fields": ",".join(fields),
        "wmfast_output_none": ",".join(f for f, t in zip(fields, tensors) if t is None),
        "wmfast_num_threads": str(num_threads),
        "wmfast_weights_replaceable": "1",  # compiled with _COMPILE_OPTIONS
    }
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with warnings.catch_warnings():
            # torch's own pytree code trips its own deprecation (a FutureWarning about
            # LeafSpec): nothing the user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                                    category=FutureWarning)
            exported = torch.export.export(
                wrapper, example_inputs,
                dynamic_shapes=(tuple({0: batch} for _ in example_inputs),))
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
                staged = os.path.join(scratch, path.name)
                torch._inductor.aoti_compile_and_package(
                    exported, package_path=staged,
                    inductor_configs={"aot_inductor.metadata": metadata,
                                      "cpp.threads": num_threads, **_COMPILE_OPTIONS})
                _write_manifest(staged, metadata)
                os.replace(staged, path)  # atomic: a concurrent export never sees half a file
    except ExportError:
        raise
    except Exception as error:  # torch raises many kinds; all mean "cannot export"
        raise ExportError(
            f"could not export the model with torch.export/AOTInductor: "
            f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
            f". Pass the model itself to run it as a Python callback instead.") from error
