"""The predictors' view of a space: a fixed-length float32 vector per arch.

One-hot columns for every elastic choice (resolution, each stage's width and depth, each block
slot's kind, kernel and expand ratio), an `active` flag per slot of an elastic-depth stage (zeros
for inactive slots), and the resolution scaled to [0, 1]. The column layout depends only on the
space and is computed once per space (`functools.lru_cache` keyed by the frozen, hashable `Space`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from hwnas.search_space._arch import Arch
from hwnas.search_space._choices import stage_takes_expand

if TYPE_CHECKING:
    from hwnas.search_space._space import Space

__all__ = ["encode", "encode_many", "encoding_names"]


@lru_cache(maxsize=64)
def _layout(space: Space) -> tuple[dict[str, int], tuple[str, ...]]:
    names: list[str] = []
    if len(space.resolutions) > 1:
        names += [f"r={r}" for r in space.resolutions]
    names.append("r_scaled")
    for i, ss in enumerate(space.stages, start=1):
        if len(ss.widths) > 1:
            names += [f"s{i}.w={w}" for w in ss.widths]
        if len(ss.depths) > 1:
            names += [f"s{i}.d={d}" for d in ss.depths]
        for j in range(ss.max_depth):
            if len(ss.kinds) > 1:
                names += [f"s{i}.b{j}.kind={k}" for k in ss.kinds]
            if len(ss.kernels) > 1:
                names += [f"s{i}.b{j}.k={k}" for k in ss.kernels]
            if len(ss.expands) > 1 and stage_takes_expand(ss):
                names += [f"s{i}.b{j}.e={e}" for e in ss.expands]
            if len(ss.depths) > 1:
                names.append(f"s{i}.b{j}.active")
    return {n: i for i, n in enumerate(names)}, tuple(names)


def encoding_names(space: Space) -> list[str]:
    """Names of the columns of `encode` (fixed length for the space)."""
    return list(_layout(space)[1])


def encode(space: Space, arch: Arch) -> np.ndarray:
    """Fixed-length float32 encoding: one-hot choices, zeros for inactive slots, scaled resolution."""
    index, names = _layout(space)
    v = np.zeros(len(names), dtype=np.float32)
    _encode_into(space, arch, v, index)
    return v


def encode_many(space: Space, archs: Sequence[Arch]) -> np.ndarray:
    index, names = _layout(space)
    out = np.zeros((len(archs), len(names)), dtype=np.float32)
    for row, a in zip(out, archs):
        _encode_into(space, a, row, index)
    return out


def _encode_into(space: Space, arch: Arch, v: np.ndarray, index: dict[str, int]) -> None:
    rmin, rmax = space.resolutions[0], space.resolutions[-1]
    v[index["r_scaled"]] = 1.0 if rmax == rmin else (arch.resolution - rmin) / (rmax - rmin)
    k = index.get(f"r={arch.resolution}")
    if k is not None:
        v[k] = 1.0
    for i, sa in enumerate(arch.stages, start=1):
        for name in (f"s{i}.w={sa.width}", f"s{i}.d={sa.depth}"):
            k = index.get(name)
            if k is not None:
                v[k] = 1.0
        for j, b in enumerate(sa.blocks):
            for name in (f"s{i}.b{j}.kind={b.kind}", f"s{i}.b{j}.k={b.kernel}", f"s{i}.b{j}.e={b.expand}",
                         f"s{i}.b{j}.active"):
                k = index.get(name)
                if k is not None:
                    v[k] = 1.0
