"""Timing and reporting shared by the benchmark suites and ``run_all.py``.

Figures are medians over interleaved rounds with their spread: in every round each contender of
a table row runs once (for at least ``min_seconds``), in a rotated order, so that load from other
processes on a shared machine falls on all of them alike. A ratio is computed within each round
(both contenders timed moments apart) and reported as the median of those per-round ratios with
their min-max, never as the best round of one run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


def _per_call(fn: Callable[[], Any], min_seconds: float) -> float:
    """Mean seconds per call of fn over at least one call and at least min_seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int,
                min_seconds: float = 0.0) -> dict[str, list[float]]:
    """name -> seconds per call in each of `rounds` rounds; every round times each contender
    once, the order rotated from round to round (a contender timed right after another one's
    allocations or cache traffic would otherwise always pay for them). One warm-up call each."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_per_call(fns[name], min_seconds))
    return times


def _busy_seconds() -> float | None:
    """Seconds of CPU time every process on the machine has used (from /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cpu(fn: Callable[[], Any]) -> tuple[Any, float | None]:
    """Runs fn and returns (its result, the cores' worth of CPU that other processes used
    meanwhile): the machine's busy time minus this process's own, over the wall time. On a shared
    machine this says how much a second thread had to compete for (None where /proc is absent;
    clock-tick resolution: meaningful over 0.1 s or more)."""
    busy0, own0, wall0 = _busy_seconds(), time.process_time(), time.perf_counter()
    result = fn()
    busy1, own1, wall1 = _busy_seconds(), time.process_time(), time.perf_counter()
    if busy0 is None or busy1 is None:
        return result, None
    return result, max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)


def spread(samples: list[float]) -> dict[str, float]:
    """Median, quartiles, min and max of a sample (quartiles by the inclusive method)."""
    if not samples:
        raise ValueError("spread of an empty sample")
    ordered = sorted(samples)
    q1, _, q3 = (statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1
                 else (ordered[0],) * 3)
    return {"median": statistics.median(ordered), "q1": q1, "q3": q3, "min": ordered[0],
            "max": ordered[-1], "n": len(ordered)}


def ratios(times: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    """Per-round ratios times[numerator][r] / times[denominator][r] (how many times faster the
    denominator is), each from one round's two timings."""
    return [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]


def fmt_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def fmt_time_cell(samples: list[float]) -> str:
    """'212 ms (205-230)': median and min-max of seconds per call."""
    s = spread(samples)
    unit, scale = next(((u, k) for u, k in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6))
                        if s["median"] >= k), ("ns", 1e-9))
    return f"{s['median'] / scale:.3g} {unit} ({s['min'] / scale:.3g}-{s['max'] / scale:.3g})"


def fmt_ratio_cell(samples: list[float]) -> str:
    """'1.93x (1.71-2.10)': median and min-max of per-round ratios."""
    s = spread(samples)
    return f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"


def fmt_rate_cell(samples: list[float], units: float, scale: float = 1e6,
                  suffix: str = "M") -> str:
    """'3.84M (3.10-4.02M)': median and min-max of units per second from seconds per call."""
    rates = [units / t / scale for t in samples]
    s = spread(rates)
    return f"{s['median']:.3g}{suffix} ({s['min']:.3g}-{s['max']:.3g})"


@dataclass
class Table:
    """One markdown table of a suite, with the raw per-round samples behind it for the JSON."""

    suite: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)

    def add_row(self, cells: list[str]) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, the table {len(self.columns)} columns")
        self.rows.append(cells)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "title": self.title, "columns": self.columns,
                "rows": self.rows, "notes": self.notes, "samples": self.samples}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, versions, commit."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 2**30, 1)
    except (ValueError, OSError):
        memory_gb = None
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("wmfast", "torch", "numpy", "scipy", "jax", "mctx", "gymnasium",
                      "pytest-benchmark")},
        "torch_threads": torch.get_num_threads(),
        "commit": commit,
        "uncommitted_changes": bool(dirty),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_markdown(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    load = info.get("load_before"), info.get("load_after")
    commit = info["commit"] or "unknown"
    if info["uncommitted_changes"]:
        commit += " (with uncommitted changes)"
    return "\n".join([
        f"- command: `{info.get('command', '')}`",
        f"- commit: {commit}",
        (f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
         f"{info['memory_gb']} GiB"),
        f"- load average (1, 5, 15 min): before {load[0]}, after {load[1]}",
        f"- {info['platform']}, Python {info['python']}; {versions}",
        f"- started {info.get('started', '')}, took {info.get('seconds', 0):.0f} s",
    ]) + "\n"


def write_report(out: Path, info: dict[str, Any], tables: list[Table]) -> None:
    """DIR/results.md (machine + every table) and DIR/results.json (the same, with samples)."""
    out.mkdir(parents=True, exist_ok=True)
    body = ["# wmfast benchmarks", "", machine_markdown(info)]
    body += [table.markdown() for table in tables]
    (out / "results.md").write_text("\n".join(body))
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "tables": [table.to_json() for table in tables]}, indent=1))
