"""The ``wmfast`` command line: ``wmfast info``, ``wmfast demo NAME``, ``wmfast bench``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence


def info(args: argparse.Namespace) -> int:
    """Prints versions, build type, torch device support and threads."""
    import numpy as np
    import torch

    import wmfast
    from wmfast import _build_info, _torch_ext

    rows = [
        ("wmfast", wmfast.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("numpy", np.__version__),
        ("torch", torch.__version__),
        ("built against torch", _build_info.TORCH_VERSION),
        ("build type", _build_info.BUILD_TYPE),
        ("compiler", _build_info.COMPILER),
    ]
    try:
        ext = _torch_ext.load()
        rows.append(("wmfast._torch", "loaded"))
        rows.append(("built with CUDA torch", str(ext.BUILT_WITH_CUDA)))
    except ImportError as error:
        rows.append(("wmfast._torch", f"NOT LOADED: {error}"))
    cuda = torch.cuda.is_available()
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                         for i in range(torch.cuda.device_count())] if cuda else ["cpu"]
    rows += [
        ("torch CUDA", f"{torch.version.cuda or 'none'} (available: {cuda})"),
        ("devices", ", ".join(devices)),
        ("cpu cores", str(os.cpu_count())),
        ("torch threads", (f"{torch.get_num_threads()} intra-op, "
                           f"{torch.get_num_interop_threads()} inter-op")),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from wmfast.demos import DEMOS

    return DEMOS[args.name](args.demo_args)


def bench(args: argparse.Namespace) -> int:
    """Runs the pytest-benchmark suites in the source checkout's benches/ folder."""
    import pytest

    folder = args.folder or os.path.join(os.getcwd(), "benches")
    if not os.path.isdir(folder):
        print(f"no benches/ folder at {folder}: run from a wmfast source checkout or pass --folder",
              file=sys.stderr)
        return 2
    return int(pytest.main([folder, "--benchmark-only", "-q", *args.pytest_args]))


def main(argv: Sequence[str] | None = None) -> int:
    from wmfast.demos import DEMOS

    parser = argparse.ArgumentParser(prog="wmfast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, build, devices, threads").set_defaults(run=info)
    demo_parser = commands.add_parser(
        "demo", help="run a demo (wmfast demo NAME --help for its options)")
    demo_parser.add_argument("name", choices=sorted(DEMOS))
    demo_parser.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo_parser.set_defaults(run=demo)
    bench_parser = commands.add_parser("bench", help="run the benchmark suites (benches/)")
    bench_parser.add_argument("--folder", default=None)
    bench_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    bench_parser.set_defaults(run=bench)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
