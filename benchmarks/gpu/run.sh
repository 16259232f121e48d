#!/usr/bin/env bash
# The GPU check in one command, from a bare GPU machine (see docs/BENCHMARKS.md, "GPU"):
#
#   benchmarks/gpu/run.sh OUT_DIR                # CUDA: installs .whl/, then benchmarks/gpu/run_stages.py
#   benchmarks/gpu/run.sh OUT_DIR --cpu-smoke    # the same stages at tiny sizes on the CPU (CI runs this)
#
# .whl/ comes from benchmarks/gpu/prepare_wheels.sh (run on a CPU machine with registry access).
# Results: OUT_DIR/results.json, OUT_DIR/results.md, OUT_DIR/run.log. Exit 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${1:?usage: benchmarks/gpu/run.sh OUT_DIR [--cpu-smoke]}
shift
PY=${PYTHON:-python3}
SMOKE=0
for arg in "$@"; do [ "$arg" = --cpu-smoke ] && SMOKE=1; done
mkdir -p "$OUT" || exit 2

if [ "$SMOKE" = 0 ]; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "error: no wheels in .whl/; run benchmarks/gpu/prepare_wheels.sh first (CPU machine, registry access)" >&2
        exit 2
    fi
    echo "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 2
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    if [ -d .whl/fixtures ]; then export JSEGNEXT_FIXTURES="${JSEGNEXT_FIXTURES:-$PWD/.whl/fixtures}"; fi
    # 16 cores and a cold kernel cache: compile Jittor's kernels in parallel (jsegnext defaults to 0
    # because of a conv-tuner race seen on the CPU; export use_parallel_op_compiler=0 to keep that)
    export use_parallel_op_compiler="${use_parallel_op_compiler:-1}"
fi
exec "$PY" benchmarks/gpu/run_stages.py "$OUT" "$@"
