"""Runs every benchmark suite and writes its tables: DIR/results.md and DIR/results.json.

  python benches/run_all.py --out DIR            # every suite (about 15-25 minutes)
  python benches/run_all.py --quick --out DIR    # every suite at its smallest size (a smoke)
  python benches/run_all.py --suites mcts,cem --out DIR
  wmfast bench --all --out DIR                   # the same, from the command line

Every figure is a median over interleaved rounds with its min-max (ratios are taken within each
round), on one torch thread; the machine (CPU, cores, load average before and after, versions,
commit) heads the report. The README's tables are pasted from results.md.
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: one BLAS thread, one-threaded jax)

# isort: split
import argparse
import datetime
import importlib
import shlex
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness
import torch

# Suite name -> module; each module has run(quick, large) -> list[harness.Table].
SUITES = {"tabular": "bench_tabular", "mcts": "bench_mcts", "cem": "bench_cem",
          "native": "bench_native", "muzero": "bench_muzero"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md/.json")
    parser.add_argument("--quick", action="store_true",
                        help="each suite at its smallest size, few rounds: a smoke, not figures")
    parser.add_argument("--large", action="store_true",
                        help="also the largest cases (value iteration at S=1e5: minutes a round)")
    parser.add_argument("--suites", default=",".join(SUITES),
                        help=f"comma-separated subset of {','.join(SUITES)}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.suites.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        parser.error(f"--suites: unknown suite(s) {unknown or names}; expected a subset of "
                     f"{','.join(SUITES)}")
    args.suites = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    info = harness.machine()
    info["command"] = "python benches/run_all.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    info["started"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["load_before"] = harness.load_average()
    info["quick"] = args.quick
    start = time.perf_counter()
    tables, failed = [], []
    for name in args.suites:
        print(f"== {name} (load {harness.load_average()})", flush=True)
        suite_start = time.perf_counter()
        try:
            module = importlib.import_module(SUITES[name])
            suite_tables = module.run(quick=args.quick, large=args.large)
        except Exception:  # noqa: BLE001  (one broken suite must not lose the others' figures)
            traceback.print_exc()
            failed.append(name)
            continue
        for table in suite_tables:
            print(table.markdown(), flush=True)
        tables += suite_tables
        print(f"   {name}: {time.perf_counter() - suite_start:.0f} s", flush=True)
    info["load_after"] = harness.load_average()
    info["seconds"] = time.perf_counter() - start
    info["failed_suites"] = failed
    harness.write_report(args.out, info, tables)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
