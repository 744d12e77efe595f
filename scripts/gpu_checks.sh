#!/usr/bin/env bash
# GPU checks for a machine with a CUDA GPU: the gpu-marked tests (real Triton kernels, CUDA
# timing and memory, the NVML energy counter), then the kernel benchmarks.
#   bash scripts/gpu_checks.sh [OUT_DIR] [KERNELS_BUDGET_S]
# OUT_DIR (default results/benchmarks) receives gpu_tests.log, kernels_<gpu>.{json,png} and
# kernels_breakdown_<gpu>_*.json. Runs with the python that has torch+triton+CUDA (PYTHON=...,
# default: .venv/bin/python if present, else python3); hwnas need not be installed there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/benchmarks}
BUDGET=${2:-300}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
mkdir -p "$OUT"
if ! "$PY" -c "import hwnas" 2>/dev/null; then
  # the repository root is the package: put a link named hwnas on the path instead of installing
  link_dir=$(mktemp -d)
  ln -s "$PWD" "$link_dir/hwnas"
  export PYTHONPATH="$link_dir${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible: nothing to check here')" || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv 2>&1 | tee "$OUT/gpu_info.txt"
rc=0
"$PY" -m pytest -p no:cacheprovider -m gpu --timeout=400 -q tests/test_kernels.py tests/test_estimators.py 2>&1 | tee "$OUT/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
"$PY" benchmarks/kernels_breakdown.py --out "$OUT" 2>&1 | tail -n 40 || rc=1
"$PY" benchmarks/kernels.py --out "$OUT" --budget-s "$BUDGET" 2>&1 || rc=1
exit $rc
