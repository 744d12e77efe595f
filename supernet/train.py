"""Once-for-all supernet training: one `Trainer` loop, training policies as small strategy objects.

Policies (each decides, per step, which subnets run and how they are supervised):

- `sandwich` (BigNAS / AttentiveNAS): the max subnet on the labels, then the min subnet and
  `num_random` random subnets on the max subnet's soft targets (in-place distillation); one
  optimizer step. Optional AlphaNet alpha-divergence for the distillation loss.
- `progressive` (Once-for-All): phases full -> elastic kernel -> elastic depth -> elastic expand
  (and width, kind), each with its own share of the steps and its own cosine LR; channels are
  sorted by importance before the expand phase; subnets learn from labels and from the full
  net's soft targets.
- `deps` (Delayed epsilon-Shrinking): the full net alone for the first `deps_full_fraction` of
  training, then the sandwich rule with the subnets' loss weight (their effective learning
  rate under SGD) raised linearly from `deps_ramp_start` to 1 over `deps_ramp_epochs`.

Everything random is a pure function of `(seed, step)` or `(seed, epoch)`: the subnets of step
t, the data order of epoch e. So every DDP rank samples the same subnets without talking, and a
run resumed from an epoch checkpoint continues exactly (`torch` RNG state is saved for dropout).

Distributed: run under `torchrun --nproc_per_node=N`; each rank takes its slice of the global
batch, DDP averages gradients (`find_unused_parameters=True`: inactive slots get no gradient).
BatchNorm uses per-rank batch statistics, as in plain DDP; a single process reproduces a DDP run
exactly with `accum_steps=N` (the global batch in N micro-batches).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hwnas._io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from hwnas.errors import CheckpointError, ConfigError
from hwnas.search_space import Arch, BlockArch, Space, StageArch
from hwnas.supernet._supernet import Supernet, resize_input
from torch import nn

__all__ = [
    "POLICIES",
    "TrainConfig",
    "TrainResult",
    "Task",
    "SandwichPolicy",
    "ProgressivePolicy",
    "DepsPolicy",
    "make_policy",
    "load_config",
    "default_config_path",
    "train",
    "load_supernet",
    "save_supernet",
    "lr_at",
]

POLICIES = ("sandwich", "progressive", "deps")
LR_SCHEDULES = ("cosine", "onecycle")
KD_LOSSES = ("kl", "alpha")
PROGRESSIVE_PHASES = ("full", "kernel", "depth", "expand")
CHECKPOINT_FORMAT = "hwnas-train-checkpoint"
SUPERNET_FORMAT = "hwnas-supernet"


def default_config_path() -> Path:
    """The packaged Fashion-MNIST training config (`configs/fmnist.yaml`) with named schedules."""
    return Path(__file__).resolve().parent.parent / "configs" / "fmnist.yaml"


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
    seed: int = 0
    threads: int | None = None
    channels_last: bool = False
    val_every: int = 1
    val_images: int = 1000
    calib_images: int = 2000
    report_random: int = 3
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
        for name in ("epochs", "batch_size", "accum_steps", "calib_images", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "an integer >= 1")
        for name in ("steps_per_epoch", "subset"):
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
                "report_random", "search_val", "seed", "log_every"}
        floats = {"lr", "warmup_epochs", "min_lr_ratio", "momentum", "weight_decay", "label_smoothing",
                  "deps_full_fraction", "deps_ramp_epochs", "deps_ramp_start"}
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


# ---- policies ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One subnet forward/backward of a step.

    `target`: "labels" (cross-entropy with label smoothing), "teacher" (distillation from the
    latest soft targets), "both" (labels + distillation, OFA), or "soft" (no gradient: only
    produces soft targets). `makes_soft`: its detached output becomes the soft targets.
    """

    arch: Arch
    target: str
    weight: float = 1.0
    makes_soft: bool = False


