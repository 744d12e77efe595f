"""Shared bits of the training tests: a tiny elastic space (fast on 2 cores) and its config."""

from __future__ import annotations

from pathlib import Path

import yaml
from hwnas.data import DEBIAN_FMNIST_DIR

HAVE_FMNIST = (DEBIAN_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file()

TINY_SPACE = {
    "name": "tiny-test",
    "in_channels": 1,
    "num_classes": 10,
    "resolutions": [16, 20],
    "normalization": {"mean": [0.2860], "std": [0.3530]},
    "stem": {"channels": 8, "kernel": 3, "stride": 2, "act": "hswish"},
    "stages": [
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [8], "stride": 1, "se": False, "act": "relu"},
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [16], "stride": 2, "se": True, "act": "hswish"},
    ],
    "head": {"expand_channels": 32, "feature_channels": None, "act": "hswish", "dropout": 0.0},
}


def tiny_space_path(tmp_path: Path) -> str:
    p = tmp_path / "tiny-space.yaml"
    p.write_text(yaml.safe_dump(TINY_SPACE))
    return str(p)


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
        threads=2,
        log_every=4,
    )
    base.update(kw)
    return TrainConfig(**base)
