#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: unit, slow and cluster tests;
# gpu tests run only where CUDA is present. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=25 "$@"
