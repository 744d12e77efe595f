"""Once-for-all supernet training: the `Trainer`, its config, policies and losses.

Rooms: `config` (TrainConfig, YAML schedules, the LR schedule), `policies` (which subnets a step
trains: sandwich, progressive, deps, single), `losses` (distillation, max-only L2) and `loop` (the
Trainer: steps, DDP, EMA, checkpoints, metrics, report). Checkpoint files of a finished supernet
are `hwnas.supernet.checkpoint`'s (`save_supernet` / `load_supernet`).

May import: search_space, hwnas.data, and the supernet modules; nothing of estimators/searchers.
"""

from __future__ import annotations

from hwnas.supernet.train.config import (
    ATTENTIVE,
    KD_LOSSES,
    KERNEL_SHARING,
    LR_SCHEDULES,
    POLICIES,
    PROGRESSIVE_PHASES,
    TrainConfig,
    default_config_path,
    load_config,
    lr_at,
)
from hwnas.supernet.train.loop import Trainer, TrainResult, WeightEMA, train, zero_init_residual_bn
from hwnas.supernet.train.losses import alpha_div, l2_penalty, soft_ce
from hwnas.supernet.train.policies import (
    DepsPolicy,
    ProgressivePolicy,
    SandwichPolicy,
    SinglePolicy,
    Task,
    make_policy,
    report_archs,
)

__all__ = [
    "ATTENTIVE",
    "KD_LOSSES",
    "KERNEL_SHARING",
    "LR_SCHEDULES",
    "POLICIES",
    "PROGRESSIVE_PHASES",
    "DepsPolicy",
    "ProgressivePolicy",
    "SandwichPolicy",
    "SinglePolicy",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WeightEMA",
    "alpha_div",
    "default_config_path",
    "l2_penalty",
    "load_config",
    "lr_at",
    "make_policy",
    "report_archs",
    "soft_ce",
    "train",
    "zero_init_residual_bn",
]
