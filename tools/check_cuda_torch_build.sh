#!/usr/bin/env bash
# Builds wmfast against a CUDA build of torch (the registry's default Linux wheel, ~3 GB with
# its nvidia libraries) in its own venv and build folder, with no CUDA toolkit, and runs the
# CPU test suite against it: most users have a CUDA torch, and the suite must pass under it.
#
#   tools/check_cuda_torch_build.sh [TORCH_VERSION] [pytest args...]   (default 2.12.0, tests)
#
# The venv is kept in $WMFAST_CUDA_VENV (default /tmp/wmfast-cuda-torch) so a second run skips
# the download. Tests marked `cuda` run when a GPU is present and skip otherwise. With
# WMFAST_BUILD_LOCK=FILE the compile step holds that flock (machines shared by several builds).
set -euo pipefail
cd "$(dirname "$0")/.."
torch_version=${1:-2.12.0}
shift || true
[ $# -gt 0 ] || set -- tests
venv=${WMFAST_CUDA_VENV:-/tmp/wmfast-cuda-torch}
start=$(date +%s)

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo "+ torch==$torch_version into $venv"
"$venv/bin/pip" install -q "torch==$torch_version" scikit-build-core pybind11
"$venv/bin/python" -c "import torch; print('  torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "+ building wmfast against it (build folder build/cuda-torch)"
${WMFAST_BUILD_LOCK:+flock "$WMFAST_BUILD_LOCK"} \
  "$venv/bin/pip" install -q --no-build-isolation -C build-dir=build/cuda-torch ".[test]"
"$venv/bin/python" -m wmfast.cli info | grep -i -E "torch|cuda"
echo "+ pytest $*"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "CUDA torch check passed in $(( $(date +%s) - start )) s"
