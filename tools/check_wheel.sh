#!/usr/bin/env bash
# Builds a wheel against the torch installed in the current environment, installs it into a
# fresh venv with the same torch, and runs tests against the installed wheel (not the source
# tree: the tests import wmfast from the venv's site-packages, which this script checks).
#
#   tools/check_wheel.sh              # the build/import/planner tests (a few minutes)
#   tools/check_wheel.sh tests        # any pytest arguments: here the whole suite
#
# Needs `build` (pip install build) next to torch, scikit-build-core and pybind11.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
work=$(mktemp -d /tmp/wmfast-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

torch_version=$("$python" -c "import torch; print(torch.__version__)")
echo "+ building the wheel against torch $torch_version"
"$python" -m build --wheel --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/wmfast-*.whl)
echo "  $(basename "$wheel")"
case "$(basename "$wheel")" in
  *"+torch${torch_version%%+*}"*) ;;
  *) echo "the wheel's version does not name torch $torch_version" >&2; exit 1 ;;
esac

echo "+ installing it into a fresh venv with torch ${torch_version%%+*}"
"$python" -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install -q "torch==${torch_version%%+*}"
"$pip" install -q "$wheel" pytest hypothesis pytest-benchmark scipy
installed=$("$work/venv/bin/python" -c "import wmfast, importlib.metadata as m; print(wmfast.__file__, m.version('wmfast'))")
echo "  $installed"
case "$installed" in
  "$work/venv/"*) ;;
  *) echo "wmfast was not imported from the fresh venv" >&2; exit 1 ;;
esac

if [ $# -eq 0 ]; then
  set -- tests/test_build.py tests/test_conventions.py tests/test_mcts.py tests/test_tabular.py \
         tests/test_cem.py tests/test_cli.py
fi
echo "+ pytest $* (against the installed wheel)"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "wheel check passed in $(( $(date +%s) - start )) s"
