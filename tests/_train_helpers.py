"""Shared bits of the training tests: a config on the tiny elastic space of `tests/_helpers.py`."""

from __future__ import annotations

from pathlib import Path

from hwnas.data import DEBIAN_FMNIST_DIR

from tests._helpers import tiny_space_path

HAVE_FMNIST = (DEBIAN_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


def tiny_config(tmp_path: Path, **kw):
    from hwnas.supernet.train import TrainConfig

    base = dict(
        space=tiny_space_path(tmp_path),
        subset=1024,
        batch_size=64,
        epochs=2,
        lr=0.1,
        num_random=1,
        val_every=0,
        calib_images=256,
        report_random=1,
        report_test_images=2000,
        threads=2,
        log_every=4,
    )
    base.update(kw)
    return TrainConfig(**base)
