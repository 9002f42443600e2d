#!/usr/bin/env bash
# Sanitizer runs of wmfast (issue 12), each built in its own folder under build/sanitize/:
#   asan    the C++ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan    the C++ unit tests (thread pool, threaded search, concurrent tabular updates)
#           under ThreadSanitizer
#   python  both extension modules built with ASan + UBSan (in the asan folder), loaded into
#           the installed torch (libasan preloaded) in a throwaway venv; runs a small set of
#           Python tests (tests/test_reliability.py and a short fuzz run by default)
# Any finding fails the run: ASan/TSan halt on the first report and UBSan does not recover
# (-fno-sanitize-recover, set by CMake's WMFAST_SANITIZE).
#
# Usage: tools/sanitize.sh [asan] [tsan] [python]       (no argument: all three)
#   WMFAST_SANITIZE_PYTESTS  the Python tests of the python step (default below)
#   WMFAST_FUZZ_EXAMPLES     examples per fuzz property in the python step (default 12)
#   WMFAST_BUILD_LOCK        a file to flock while compiling (machines shared by several builds)
# Exit codes: 0 clean, 77 the toolchain lacks a sanitizer (nothing run), else a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$REPO/build/sanitize
CXX=${CXX:-c++}
PYTHON=${PYTHON:-python}
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$REPO}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan tsan python)
for step in "${steps[@]}"; do
  case "$step" in asan|tsan|python) ;; *) echo "unknown step '$step' (asan, tsan, python)" >&2; exit 2 ;; esac
done

# ThreadPoolTest.ForkedChildStartsNewPools forks a process that has threads. GCC 12's libasan
# does not hold its allocator lock across fork(), so the child's first thread can block for
# ever on a lock a parent thread held (seen in ~5% of runs, stack in the allocator); TSan kills
# a child that starts threads after such a fork (die_after_fork). Both are the runtimes' limits
# (glibc's malloc is fork-safe); the test runs in the ordinary build.
GTEST_FILTER='-ThreadPoolTest.ForkedChildStartsNewPools'

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_init_order=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

exec 3>&1
log() { echo "== sanitize: $*"; }
seconds() { echo $(( $(date +%s) - $1 )); }

locked() {  # runs "$@", holding WMFAST_BUILD_LOCK when it is set (and says how long it waited)
  if [ -z "${WMFAST_BUILD_LOCK:-}" ]; then "$@"; return; fi
  local fd waited=$(date +%s) status=0
  exec {fd}>>"$WMFAST_BUILD_LOCK"
  flock "$fd"
  log "waited $(seconds "$waited") s for $WMFAST_BUILD_LOCK" >&3  # the console, not the build log
  "$@" || status=$?
  exec {fd}>&-
  return $status
}

# Can the toolchain build and run a program with these sanitizers?
toolchain_has() {
  local dir
  dir=$(mktemp -d)
  printf '#include <thread>\nint main() { std::thread t([] {}); t.join(); return 0; }\n' > "$dir/t.cc"
  local ok=0
  "$CXX" -fsanitize="$1" -pthread "$dir/t.cc" -o "$dir/t" >/dev/null 2>&1 && "$dir/t" || ok=1
  rm -rf "$dir"
  return $ok
}

configure() {  # folder, sanitizers, extra cmake arguments...
  local dir=$1 sanitizers=$2
  shift 2
  # -O1: the speed the sanitizers' authors recommend, and torch-heavy files compile in about
  # half the time of -O2 -g; -g1: line tables, enough for reports that name source lines.
  cmake -S "$REPO" -B "$dir" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
        -DWMFAST_SANITIZE="$sanitizers" "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
}

build() {  # folder, targets...
  local dir=$1
  shift
  locked cmake --build "$dir" -j "${WMFAST_SANITIZE_JOBS:-2}" --target "$@" >"$dir.build.log" 2>&1 \
    || { tail -50 "$dir.build.log"; return 1; }
}

mkdir -p "$BUILD"
for step in "${steps[@]}"; do
  case "$step" in asan|python) need=address,undefined ;; tsan) need=thread ;; esac
  if ! toolchain_has "$need"; then
    log "$CXX cannot build and run -fsanitize=$need programs: skipped (nothing was checked)"
    exit 77
  fi
done

# ASan+UBSan: one folder for the C++ tests and the Python modules (the core is built once).
configure_asan() {
  local python=OFF
  case " ${steps[*]} " in *" python "*) python=ON ;; esac
  local args=(-DWMFAST_BUILD_TESTS=ON -DWMFAST_BUILD_PYTHON=$python)
  if [ $python = ON ]; then
    args+=(-DPython_EXECUTABLE="$(command -v "$PYTHON")"
           -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)")
  fi
  configure "$BUILD/asan" address,undefined "${args[@]}"
}

