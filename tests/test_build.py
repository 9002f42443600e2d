"""The build: module loading, the torch version check, the CLI, and the C++ unit tests."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wmfast
from wmfast import _build_info, _torch_ext

REPO = Path(__file__).resolve().parents[1]


def test_torch_module_loads_and_records_its_torch():
    ext = _torch_ext.load()
    assert ext.TORCH_VERSION == _build_info.TORCH_VERSION == torch.__version__


def test_version_mismatch_names_both_versions_and_the_rebuild_command(monkeypatch):
    with pytest.raises(ImportError) as error:
        _torch_ext.check_torch_version("2.11.0+cpu", "2.13.0+cpu")
    message = str(error.value)
    assert "2.11.0+cpu" in message and "2.13.0+cpu" in message
    assert "pip install --no-build-isolation" in message
    _torch_ext.check_torch_version("2.13.0+cpu", "2.13.1")  # same minor: fine

    # Simulate an extension built for another torch (a minor version away from the one
    # installed, whichever that is): the loader refuses before importing it.
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    other = f"{major}.{minor + 1}.0"
    monkeypatch.setattr(_build_info, "TORCH_VERSION", other)
    monkeypatch.setattr(_torch_ext, "_module", None)
    with pytest.raises(ImportError, match=f"built against torch {other}"):
        _torch_ext.load()


def test_local_version_label_names_the_torch_built_against():
    tools = REPO / "tools" / "torch_local_version.py"
    if not tools.exists():
        pytest.skip("not a source checkout")
    spec = importlib.util.spec_from_file_location("torch_local_version", tools)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.local_version("0.1.0", "2.13.0+cpu") == "0.1.0+torch2.13.0.cpu"
    assert module.local_version("0.1.0", "2.12.0+cu130") == "0.1.0+torch2.12.0.cu130"
    assert module.local_version("0.1.0", "2.13.0") == "0.1.0+torch2.13.0"
    assert module.dynamic_metadata("version", {}) == module.local_version(
        wmfast.__version__, importlib.metadata.version("torch"))
    # The installed distribution carries it (any install made by this checkout's build).
    installed = importlib.metadata.version("wmfast")
    assert installed.startswith(wmfast.__version__ + "+torch"), installed


def test_cli_info_prints_versions():
    result = subprocess.run([sys.executable, "-m", "wmfast.cli", "info"], capture_output=True,
                            text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["wmfast", wmfast.__version__]
    assert ["torch", torch.__version__] in [line.split() for line in lines]
    assert "loaded" in result.stdout and "built against torch" in result.stdout


def test_cpp_unit_tests_pass(tmp_path_factory):
    """Builds the torch-free core's GoogleTest suite with CMake and runs it with ctest."""
    if not (REPO / "CMakeLists.txt").exists():
        pytest.skip("not a source checkout")
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake/ctest not installed")
    if not Path("/usr/include/gtest/gtest.h").exists() and not os.environ.get("GTEST_ROOT"):
        pytest.skip("GoogleTest not installed (Debian: apt-get install libgtest-dev)")
    build = REPO / "build" / "cpp-tests"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), *generator,
                    "-DWMFAST_BUILD_PYTHON=OFF", "-DWMFAST_BUILD_TESTS=ON"],
                   check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True,
                   text=True)
    result = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout


def test_sanitizer_option_refuses_thread_with_address(tmp_path):
    """WMFAST_SANITIZE: TSan cannot share a build with ASan; CMake says so before building."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    result = subprocess.run(["cmake", "-S", str(REPO), "-B", str(tmp_path / "build"),
                             "-DWMFAST_BUILD_PYTHON=OFF", "-DWMFAST_SANITIZE=address,thread"],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "ThreadSanitizer cannot be combined" in result.stdout + result.stderr


def test_sanitize_script_refuses_unknown_steps():
    """tools/sanitize.sh (the sanitizer runs) names its steps; the runs themselves are in .ci/run."""
    result = subprocess.run(["bash", str(REPO / "tools" / "sanitize.sh"), "asan", "valgrind"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unknown step 'valgrind'" in result.stderr
