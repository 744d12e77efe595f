"""The main job's configuration: `RunConfig`, its YAML schema (sections) and `load_run_config`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError

__all__ = ["RunConfig", "load_run_config", "REPO", "DEFAULT_PROFILE_REPEATS"]

# The package root (the repository root): relative paths of a run config resolve against it.
REPO = Path(__file__).resolve().parent.parent
# hwnas.estimators.latency_check.DEFAULT_PROTOCOL.repeats (not imported: the config side stays light;
# tests/test_pipeline.py checks the two agree)
DEFAULT_PROFILE_REPEATS = 61


@dataclass(frozen=True)
class RunConfig:
    """A resolved main-job configuration (YAML `configs/fmnist-cpu.yaml`; CLI flags override)."""

    name: str = "fashion-mnist-cpu"
    space: str = "fmnist-mbv3"
    seed: int = 0
    out_root: str = "results/runs"
    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = None
    # training
    train_config: str = "configs/fmnist.yaml"
    schedule: str = "demo"
    policy: str | None = None
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    # "auto": the shipped bundle of the space when there is one (train once, specialise many times),
    # else train; a bundle name or folder: that bundle (must exist); None: train (`hwnas run --retrain`)
    pretrained: str | None = "auto"
    # devices and profiling
    devices: tuple[str, ...] = ("cpu", "ort-cpu")
    profile_networks: int = 50
    validate_networks: int = 50  # held-out subnets of the in-run check (20 left a +-11-point binomial spread)
    # timing samples per kernel, network and held-out check (the check protocol's; fewer: a faster,
    # noisier profile, for smoke runs)
    profile_repeats: int = DEFAULT_PROFILE_REPEATS
    # accuracy predictor
    accuracy_archs: int = 100
    val_images: int = 2500
    calib_images: int = 2000
    # search
    sampler: str = "nsga2"
    trials: int = 3000
    objectives: tuple[str, ...] = ("accuracy", "latency_ms@cpu", "latency_ms@ort-cpu")
    budgets: tuple[str, ...] = ("peak_mem_mb@cpu<=3.0",)
    storage: str | None = None  # None: sqlite in the run directory; or postgresql://..., a journal file
    ray_address: str | None = None  # None: Optuna in process; "auto" / HOST:PORT: Ray Tune trials
    workers: int = 1
    refine_archs: int = 40  # predicted-front archs re-measured on search-val before the final front
    # export
    latency_budgets: tuple[float, ...] | str = "auto"
    export_formats: tuple[str, ...] = ("safetensors", "onnx")
    finetune_steps: int = 0  # > 0: each export is fine-tuned that many steps (hwnas.supernet.finetune)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"run name {self.name!r} must be a plain directory name")
        if not self.devices:
            raise ConfigError("devices: at least one device is needed (e.g. [cpu])")
        for k in ("profile_networks", "accuracy_archs", "trials", "val_images", "calib_images"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{k}={v!r} must be an int >= 1")
        if isinstance(self.profile_repeats, bool) or not isinstance(self.profile_repeats, int) \
                or not 3 <= self.profile_repeats <= 10_000:
            raise ConfigError(f"profile.repeats={self.profile_repeats!r} must be an int in 3..10000 "
                              f"(timing samples per kernel; the default {DEFAULT_PROFILE_REPEATS})")
        if self.accuracy_archs < 10:
            raise ConfigError(f"accuracy_archs={self.accuracy_archs} must be >= 10 to fit an accuracy predictor")
        if not any(o.startswith("accuracy") for o in self.objectives):
            raise ConfigError(f"objectives {list(self.objectives)} must include accuracy")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained.strip()):
            raise ConfigError(f"train.pretrained={self.pretrained!r}: 'auto', a bundle name or folder, or null (train)")
        if isinstance(self.finetune_steps, bool) or not isinstance(self.finetune_steps, int) \
                or not 0 <= self.finetune_steps <= 1_000_000:
            raise ConfigError(f"export.finetune_steps={self.finetune_steps!r} must be an int in 0..1000000 (0: off)")
        if isinstance(self.latency_budgets, str) and self.latency_budgets != "auto":
            raise ConfigError(f"latency_budgets={self.latency_budgets!r}: 'auto' or a list of 3 numbers (ms)")

    @property
    def run_dir(self) -> Path:
        root = Path(self.out_root)
        return (root if root.is_absolute() else REPO / root) / self.name

    @property
    def primary_device(self) -> str:
        return self.devices[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train_overrides"] = dict(self.train_overrides)
        return d


_SECTIONS = {
    "data": {"dataset": "dataset", "data_dir": "data_dir", "subset": "subset"},
    "train": {"config": "train_config", "schedule": "schedule", "policy": "policy", "overrides": "train_overrides",
              "pretrained": "pretrained"},
    "profile": {"networks": "profile_networks", "validate_networks": "validate_networks", "repeats": "profile_repeats"},
    "accuracy": {"archs": "accuracy_archs", "val_images": "val_images", "calib_images": "calib_images"},
    "search": {"sampler": "sampler", "trials": "trials", "objectives": "objectives", "budgets": "budgets",
               "storage": "storage", "ray_address": "ray_address", "workers": "workers",
               "refine": "refine_archs"},
    "export": {"latency_budgets": "latency_budgets", "formats": "export_formats", "finetune_steps": "finetune_steps"},
}
_TOP = {"name", "space", "seed", "out_root", "devices"}


def load_run_config(path: str | os.PathLike | None, **overrides: Any) -> RunConfig:
    """Read a run YAML (sections data/train/profile/accuracy/search/export) and apply overrides."""
    from hwnas._io import read_yaml_mapping

    flat: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        d = read_yaml_mapping(p, "config file", ConfigError)
        for k, v in d.items():
            if k in _TOP:
                flat[k] = v
            elif k in _SECTIONS:
                if not isinstance(v, dict):
                    raise ConfigError(f"{p}: section {k!r} must be a mapping")
                for kk, vv in v.items():
                    if kk not in _SECTIONS[k]:
                        raise ConfigError(f"{p}: unknown key {k}.{kk}; allowed: {sorted(_SECTIONS[k])}")
                    flat[_SECTIONS[k][kk]] = vv
            else:
                raise ConfigError(f"{p}: unknown key {k!r}; allowed: {sorted(_TOP | set(_SECTIONS))}")
    retrain = overrides.pop("retrain", False)
    flat.update({k: v for k, v in overrides.items() if v is not None})
    if retrain:
        flat["pretrained"] = None
    for k in ("devices", "objectives", "budgets", "export_formats"):
        if k in flat and isinstance(flat[k], str):
            flat[k] = tuple(s.strip() for s in flat[k].split(",") if s.strip())
        elif k in flat:
            flat[k] = tuple(flat[k])
    if isinstance(flat.get("latency_budgets"), list):
        flat["latency_budgets"] = tuple(float(x) for x in flat["latency_budgets"])
    try:
        return RunConfig(**flat)
    except TypeError as e:
        raise ConfigError(f"bad run config: {e}") from None