class _Policy:
    name = "base"

    def __init__(self, cfg: TrainConfig, space: Space, steps_per_epoch: int):
        self.cfg, self.space, self.spe = cfg, space, steps_per_epoch
        self.total = cfg.epochs * steps_per_epoch
        self._max = self._at_res(space.max_arch(), max(space.resolutions))
        self._min = self._at_res(space.min_arch(), min(space.resolutions) if cfg.resolution_sampling else max(space.resolutions))

    def _at_res(self, arch: Arch, res: int) -> Arch:
        return Arch(res, arch.stages, arch.space)

    def _rand(self, r: random.Random) -> Arch:
        a = self.space.sample(r)
        return a if self.cfg.resolution_sampling else self._at_res(a, max(self.space.resolutions))

    def rng(self, step: int) -> random.Random:
        return random.Random(self.cfg.seed * 1_000_003 + step)

    def phase(self, step: int) -> str:
        return self.name

    def lr(self, step: int) -> float:
        return lr_at(self.cfg, step, self.total, warmup=int(self.cfg.warmup_epochs * self.spe))

    def on_step(self, step: int, net: Supernet) -> bool:
        """Called before each step; returns True when the optimizer's state must be reset."""
        return False

    def tasks(self, step: int) -> list[Task]:
        raise NotImplementedError

    def _sandwich(self, step: int, weight: float) -> list[Task]:
        r = self.rng(step)
        out = [Task(self._max, "labels", 1.0, makes_soft=True), Task(self._min, "teacher", weight)]
        out += [Task(self._rand(r), "teacher", weight) for _ in range(self.cfg.num_random)]
        return out

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase(step), "step": step}


class SandwichPolicy(_Policy):
    """BigNAS/AttentiveNAS sandwich rule with in-place distillation."""

    name = "sandwich"

    def tasks(self, step: int) -> list[Task]:
        return self._sandwich(step, 1.0)


class DepsPolicy(_Policy):
    """Delayed epsilon-shrinking: full net alone first, then sandwich with ramped subnet weights."""

    name = "deps"

    def __init__(self, cfg: TrainConfig, space: Space, steps_per_epoch: int):
        super().__init__(cfg, space, steps_per_epoch)
        self.shrink_at = int(round(cfg.deps_full_fraction * self.total))
        self.ramp = max(1, int(round(cfg.deps_ramp_epochs * steps_per_epoch)))

    def phase(self, step: int) -> str:
        if step < self.shrink_at:
            return "full"
        return "ramp" if step < self.shrink_at + self.ramp else "shrink"

    def subnet_weight(self, step: int) -> float:
        c = self.cfg
        if step < self.shrink_at:
            return 0.0
        frac = min(1.0, (step - self.shrink_at + 1) / self.ramp)
        return c.deps_ramp_start + (1.0 - c.deps_ramp_start) * frac

    def tasks(self, step: int) -> list[Task]:
        if step < self.shrink_at:
            return [Task(self._max, "labels")]
        return self._sandwich(step, self.subnet_weight(step))


class ProgressivePolicy(_Policy):
    """Once-for-All progressive shrinking: full -> kernel -> depth -> expand, each phase its own LR."""

    name = "progressive"

    def __init__(self, cfg: TrainConfig, space: Space, steps_per_epoch: int):
        super().__init__(cfg, space, steps_per_epoch)
        self.phases: list[tuple[str, int, int, float]] = []  # name, start, length, lr scale
        start = 0
        for i, (name, frac, scale) in enumerate(cfg.progressive_phases):
            n = self.total - start if i == len(cfg.progressive_phases) - 1 else int(round(frac * self.total))
            self.phases.append((name, start, n, scale))
            start += n

    def _current(self, step: int) -> tuple[str, int, int, float]:
        for ph in self.phases:
            if step < ph[1] + ph[2]:
                return ph
        return self.phases[-1]

    def phase(self, step: int) -> str:
        return self._current(step)[0]

    def lr(self, step: int) -> float:
        name, start, n, scale = self._current(step)
        warm = int(self.cfg.warmup_epochs * self.spe) if name == "full" else 0
        return lr_at(self.cfg, step, n, base=self.cfg.lr * scale, start=start, warmup=warm)

    def on_step(self, step: int, net: Supernet) -> bool:
        name, start, _, _ = self._current(step)
        if step != start or start == 0:
            return False
        if name == "expand":
            net.sort_channels()  # smaller expand ratios keep the most important channels
        return True  # a new phase starts a fresh optimizer (OFA), and sorted weights void momentum

    def _sample(self, r: random.Random, phase: str) -> Arch:
        a = self._rand(r)
        if phase == "expand":
            return a
        mx = self.space.max_arch()
        stages = []
        for ss, sa, sm in zip(self.space.stages, a.stages, mx.stages):
            depth = sa.depth if phase == "depth" else sm.depth
            blocks = []
            for j in range(depth):
                kind, e = sm.blocks[j].kind, sm.blocks[j].expand
                k = sa.blocks[j].kernel if j < sa.depth else r.choice(ss.kernels)
                blocks.append(BlockArch(kind, k, e))
            stages.append(StageArch(sm.width, tuple(blocks)))
        return Arch(a.resolution, tuple(stages), a.space)

    def tasks(self, step: int) -> list[Task]:
        phase = self.phase(step)
        if phase == "full":
            return [Task(self._max, "labels")]
        r = self.rng(step)
        out = [Task(self._max, "soft", makes_soft=True)]
        return out + [Task(self._sample(r, phase), "both") for _ in range(max(1, self.cfg.num_random))]


