"""Shared test fixtures and the skip rules for gpu / cluster markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HWNAS_SHARED", REPO.parent / "shared"))


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
