"""Training configuration: `TrainConfig` (every knob of a run, validated), YAML loading with named
schedules, and the learning-rate schedule as a pure function of the step (so a resumed run is exact).

Imports: hwnas.errors and hwnas._io only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError

__all__ = [
    "POLICIES",
    "LR_SCHEDULES",
    "KD_LOSSES",
    "KERNEL_SHARING",
    "ATTENTIVE",
    "PROGRESSIVE_PHASES",
    "TrainConfig",
    "load_config",
    "default_config_path",
    "lr_at",
]

POLICIES = ("sandwich", "progressive", "deps", "single")
LR_SCHEDULES = ("cosine", "onecycle")
KD_LOSSES = ("kl", "alpha")
ATTENTIVE = ("off", "best", "worst")
# How an elastic-kernel conv's smaller kernels relate to its largest one: Once-for-All's kernel
# transform of the centre, or one independent weight per kernel size.
KERNEL_SHARING = ("transform", "separate")
PROGRESSIVE_PHASES = ("full", "kernel", "depth", "expand")


def default_config_path() -> Path:
    """The packaged Fashion-MNIST training config (`configs/fmnist.yaml`) with named schedules."""
    return Path(__file__).resolve().parents[2] / "configs" / "fmnist.yaml"


# ---- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Validated on construction; saved with every result."""

    space: str = "fmnist-mbv3"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = None
    search_val: int = 5000
    policy: str = "deps"
    schedule: str = "custom"
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 128
    accum_steps: int = 1
    lr: float = 0.1
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    grad_clip: float | None = 5.0
    num_random: int = 2
    kd: str = "kl"
    resolution_sampling: bool = True
    progressive_phases: tuple[tuple[str, float, float], ...] = (
        ("full", 0.25, 1.0),
        ("kernel", 0.25, 0.5),
        ("depth", 0.25, 0.5),
        ("expand", 0.25, 0.5),
    )
    deps_full_fraction: float = 0.5
    deps_ramp_epochs: float = 1.0
    deps_ramp_start: float = 0.1
    # BigNAS / AttentiveNAS / EMA switches (docs/training.md, "What the switches do")
    zero_init_residual_bn: bool = False
    regularize_max_only: bool = False
    attentive: str = "off"
    attentive_pool: int = 4
    kernel_sharing: str = "transform"
    ema_decay: float = 0.0
    single_arch: str | None = None
    seed: int = 0
    threads: int | None = None
    channels_last: bool = False
    val_every: int = 1
    val_images: int = 1000
    calib_images: int = 2000
    report_random: int = 3
    report_test_images: int | None = None  # the final report's test images (None: the whole test set)
    log_every: int = 20

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(f"train config: {name}={getattr(self, name)!r} is not allowed; allowed: {allowed}")

        if self.policy not in POLICIES:
            raise bad("policy", str(list(POLICIES)))
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", str(list(LR_SCHEDULES)))
        if self.kd not in KD_LOSSES:
            raise bad("kd", str(list(KD_LOSSES)))
        if self.attentive not in ATTENTIVE:
            raise bad("attentive", str(list(ATTENTIVE)))
        if self.kernel_sharing not in KERNEL_SHARING:
            raise bad("kernel_sharing", str(list(KERNEL_SHARING)))
        for name in ("zero_init_residual_bn", "regularize_max_only", "resolution_sampling", "nesterov", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        if not isinstance(self.attentive_pool, int) or isinstance(self.attentive_pool, bool) or not 2 <= self.attentive_pool <= 64:
            raise bad("attentive_pool", "an integer in [2, 64] (candidates scored per sampled subnet)")
        if not (0.0 <= self.ema_decay < 1.0):
            raise bad("ema_decay", "a number in [0, 1): 0 turns the weight EMA off, e.g. 0.999 keeps it")
        if (self.policy == "single") != (self.single_arch is not None):
            raise ConfigError("train config: policy 'single' trains exactly one arch and needs single_arch (an arch "
                              f"string); other policies must leave it null (policy={self.policy!r}, "
                              f"single_arch={self.single_arch!r})")
        for name in ("epochs", "batch_size", "accum_steps", "calib_images", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "an integer >= 1")
        for name in ("steps_per_epoch", "subset", "report_test_images"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise bad(name, "an integer >= 1, or null")
        for name in ("num_random", "val_every", "val_images", "report_random", "search_val", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(name, "an integer >= 0")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "an integer >= 1, or null (all cores)")
        if self.batch_size % self.accum_steps:
            raise bad("accum_steps", f"a divisor of batch_size={self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a finite number > 0")
        for name, lo, hi in (
            ("min_lr_ratio", 0.0, 1.0),
            ("momentum", 0.0, 0.9999),
            ("label_smoothing", 0.0, 0.5),
            ("deps_full_fraction", 0.0, 0.95),
            ("deps_ramp_start", 0.0, 1.0),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise bad(name, f"a number in [{lo}, {hi}]")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.deps_ramp_epochs < 0:
            raise ConfigError("train config: weight_decay, warmup_epochs and deps_ramp_epochs must be >= 0")
        if self.warmup_epochs >= self.epochs:
            raise bad("warmup_epochs", f"a number < epochs={self.epochs}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "a number > 0, or null (no clipping)")
        names = [p[0] for p in self.progressive_phases]
        if names != [n for n in PROGRESSIVE_PHASES if n in names] or "full" not in names or not names:
            raise bad("progressive_phases", f"phases in the order {list(PROGRESSIVE_PHASES)} starting with 'full'")
        if any(f <= 0 or s <= 0 for _, f, s in self.progressive_phases):
            raise bad("progressive_phases", "[name, fraction > 0, lr_scale > 0] entries")
        if abs(sum(f for _, f, _ in self.progressive_phases) - 1.0) > 1e-6:
            raise bad("progressive_phases", "fractions that sum to 1")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """A config from a plain dict (YAML/JSON); unknown keys raise ConfigError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"train config: unknown keys {unknown}; allowed: {sorted(known)}")
        kw = dict(d)
        if "progressive_phases" in kw and kw["progressive_phases"] is not None:
            try:
                kw["progressive_phases"] = tuple((str(n), float(f), float(s)) for n, f, s in kw["progressive_phases"])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"train config: progressive_phases must be [[name, fraction, lr_scale], ...]: {e}") from e
        ints = {"epochs", "batch_size", "accum_steps", "num_random", "val_every", "val_images", "calib_images",
                "report_random", "search_val", "seed", "log_every", "attentive_pool"}
        floats = {"lr", "warmup_epochs", "min_lr_ratio", "momentum", "weight_decay", "label_smoothing",
                  "deps_full_fraction", "deps_ramp_epochs", "deps_ramp_start", "ema_decay"}
        for k in ints & set(kw):
            if isinstance(kw[k], float) and kw[k].is_integer():
                kw[k] = int(kw[k])
        for k in floats & set(kw):
            if isinstance(kw[k], (int, float)) and not isinstance(kw[k], bool):
                kw[k] = float(kw[k])
            elif isinstance(kw[k], str):
                try:
                    kw[k] = float(kw[k])  # YAML reads 3e-5 as a string
                except ValueError as e:
                    raise ConfigError(f"train config: {k}={kw[k]!r} is not a number") from e
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["progressive_phases"] = [list(p) for p in self.progressive_phases]
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def load_config(
    path: str | os.PathLike | None = None,
    *,
    schedule: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """A `TrainConfig` from a YAML file (default: the packaged `configs/fmnist.yaml`).

    The file's top-level keys are the base config; `schedules: {name: {...}}` holds named presets
    applied on top with `schedule=name`. `overrides` (e.g. from the command line) win over both.
    """
    from hwnas._io import read_yaml_mapping

    p = Path(path) if path is not None else default_config_path()
    raw = read_yaml_mapping(p, "train config file", ConfigError)
    schedules = raw.pop("schedules", {}) or {}
    d = dict(raw)
    if schedule is not None:
        if schedule not in schedules:
            raise ConfigError(f"unknown schedule {schedule!r} in {p}; allowed: {sorted(schedules)}")
        d.update(schedules[schedule] or {})
        d["schedule"] = schedule
    d.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(d)


# ---- learning rate -----------------------------------------------------------------------------
def lr_at(cfg: TrainConfig, step: int, total: int, *, base: float | None = None, start: int = 0, warmup: int = 0) -> float:
    """The LR at `step` of a schedule spanning steps [start, start + total) (pure function: exact resume)."""
    base = cfg.lr if base is None else base
    t = step - start
    total = max(total, 1)
    floor = base * cfg.min_lr_ratio
    if cfg.lr_schedule == "onecycle":
        up = max(1, int(0.25 * total))
        if t < up:
            return base / 25 + (base - base / 25) * t / up
        frac = min(1.0, (t - up) / max(1, total - up))
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    if t < warmup:
        return base * (t + 1) / warmup
    frac = min(1.0, (t - warmup) / max(1, total - warmup))
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * frac))