def make_policy(cfg: TrainConfig, space: Space, steps_per_epoch: int) -> _Policy:
    """The policy object named by `cfg.policy`."""
    cls = {"sandwich": SandwichPolicy, "progressive": ProgressivePolicy, "deps": DepsPolicy}[cfg.policy]
    return cls(cfg, space, steps_per_epoch)


# ---- losses ------------------------------------------------------------------------------------
def _soft_ce(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (equals KL(soft || student) up to a constant)."""
    return -(soft * F.log_softmax(logits, 1)).sum(1).mean()


def _alpha_div(logits: torch.Tensor, soft: torch.Tensor, alphas: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """AlphaNet-style loss: the larger of two alpha-divergences D_a(teacher || student), a in alphas."""
    logq = F.log_softmax(logits, 1)
    logp = soft.clamp_min(1e-8).log()
    vals = []
    for a in alphas:
        if abs(a - 1.0) < 1e-6:  # the a -> 1 limit is KL(p || q)
            vals.append((soft * (logp - logq)).sum(1).mean())
        elif abs(a) < 1e-6:  # the a -> 0 limit is KL(q || p)
            q = logq.exp()
            vals.append((q * (logq - logp)).sum(1).mean())
        else:
            s = torch.exp(a * logp + (1 - a) * logq).sum(1)
            vals.append(((s - 1) / (a * (a - 1))).mean())
    return torch.maximum(vals[0], vals[1])


# ---- distributed -------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). Returns True if we created it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return True


# ---- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: where things were written and the final report."""

    out_dir: Path
    supernet_path: Path
    metrics_path: Path
    report: dict[str, Any]
    epochs: int
    global_step: int
    train_seconds: float
    images_per_s: float
    resumed_from: int | None = None
    model: Supernet | None = field(default=None, compare=False, repr=False)


def save_supernet(net: Supernet, out_dir: str | os.PathLike, *, config: TrainConfig | None = None,
                  report: Mapping[str, Any] | None = None) -> Path:
    """Write `supernet.safetensors` + `supernet.json` (space dict, config, report) atomically."""
    from safetensors.torch import save as st_save

    out = Path(out_dir)
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(out / "supernet.safetensors", st_save(sd))
    from hwnas.supernet.export import versions

    atomic_write_json(
        out / "supernet.json",
        {
            "format": SUPERNET_FORMAT,
            "version": 1,
            "space": net.space.to_dict(),
            "config": config.to_dict() if config is not None else None,
            "report": dict(report or {}),
            "versions": versions(),
        },
    )
    return out / "supernet.safetensors"


def load_supernet(path_or_dir: str | os.PathLike) -> Supernet:
    """Rebuild a trained `Supernet` from `supernet.json` + `supernet.safetensors` (no pickles)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path_or_dir)
    d = p if p.is_dir() else p.parent
    meta_p, w_p = d / "supernet.json", d / "supernet.safetensors"
    if not meta_p.is_file() or not w_p.is_file():
        raise CheckpointError(f"{d} is not a supernet checkpoint: needs supernet.json and supernet.safetensors")
    try:
        meta = read_json(meta_p)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {meta_p}: {e}") from e
    if meta.get("format") != SUPERNET_FORMAT:
        raise CheckpointError(f"{meta_p} is not a supernet description (format {meta.get('format')!r})")
    net = Supernet(Space.from_dict(meta["space"]))
    try:
        sd = load_file(str(w_p))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {w_p}: {e}") from e
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{w_p} does not match its space: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net


# ---- the trainer -------------------------------------------------------------------------------
def _param_groups(net: nn.Module, wd: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: not on BN, biases or kernel-transform matrices."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or ".transforms." in name else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(_param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


def _torch_save_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Metrics:
    """Append-only JSONL log a person can plot (one record per logged step, epoch and report)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("step", 0) <= step and rec.get("kind") != "report":
                keep.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def write(self, **rec: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def _evaluate_archs(net: Supernet, archs: Mapping[str, Arch], loader: Any, calib: torch.Tensor, batch_size: int = 500
                    ) -> dict[str, float]:
    from hwnas.supernet.bn import evaluate

    return {name: evaluate(net, a, loader, calib=calib, num_calib=len(calib), batch_size=batch_size) for name, a in archs.items()}


def report_archs(space: Space, n_random: int, seed: int = 12345) -> dict[str, Arch]:
    """The subnets a report evaluates: max, min and `n_random` fixed random ones (same for every run)."""
    out = {"max": space.max_arch(), "min": space.min_arch()}
    for i, a in enumerate(space.sample_many(n_random, seed, unique=True)):
        out[f"random{i}"] = a
    return out


def train(config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          stop_after_epochs: int | None = None) -> TrainResult:
    """Train a supernet with `config`, writing checkpoints, metrics and the final supernet to `out_dir`.

    `resume=True` continues from `out_dir/checkpoint.pt` exactly (same seeds: same final weights).
    `stop_after_epochs` ends the run early after that many epochs in total (as a kill would;
    used to test resume). Under `torchrun` the run is distributed; rank 0 writes the files.
    """
    from hwnas.data import make_loaders

    cfg = config
    created_pg = _maybe_init_distributed()
    rank, world = _dist_info()
    if cfg.batch_size % (world * cfg.accum_steps):
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by world_size*accum_steps={world * cfg.accum_steps}")
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    out = Path(out_dir).resolve()
    ckpt_path = out / "checkpoint.pt"
    is_main = rank == 0
    if is_main:
        if ckpt_path.exists() and not resume:
            raise ConfigError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")

    space = Space.preset(str(cfg.space))  # a preset name or a space YAML path
    loaders = make_loaders(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, search_val=cfg.search_val,
                           seed=cfg.seed, subset=cfg.subset, steps_per_epoch=cfg.steps_per_epoch, space=space)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)  # only now: a missing dataset must leave no empty run dir behind
    spe = len(loaders.train)
    torch.manual_seed(cfg.seed)
    net = Supernet(space)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    policy = make_policy(cfg, space, spe)
    opt = _make_optimizer(net, cfg)

    start_epoch, step, resumed_from, prior_seconds = 0, 0, None, 0.0
    if resume and ckpt_path.is_file():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
            raise CheckpointError(f"cannot read {ckpt_path}: {e}") from e
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{ckpt_path} is not a training checkpoint")
        saved = ck["config"]
        diff = sorted(k for k in cfg.to_dict() if saved.get(k) != cfg.to_dict()[k] and k not in ("threads", "log_every"))
        if diff:
            raise CheckpointError(f"--resume with a different config than the checkpoint's: {diff}; use the same config")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"]["torch"])
        start_epoch, step, prior_seconds = int(ck["epoch"]), int(ck["global_step"]), float(ck.get("train_seconds", 0.0))
        resumed_from = start_epoch

    model: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, find_unused_parameters=True)

    metrics = _Metrics(out / "metrics.jsonl", is_main)
    if resumed_from is not None:
        metrics.truncate_after(step)
    elif is_main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if is_main:
        atomic_write_json(out / "config.json", cfg.to_dict())

    calib = loaders.calib_images(cfg.calib_images)
    val_calib = calib[: min(len(calib), 500)]
    from hwnas.data import TensorLoader

    val_loader = TensorLoader(loaders.val.x[: cfg.val_images], loaders.val.y[: cfg.val_images], batch_size=500)
    last_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    mb = cfg.batch_size // world // cfg.accum_steps
    t_train = time.perf_counter()
    images_done = 0
    try:
        for epoch in range(start_epoch, last_epoch):
            loaders.train.set_epoch(epoch)
            net.train()
            bar = None
            if progress and is_main:
                from tqdm import tqdm

                bar = tqdm(total=spe, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=True, dynamic_ncols=True)
            t_ep, n_ep, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
            t_log = time.perf_counter()
            n_log = 0
            for x, y in loaders.train:
                if policy.on_step(step, net):
                    opt = _make_optimizer(net, cfg)
                lr = policy.lr(step)
                for g in opt.param_groups:
                    g["lr"] = lr
                tasks = policy.tasks(step)
                opt.zero_grad(set_to_none=True)
                x_r = x[rank * cfg.batch_size // world : (rank + 1) * cfg.batch_size // world]
                y_r = y[rank * cfg.batch_size // world : (rank + 1) * cfg.batch_size // world]
                step_loss = 0.0
                for a in range(cfg.accum_steps):
                    xm, ym = x_r[a * mb : (a + 1) * mb], y_r[a * mb : (a + 1) * mb]
                    if cfg.channels_last:
                        xm = xm.contiguous(memory_format=torch.channels_last)
                    soft = None
                    logged = False
                    for t in tasks:
                        net.set_active(t.arch)
                        xi = resize_input(xm, t.arch.resolution)
                        if t.target == "soft":
                            with torch.no_grad():
                                soft = F.softmax(net(xi), 1)
                            continue
                        logits = model(xi)
                        if t.target == "labels":
                            loss = F.cross_entropy(logits, ym, label_smoothing=cfg.label_smoothing)
                        else:
                            assert soft is not None, "a distillation task needs a teacher before it"
                            kd = _soft_ce(logits, soft) if cfg.kd == "kl" else _alpha_div(logits, soft)
                            loss = kd if t.target == "teacher" else kd + F.cross_entropy(logits, ym, label_smoothing=cfg.label_smoothing)
                        if t.makes_soft:
                            soft = F.softmax(logits.detach(), 1)
                        (loss * (t.weight / cfg.accum_steps)).backward()
                        if not logged:  # the logged loss: the first trained subnet's (a teacher-only pass has none)
                            step_loss += float(loss.detach()) / cfg.accum_steps
                            logged = True
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                n_ep += len(x)
                n_log += len(x)
                images_done += len(x)
                loss_sum += step_loss
                loss_n += 1
                if bar is not None:
                    el = time.perf_counter() - t_ep
                    bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.4f}", phase=policy.phase(step - 1),
                                    img_s=f"{n_ep / max(el, 1e-9):.0f}", refresh=False)
                    bar.update(1)
                if step % cfg.log_every == 0:
                    now = time.perf_counter()
                    metrics.write(kind="step", epoch=epoch, step=step, phase=policy.phase(step - 1), loss=step_loss, lr=lr,
                                  img_s=n_log / max(now - t_log, 1e-9), subnets=len(tasks))
                    t_log, n_log = now, 0
            if bar is not None:
                bar.close()
            ep_seconds = time.perf_counter() - t_ep
            rec: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": step, "phase": policy.phase(step - 1),
                                   "train_loss": loss_sum / max(loss_n, 1), "seconds": ep_seconds,
                                   "img_s": n_ep / max(ep_seconds, 1e-9)}
            if is_main and cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                accs = _evaluate_archs(net, {"max": space.max_arch(), "min": space.min_arch()}, val_loader, val_calib)
                rec.update({f"val_acc_{k}": v for k, v in accs.items()})
            metrics.write(**rec)
            if progress and is_main:
                extra = " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k.startswith("val_acc"))
                print(f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train_loss']:.4f} {rec['img_s']:.0f} img/s "
                      f"{ep_seconds:.0f}s {extra}", flush=True)
            if is_main:
                ck = {
                    "format": CHECKPOINT_FORMAT,
                    "version": 1,
                    "epoch": epoch + 1,
                    "global_step": step,
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": {"kind": cfg.lr_schedule, "step": step, "lr": policy.lr(max(step - 1, 0))},
                    "policy": policy.state_dict(step),
                    "rng": {"torch": torch.get_rng_state()},
                    "config": cfg.to_dict(),
                    "train_seconds": prior_seconds + time.perf_counter() - t_train,
                }
                atomic_write_bytes(ckpt_path, _torch_save_bytes(ck))
    except BaseException:
        if is_main and progress:
            print(f"training stopped; resume with: hwnas train --config {out / 'config.json'} --out {out} --resume", flush=True)
        raise

    train_seconds = prior_seconds + time.perf_counter() - t_train
    done = last_epoch >= cfg.epochs
    report: dict[str, Any] = {}
    if is_main and done:
        t_eval = time.perf_counter()
        archs = report_archs(space, cfg.report_random)
        accs = _evaluate_archs(net, archs, loaders.test, calib)
        report = {
            "test_acc": accs,
            "archs": {k: str(a) for k, a in archs.items()},
            "calib_images": len(calib),
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t_eval,
            "epochs": cfg.epochs,
            "steps": step,
            "world_size": world,
            "policy": cfg.policy,
            "schedule": cfg.schedule,
        }
        metrics.write(kind="report", step=step, **report)
        atomic_write_json(out / "report.json", report)
        save_supernet(net, out, config=cfg, report=report)
        if progress:
            print("test accuracy (BN recalibrated): " + ", ".join(f"{k} {v:.4f}" for k, v in accs.items()), flush=True)
    if created_pg:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(
        out_dir=out,
        supernet_path=out / "supernet.safetensors",
        metrics_path=out / "metrics.jsonl",
        report=report,
        epochs=last_epoch,
        global_step=step,
        train_seconds=train_seconds,
        images_per_s=images_done / max(time.perf_counter() - t_train, 1e-9) if images_done else 0.0,
        resumed_from=resumed_from,
        model=net,
    )
