"""The ``wmfast`` command line: ``wmfast info``, ``wmfast demo NAME``, ``wmfast bench``."""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import os
import platform
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence

DESCRIPTION = """\
wmfast: fast planning for model-based reinforcement learning (batched MuZero tree search,
CEM/MPPI/iCEM, tabular models, imagination rollouts), run in C++ over PyTorch models.

commands:
  wmfast info                 versions, the torch wmfast was built against, devices, threads
  wmfast demo                 list the demos
  wmfast demo NAME [OPTIONS]  run a demo (wmfast demo NAME --help for its options)
  wmfast bench [PYTEST_ARGS]  run the benchmark suites of a source checkout (benches/)
  wmfast bench --all --out DIR  every suite's tables (medians, spreads, the machine) into DIR
"""

BENCH_HELP = """\
The benchmarks are not part of the installed package: they are the benches/ folder of the
wmfast source tree (pytest-benchmark suites, and scripts such as benches/bench_mcts.py that time
wmfast beside its baselines). To run them, get the wmfast source, install the test extras and
run them from its root folder:

  pip install --no-build-isolation ".[test]"    # in the source folder, torch installed first
  wmfast bench                                  # or: wmfast bench --folder PATH/TO/benches
  wmfast bench --all --out DIR [--quick]        # benches/run_all.py: every README table

The README's Benchmarks section summarises their results."""

_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """Strips reStructuredText inline literals (````x```` becomes ``x``) from help text."""
    return _LITERAL.sub(r"\1", text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks, shows it as plain text and shows every default.

    An option's help gets ``(default: X)`` unless it already names its default, or the default is
    None or False (flags).
    """

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _format_action(self, action: argparse.Action) -> str:
        # argparse prints no help line for an option without help text: give it one that shows
        # its default, on a copy (the parser's own action stays as it was).
        if not action.help and _shows_default(action):
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain_text(action.help or "")
        if "default" in text or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return bool(action.option_strings) and not (
        default is None or default is False or default is argparse.SUPPRESS
        or isinstance(action, argparse._HelpAction))


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


def demo_summary(name: str) -> str:
    """The first line of a demo module's docstring, read without importing the module."""
    spec = importlib.util.find_spec(f"wmfast.demos.{name.replace('-', '_')}")
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as file:
        doc = ast.get_docstring(ast.parse(file.read())) or ""
    first = plain_text(doc.strip().split("\n\n")[0].replace("\n", " "))
    prefix = f"wmfast demo {name}:"
    return first[len(prefix):].strip() if first.startswith(prefix) else first


def demo_list() -> str:
    from wmfast.demos import DEMOS

    width = max(len(name) for name in DEMOS)
    lines = [f"  {name:<{width}}  {demo_summary(name)}".rstrip() for name in sorted(DEMOS)]
    return "\n".join(lines)


def demo(args: argparse.Namespace) -> int:
    from wmfast.demos import DEMOS

    if args.name is None:
        print("usage: wmfast demo NAME [OPTIONS]   (wmfast demo NAME --help for its options)\n")
        print("demos:")
        print(demo_list())
        return 0
    return DEMOS[args.name](args.demo_args)


def bench(args: argparse.Namespace) -> int:
    """Runs the pytest-benchmark suites in the source checkout's benches/ folder."""
    folder = args.folder or os.path.join(os.getcwd(), "benches")
    if not os.path.isdir(folder):
        where = "given by --folder" if args.folder else "in the current folder"
        print(f"wmfast bench: no benches/ folder at {folder} ({where}).\n\n{BENCH_HELP}",
              file=sys.stderr)
        return 2
    if args.all:
        if args.out is None:
            print("wmfast bench --all: --out DIR is required (results.md and results.json go "
                  "there)", file=sys.stderr)
            return 2
        # The tables come from benches/run_all.py, in its own process: it pins numpy's and jax's
        # thread counts before they load.
        command = [sys.executable, os.path.join(folder, "run_all.py"), "--out", args.out,
                   *(["--quick"] if args.quick else []), *(["--large"] if args.large else []),
                   *(["--suites", args.suites] if args.suites else [])]
        return subprocess.run(command, check=False).returncode
    missing = [module for module in ("pytest", "pytest_benchmark")
               if importlib.util.find_spec(module) is None]
    if missing:
        print(f"wmfast bench: {' and '.join(missing)} not installed; the benchmark suites need "
              f"the test extras: pip install --no-build-isolation \".[test]\" (in the source "
              f"folder).", file=sys.stderr)
        return 2
    import pytest

    return int(pytest.main([folder, "--benchmark-only", "-q", *args.pytest_args]))


def build_parser() -> argparse.ArgumentParser:
    from wmfast.demos import DEMOS

    parser = argparse.ArgumentParser(prog="wmfast", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "info", help="versions, build, devices, threads", formatter_class=HelpFormatter,
        description=textwrap.fill(
            "Prints the versions of wmfast, Python, numpy and torch, the torch wmfast was built "
            "against, the build type, the devices and the thread counts.", 79),
    ).set_defaults(run=info)
    demo_parser = commands.add_parser(
        "demo", help="list the demos, or run one (wmfast demo NAME --help for its options)",
        formatter_class=HelpFormatter,
        description=textwrap.fill(
            "Runs a demo; with no NAME, lists them. Every demo takes --seed and --out DIR; "
            "wmfast demo NAME --help shows its options.", 79),
        epilog="demos:\n" + demo_list())
    demo_parser.add_argument("name", nargs="?", choices=sorted(DEMOS), metavar="NAME",
                             help="the demo to run: " + ", ".join(sorted(DEMOS)))
    demo_parser.add_argument("demo_args", nargs=argparse.REMAINDER, metavar="OPTIONS",
                             help="the demo's own options (wmfast demo NAME --help)")
    demo_parser.set_defaults(run=demo)
    bench_parser = commands.add_parser(
        "bench", help="run the benchmark suites of a source checkout (benches/)",
        formatter_class=HelpFormatter,
        description="Runs the pytest-benchmark suites of a wmfast source checkout with "
                    "--benchmark-only.\n\n" + BENCH_HELP)
    bench_parser.add_argument("--folder", default=None,
                              help="the benches/ folder (default: ./benches)")
    bench_parser.add_argument("--all", action="store_true",
                              help="run benches/run_all.py: every suite's tables, as medians "
                                   "over interleaved rounds with spreads, into --out DIR")
    bench_parser.add_argument("--out", default=None, metavar="DIR",
                              help="with --all: the folder for results.md and results.json (required "
                                   "there; no default)")
    bench_parser.add_argument("--quick", action="store_true",
                              help="with --all: each suite at its smallest size (a smoke)")
    bench_parser.add_argument("--large", action="store_true",
                              help="with --all: also the largest cases (minutes each)")
    bench_parser.add_argument("--suites", default=None,
                              help="with --all: a comma-separated subset of tabular,mcts,cem,"
                                   "native,muzero (default: all of them)")
    bench_parser.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                              help="passed on to pytest (for example -k mcts)")
    bench_parser.set_defaults(run=bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
