#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: train the supernet, profile this CPU, search
# the Pareto front under budgets and export subnets, into results/runs/<name>/.
# Extra arguments go to `hwnas run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/hwnas run --config configs/fmnist-cpu.yaml "$@"
