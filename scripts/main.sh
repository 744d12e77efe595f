#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: take the shipped supernet bundle (hash-checked;
# --retrain trains one), profile this CPU, search the Pareto front under budgets and export subnets,
# into results/runs/<name>/.
# Extra arguments go to `hwnas run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/hwnas run --config configs/fmnist-cpu.yaml "$@"
