"""Runs the property-based fuzz suite (props_public_api.py) in a subprocess.

A segfault or abort in the suite fails this test (with the child's output) instead of killing the
test run; a hang is ended by the child's per-example guard (faulthandler, 60 s) or by the
timeout here. The default budget is short (WMFAST_FUZZ_EXAMPLES, default 12 per property);
``pytest tests/fuzz --fuzz-long`` runs 300 per property.
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_fuzz_suite(request):
    examples = os.environ.get("WMFAST_FUZZ_EXAMPLES")
    if request.config.getoption("--fuzz-long"):
        examples = examples or "300"
    env = dict(os.environ, WMFAST_FUZZ_EXAMPLES=examples or "12")
    timeout = 3600 if int(env["WMFAST_FUZZ_EXAMPLES"]) > 50 else 600
    command = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-W", "ignore::RuntimeWarning", str(HERE / "props_public_api.py"),
               "--hypothesis-show-statistics"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                timeout=timeout, cwd=HERE, check=False)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"the fuzz suite hung past {timeout} s:\n{error.stdout}") from error
    output = result.stdout + result.stderr
    print(output[-4000:])
    assert result.returncode == 0, f"fuzz suite failed (exit {result.returncode}):\n{output[-12000:]}"
