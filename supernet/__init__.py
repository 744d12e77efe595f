"""The weight-sharing supernet: dynamic ops and blocks, `Supernet`, static subnets, export,
training policies and BN recalibration."""

from __future__ import annotations

from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.bn import evaluate, recalibrate_bn
from hwnas.supernet.export import export, load
from hwnas.supernet.static import StaticNet, build_static
from hwnas.supernet.train import (
    TrainConfig,
    TrainResult,
    load_config,
    load_supernet,
    save_supernet,
    train,
)

__all__ = [
    "StaticNet",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "build_static",
    "evaluate",
    "export",
    "load",
    "load_config",
    "load_supernet",
    "recalibrate_bn",
    "resize_input",
    "save_supernet",
    "train",
]
