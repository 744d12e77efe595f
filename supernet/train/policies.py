"""Training policies: which subnets a step trains and how each is supervised, as small strategy
objects (Optuna's NSGA-II takes its operators the same way).

- `sandwich` (BigNAS / AttentiveNAS): the max subnet on the labels, then the min subnet and
  `num_random` random subnets on the max subnet's soft targets (in-place distillation).
- `progressive` (Once-for-All): phases full -> elastic kernel -> elastic depth -> elastic expand
  (and width, kind), each with its own share of the steps and its own cosine LR; channels are
  sorted by importance before the expand phase; subnets learn from labels and the full net's soft
  targets.
- `deps` (Delayed epsilon-Shrinking): the full net alone for the first `deps_full_fraction` of
  training, then the sandwich rule with the subnets' loss weight raised linearly from
  `deps_ramp_start` to 1 over `deps_ramp_epochs`.
- `single`: one fixed arch (`single_arch`) on the labels: the from-scratch baseline trained with
  exactly the supernet's recipe (same loop, LR schedule, regularisation, EMA).

With `attentive: best|worst` each random subnet of the sandwich rule is a `pool` of
`attentive_pool` candidates; the trainer keeps the one with the lowest / highest loss on the
step's batch (AttentiveNAS's BestUp / WorstUp, with the minibatch loss as the score).

Everything random is a pure function of `(seed, step)`: every DDP rank draws the same subnets
without talking, and a resumed run draws what the uninterrupted one would have.

Imports: hwnas.search_space and this package's config.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwnas.search_space import Arch, BlockArch, Space, StageArch
from hwnas.supernet.train.config import TrainConfig, lr_at

if TYPE_CHECKING:
    from hwnas.supernet._supernet import Supernet

__all__ = ["Task", "SandwichPolicy", "ProgressivePolicy", "DepsPolicy", "SinglePolicy", "make_policy", "report_archs"]


@dataclass(frozen=True)
class Task:
    """One subnet forward/backward of a step.

    `target`: "labels" (cross-entropy with label smoothing), "teacher" (distillation from the
    latest soft targets), "both" (labels + distillation, OFA), or "soft" (no gradient: only
    produces soft targets). `makes_soft`: its detached output becomes the soft targets.
    `pool` + `pick` ("best"/"worst"): the subnet is chosen from candidates at run time.
    """

    arch: Arch
    target: str
    weight: float = 1.0
    makes_soft: bool = False
    pool: tuple[Arch, ...] = ()  # candidates; the trainer replaces `arch` by the best/worst of them
    pick: str = "off"


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

    def _random_task(self, r: random.Random, target: str, weight: float) -> Task:
        c = self.cfg
        if c.attentive == "off":
            return Task(self._rand(r), target, weight)
        pool = tuple(self._rand(r) for _ in range(c.attentive_pool))
        return Task(pool[0], target, weight, pool=pool, pick=c.attentive)

    def _sandwich(self, step: int, weight: float) -> list[Task]:
        r = self.rng(step)
        out = [Task(self._max, "labels", 1.0, makes_soft=True), Task(self._min, "teacher", weight)]
        out += [self._random_task(r, "teacher", weight) for _ in range(self.cfg.num_random)]
        return out

    def eval_archs(self) -> dict[str, Arch]:
        """The subnets validated after each epoch."""
        return {"max": self.space.max_arch(), "min": self.space.min_arch()}

    def max_arch(self) -> Arch:
        """The arch that carries the max-only regularisation (weight decay, dropout, label smoothing)."""
        return self._max

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


class SinglePolicy(_Policy):
    """One fixed arch on the labels: a subnet trained alone with the supernet's recipe."""

    name = "single"

    def __init__(self, cfg: TrainConfig, space: Space, steps_per_epoch: int):
        super().__init__(cfg, space, steps_per_epoch)
        assert cfg.single_arch is not None  # TrainConfig checks it
        self.arch = space.parse(cfg.single_arch)  # raises ValueError naming the bad token

    def tasks(self, step: int) -> list[Task]:
        return [Task(self.arch, "labels")]

    def eval_archs(self) -> dict[str, Arch]:
        return {"single": self.arch}

    def max_arch(self) -> Arch:
        return self.arch


def make_policy(cfg: TrainConfig, space: Space, steps_per_epoch: int) -> _Policy:
    """The policy object named by `cfg.policy`."""
    cls = {"sandwich": SandwichPolicy, "progressive": ProgressivePolicy, "deps": DepsPolicy, "single": SinglePolicy}
    return cls[cfg.policy](cfg, space, steps_per_epoch)


def report_archs(space: Space, n_random: int, seed: int = 12345) -> dict[str, Arch]:
    """The subnets a report evaluates: max, min and `n_random` fixed random ones (same for every run)."""
    out = {"max": space.max_arch(), "min": space.min_arch()}
    for i, a in enumerate(space.sample_many(n_random, seed, unique=True)):
        out[f"random{i}"] = a
    return out
