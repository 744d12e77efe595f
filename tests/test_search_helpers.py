"""Shared pieces of the searchers' tests: a small space, slow and broken objectives."""

from __future__ import annotations

import math
import time

import numpy as np
from hwnas.search_space import Space
from hwnas.searchers.pareto import hypervolume

SMALL = {
    "name": "tiny",
    "in_channels": 1,
    "num_classes": 10,
    "resolutions": [20, 28],
    "stem": {"channels": 8, "kernel": 3, "stride": 2},
    "stages": [
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5, 7], "expands": [2, 4, 6], "widths": [16], "stride": 1},
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5, 7], "expands": [2, 4, 6], "widths": [24], "stride": 2},
    ],
}


def small_space() -> Space:
    return Space.from_dict(SMALL)


def true_front(space: Space, f1_max: float = math.inf) -> np.ndarray:
    """The analytic objective's exact front by enumerating the whole space (16,200 archs)."""
    from hwnas.searchers._objectives import _AnalyticObjective

    obj = _AnalyticObjective(space)
    pts = []
    for a in space.enumerate():
        t = obj.fractions(a)
        h = len(t) // 2
        f1 = sum(t[:h]) / h
        g = 1 + 9 * sum(t[h:]) / (len(t) - h)
        if f1 <= f1_max:
            pts.append((f1, g * (1 - math.sqrt(f1 / g))))
    return np.array(pts)


def true_hv(space: Space, ref=(1.1, 1.1), f1_max: float = math.inf) -> float:
    return hypervolume(true_front(space, f1_max), ref)


class SlowCost:
    """flops/params after a sleep (module-level so it pickles into worker processes and Ray)."""

    def __init__(self, space_dict: dict, seconds: float):
        self.space = Space.from_dict(space_dict)
        self.seconds = seconds

    def __call__(self, arch):
        from hwnas.searchers import arch_cost

        t0 = time.time()
        time.sleep(self.seconds)
        out = arch_cost(self.space, arch)
        out["t_start"] = t0
        out["t_end"] = time.time()
        return out


class NanOnDeep:
    """Returns NaN flops for archs whose first stage is 2 blocks deep (a broken objective)."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, arch):
        from hwnas.searchers import arch_cost

        out = arch_cost(self.space, arch)
        if arch.stages[0].depth == 2:
            out["flops"] = float("nan")
        return out
