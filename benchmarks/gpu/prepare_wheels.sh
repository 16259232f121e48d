#!/usr/bin/env bash
# Rebuild .whl/ for benchmarks/gpu/run.sh in one command, on a CPU machine with registry access:
#
#   benchmarks/gpu/prepare_wheels.sh [FIXTURES_DIR]     # default: $JSEGNEXT_FIXTURES or ../shared/fixtures
#
# The GPU machine (/work/.library/device/KINDS.md) has Python 3.12, PyTorch, NumPy 2.x, OpenCV,
# Pillow, tqdm, pytest, safetensors, but no network and nothing of ours. Carried, as cp312 manylinux
# wheels:
#   jittor 1.3.11.0  - an sdist on PyPI: built here into a (pure-Python) wheel
#   numpy 1.26.4     - Jittor 1.3.11 reads NumPy 2 arrays wrongly; jsegnext's NumPy 2 route (Var.data) is
#                      checked on the CPU only, so the GPU run uses NumPy 1.x; shadows the 2.x
#   safetensors      - jsegnext's checkpoint format (the image's 0.8.0 would do; carried so the run
#                      does not depend on it)
# Not carried: jittor_offline (27 MB: oneDNN, CUTT, NCCL, MNIST; jsegnext switches those off on
# CUDA), opencv-python-headless, pillow, tqdm, scipy, pytest (on the image).
# Also copied: the SegNeXt-T/ADE reference fixture (24 MB) to .whl/fixtures/ for the parity tests.
# Checks that the working tree plus .whl/ stay within the 64 MiB a device call carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
FIXTURES=${1:-${JSEGNEXT_FIXTURES:-../shared/fixtures}}
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"

mkdir -p .whl
rm -f .whl/*.whl
rm -rf .whl/fixtures
"$PY" -m pip wheel -q --no-deps -w .whl jittor==1.3.11.0
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
    -d .whl numpy==1.26.4 safetensors==0.8.0
if [ -f "$FIXTURES/segnext_t_ade.pth" ]; then
    mkdir -p .whl/fixtures
    cp "$FIXTURES"/segnext_t_ade* .whl/fixtures/
else
    echo "warning: no SegNeXt-T/ADE fixture in $FIXTURES: the GPU run's parity tests will fail" >&2
fi
ls -l .whl .whl/fixtures 2>/dev/null || true
"$PY" - <<'PYEOF'
import os, subprocess, sys
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, text=True, check=True).stdout.split("\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".whl") for f in fs)
mib = lambda b: b / 2 ** 20
print(f"working tree {mib(tree):.1f} MiB + .whl {mib(carried):.1f} MiB = {mib(tree + carried):.1f} MiB "
      "(a device call carries at most 64 MiB)")
sys.exit(0 if tree + carried <= 64 * 2 ** 20 else "error: over the 64 MiB a device call carries")
PYEOF
