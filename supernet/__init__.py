"""The weight-sharing supernet: dynamic ops and blocks, `Supernet`, static subnets, checkpoints
(supernet and subnet), the `Trainer` with its policies, and BN recalibration.

May import: search_space and hwnas.data; never estimators, kernels or searchers.
"""

from __future__ import annotations

from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.bn import evaluate, recalibrate_bn
from hwnas.supernet.checkpoint import export, load_subnet, load_supernet, save_supernet
from hwnas.supernet.finetune import FinetuneResult, finetune
from hwnas.supernet.static import StaticNet, build_static
from hwnas.supernet.train import TrainConfig, Trainer, TrainResult, load_config, train

__all__ = [
    "FinetuneResult",
    "StaticNet",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_static",
    "evaluate",
    "export",
    "finetune",
    "load_subnet",
    "load_config",
    "load_supernet",
    "recalibrate_bn",
    "resize_input",
    "save_supernet",
    "train",
]