run_cpp_tests() {  # name, sanitizers
  local name=$1 sanitizers=$2 start
  start=$(date +%s)
  if [ ! -f /usr/include/gtest/gtest.h ] && [ -z "${GTEST_ROOT:-}" ]; then
    log "$name: GoogleTest not installed (Debian: apt-get install libgtest-dev)"
    return 1
  fi
  log "$name: building the C++ tests with -fsanitize=$sanitizers"
  if [ "$name" = asan ]; then
    configure_asan
  else
    configure "$BUILD/$name" "$sanitizers" -DWMFAST_BUILD_PYTHON=OFF -DWMFAST_BUILD_TESTS=ON
  fi
  build "$BUILD/$name" wmfast_cpp_tests
  log "$name: built in $(seconds "$start") s; running"
  start=$(date +%s)
  timeout 600 "$BUILD/$name/wmfast_cpp_tests" --gtest_filter="$GTEST_FILTER" --gtest_brief=1
  log "$name: C++ tests clean in $(seconds "$start") s"
}

run_python() {
  local start dir=$BUILD/asan venv=$BUILD/python-venv reports=$BUILD/python-reports site
  start=$(date +%s)
  log "python: building wmfast._core and wmfast._torch with -fsanitize=address,undefined"
  configure_asan
  build "$dir" _core _torch
  log "python: built in $(seconds "$start") s"
  for module in "$dir"/_core*.so "$dir"/_torch*.so; do
    readelf -d "$module" | grep -q 'libasan' \
      || { log "python: $module is not linked with libasan"; return 1; }
  done

  # A throwaway venv that sees the installed packages (torch, pytest, ...) through a .pth line,
  # so their own .pth files (an editable wmfast's import hook among them) are not run, and holds
  # a copy of the Python package with the sanitized modules. Tests that start a subprocess use
  # this venv's interpreter, so they get the sanitized modules too.
  rm -rf "$venv" "$reports"
  mkdir -p "$reports"
  "$PYTHON" -m venv --without-pip "$venv"
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$PYTHON" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' \
    | sort -u > "$site/wmfast_sanitize_parent.pth"
  cp -r "$REPO/python/wmfast" "$site/wmfast"
  find "$site/wmfast" -name __pycache__ -prune -exec rm -rf {} +
  cp "$dir"/_core*.so "$dir"/_torch*.so "$dir/_build_info.py" "$site/wmfast/"

  # libasan must come first; libstdc++ too, or ASan's __cxa_throw interceptor finds no real
  # __cxa_throw (python does not link libstdc++) and the first C++ exception aborts. Python's
  # own allocations go through malloc, so ASan sees them. The interpreter frees little at exit
  # by design: leaks are checked by the C++ tests, not here. Reports go to files (pytest's
  # output capture would swallow a report printed by a process that then aborts).
  local env=(env LD_PRELOAD="$("$CXX" -print-file-name=libasan.so) $("$CXX" -print-file-name=libstdc++.so)"
             PYTHONMALLOC=malloc
             ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:log_path=$reports/asan
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan
             WMFAST_FUZZ_EXAMPLES="${WMFAST_FUZZ_EXAMPLES:-12}")
  # Make sure the sanitized modules are the ones loaded.
  (cd "$BUILD" && "${env[@]}" "$venv/bin/python" -c '
import sys, wmfast, wmfast._core
from wmfast import _torch_ext
for m in (wmfast._core, _torch_ext.load()):
    assert m.__file__.startswith(sys.argv[1]), f"{m.__name__} loaded from {m.__file__}"
print("python: sanitized modules loaded from", sys.argv[1])' "$site")

  local tests status=0
  read -r -a tests <<< "${WMFAST_SANITIZE_PYTESTS:-tests/test_reliability.py tests/fuzz}"
  start=$(date +%s)
  log "python: pytest ${tests[*]}"
  timeout 1200 "${env[@]}" "$venv/bin/python" -X faulthandler -m pytest -q -x -p no:cacheprovider \
    "${tests[@]}" || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    log "python: sanitizer reports:"
    cat "$reports"/*
    [ "$status" -ne 0 ] || status=1
  fi
  [ "$status" -eq 0 ] || { log "python: failed (exit $status)"; return "$status"; }
  log "python: tests clean under ASan+UBSan in $(seconds "$start") s"
}

total=$(date +%s)
for step in "${steps[@]}"; do
  case "$step" in
    asan) run_cpp_tests asan address,undefined ;;
    tsan) run_cpp_tests tsan thread ;;
    python) run_python ;;
  esac
done
log "all clean (${steps[*]}) in $(seconds "$total") s"
