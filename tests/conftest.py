"""Shared test fixtures and the skip rules for gpu / cluster markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HWNAS_SHARED", REPO.parent / "shared"))

# One Ray auth mode for every Ray process of the suite, this pytest process's drivers included: the
# test clusters run with it (tests/_cluster.ray_env), and Ray fixes a process's mode when it first
# starts or joins a cluster. Without this, a test that starts a local Ray in process (token mode, Ray's
# default) left the process unable to run actors on a later test's cluster: every trial was
# "cancelled before it started running" (CI, tests/test_search_ray.py after test_search_dedup.py).
os.environ["RAY_AUTH_MODE"] = "disabled"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets folder not found at {SHARED} (set HWNAS_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 for the whole session (tests/_cluster.py), stopped at the
    end even when tests fail; `postgres.new_database()` gives each test its own empty database."""
    from tests._cluster import postgres_or_skip

    server = postgres_or_skip()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A complete supernet bundle of `fmnist-mbv3` made by the documented command on the `tiny`
    schedule (a few steps on 512 images; 24 pairs on 300 images): `hwnas train ... --bundle`.
    Shared by the bundle tests and the main job's pretrained path."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("bundle")
    cmd = [sys.executable, "-m", "hwnas", "train", "--schedule", "tiny", "--out", str(root / "run"), "--no-progress",
           "--bundle", str(root / "fmnist-mbv3"), "--bundle-pairs", "24", "--bundle-images", "300",
           "--predictor-kinds", "gp,mlp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "fmnist-mbv3"


@pytest.fixture(scope="session")
def big_study(tmp_path_factory):
    """The 100,000-trial `fmnist-mbv3` SQLite study (tests/test_load.build_big_study), built once for
    the session: the memory test reads it as it is, the PostgreSQL test copies it. Readers only."""
    from tests.test_load import build_big_study

    path = tmp_path_factory.mktemp("big-study") / "big.db"
    return path, build_big_study(path)
