#!/usr/bin/env bash
# Set up everything hwnas needs on a fresh machine: the Fashion-MNIST files and PostgreSQL (Debian packages),
# a virtualenv in .venv with torch 2.13.0 (CPU build) and hwnas installed editable with its test
# extras. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fmnist" ] && [ -z "${HWNAS_DATA_DIR:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    echo "[setup] installing dataset-fashion-mnist with apt-get"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist; } \
      || echo "[setup] warning: apt-get could not install dataset-fashion-mnist; pass --data-dir or set HWNAS_DATA_DIR"
  else
    echo "[setup] no apt-get here: pass --data-dir DIR or set HWNAS_DATA_DIR (Fashion-MNIST *.gz files), or allow the download"
  fi
fi

# PostgreSQL server binaries (initdb, pg_ctl) for the cluster tests, which start a throw-away server
# on 127.0.0.1 themselves: nothing is started here, and Debian's own cluster is not used.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    echo "[setup] installing postgresql with apt-get"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql; } \
      || echo "[setup] warning: apt-get could not install postgresql; the PostgreSQL tests will be skipped"
  else
    echo "[setup] no apt-get here: install PostgreSQL (initdb, pg_ctl) for the PostgreSQL tests"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating virtualenv .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.hwnas-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing torch==2.13.0 and hwnas (editable, with test extras)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
else
  echo "[setup] .venv is up to date"
fi
