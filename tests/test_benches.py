"""The benchmark suites stay runnable: every benches/ suite at its smallest size (a smoke, not
figures: no timing is asserted), through ``wmfast bench --all --quick``, and the pytest-benchmark
suites still collect. About 15-30 s on 2 shared cores (the native suite's export is cached)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"
SUITES = ("tabular", "mcts", "cem", "native", "muzero")

pytestmark = pytest.mark.skipif(not BENCHES.is_dir(), reason="no benches/ folder (installed "
                                "package without the source tree)")


def _run_all(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHES / "run_all.py"), *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    from wmfast.cli import main

    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--all", "--quick", "--out", str(out), "--folder", str(BENCHES)]) == 0
    return out


def test_every_suite_reports_its_tables(quick_report):
    report = json.loads((quick_report / "results.json").read_text())
    assert report["machine"]["failed_suites"] == []
    assert {table["suite"] for table in report["tables"]} == set(SUITES)
    for table in report["tables"]:
        assert table["rows"], table["title"]
        for row in table["rows"]:
            assert len(row) == len(table["columns"])
            assert row[1], f"{table['title']}: no wmfast figure in {row}"
        assert table["samples"], table["title"]


def test_the_report_records_the_machine(quick_report):
    machine = json.loads((quick_report / "results.json").read_text())["machine"]
    for key in ("cpu", "cores", "load_before", "load_after", "versions", "commit", "command"):
        assert machine[key] is not None, key
    assert len(machine["load_before"]) == 3 and len(machine["load_after"]) == 3
    assert machine["versions"]["torch"] and machine["versions"]["numpy"]
    assert machine["quick"] is True
    markdown = (quick_report / "results.md").read_text()
    assert "load average" in markdown and machine["cpu"] in markdown
    for table in json.loads((quick_report / "results.json").read_text())["tables"]:
        assert table["title"] in markdown


def test_the_fair_counting_baseline_computes_what_it_says():
    sys.path.insert(0, str(BENCHES))
    import numpy as np
    import tabular_baselines as base

    data = base.make_transitions(50, 3, 4, 2000, seed=1)
    counts, reward_sums, terminations = base.count_minimal(data, 50, 3)
    pairs = data["states"] * 3 + data["actions"]
    expected = np.zeros((150, 50))
    np.add.at(expected, (pairs, data["next_states"]), 1)
    np.testing.assert_array_equal(counts.toarray(), expected)
    for p in (0, 7, 149):
        np.testing.assert_allclose(reward_sums[p], data["rewards"][pairs == p].sum())
        assert terminations[p] == data["terminated"][pairs == p].sum()


def test_unknown_suite_is_refused_naming_it(tmp_path):
    result = _run_all("--quick", "--suites", "tabular,nosuch", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "nosuch" in result.stderr and "tabular,mcts,cem,native,muzero" in result.stderr
    assert not (tmp_path / "results.json").exists()


def test_bench_all_needs_an_output_folder(capsys):
    from wmfast.cli import main

    assert main(["bench", "--all", "--folder", str(BENCHES)]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


def test_pytest_benchmark_suites_collect():
    result = subprocess.run([sys.executable, "-m", "pytest", str(BENCHES), "--collect-only", "-q",
                             "-p", "no:cacheprovider"], capture_output=True, text=True,
                            timeout=300, check=False, cwd=BENCHES.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for suite in ("bench_tabular", "bench_mcts", "bench_cem", "bench_native", "bench_muzero"):
        assert f"{suite}.py::" in result.stdout, suite
