"""Drawing and varying archs of a space: sampling, mutation, crossover, enumeration, extremes.

Each choice is drawn uniformly and independently (the OFA / BigNAS convention); the order of the
draws is part of the behaviour (a seed gives the same arch across versions), so change it only
on purpose.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import replace
from operator import is_
from typing import TYPE_CHECKING

from hwnas.errors import SpaceError
from hwnas.search_space import _tables
from hwnas.search_space._arch import Arch, BlockArch, StageArch, plain
from hwnas.search_space._blocks import block_kind, block_macs
from hwnas.search_space._configs import stage_block_config
from hwnas.search_space._tables import per_space

if TYPE_CHECKING:
    from hwnas.search_space._space import Space, StageSpec

__all__ = ["crossover", "enumerate_archs", "extreme_arch", "mutate", "sample", "sample_many"]


def _takes_expand(kind: str) -> bool:
    return block_kind(kind).takes_expand


def enumerate_archs(space: Space) -> Iterator[Arch]:
    """Every architecture of `space`, in a fixed order."""
    per_stage = []
    for st in space.stages:
        options = []
        choices = st.block_choices()
        for w in st.widths:
            for d in st.depths:
                for blocks in itertools.product(choices, repeat=d):
                    options.append(StageArch(w, tuple(blocks)))
        per_stage.append(options)
    for r in space.resolutions:
        for stages in itertools.product(*per_stage):
            yield Arch(r, tuple(stages), space.name)


@per_space
def _block_choices(space: Space) -> tuple[tuple[BlockArch, ...] | None, ...]:
    """Each stage's `block_choices()` when it holds one kind (what `sample` draws a block from), else None;
    the space's own blocks (search_space/_tables.py) where it has them."""
    own = _tables.blocks(space) or {}
    return tuple(tuple(own.get((b.kind, b.kernel, b.expand), b) for b in st.block_choices()) if len(st.kinds) == 1
                 else None for st in space.stages)


def sample(space: Space, r: random.Random) -> Arch:
    """Draw an arch: each choice uniformly and independently."""
    stages = []
    for st, choices in zip(space.stages, _block_choices(space)):
        d = r.choice(st.depths)
        blocks = []
        for _ in range(d):
            if choices is not None:
                blocks.append(r.choice(choices))
            else:
                kind = r.choice(st.kinds)
                k = r.choice(st.kernels)
                e = r.choice(st.expands) if _takes_expand(kind) else 1
                blocks.append(BlockArch(kind, k, e))
        stages.append(StageArch(r.choice(st.widths), tuple(blocks)))
    return Arch(r.choice(space.resolutions), tuple(stages), space.name)


def sample_many(space: Space, n: int, r: random.Random, *, unique: bool = False) -> list[Arch]:
    if not unique:
        return [sample(space, r) for _ in range(n)]
    seen: dict[Arch, None] = {}
    tries = 0
    while len(seen) < n:
        seen.setdefault(sample(space, r), None)
        tries += 1
        if tries > 50 * n + 1000:
            raise SpaceError(f"could not draw {n} distinct archs from space {space.name!r} (size {space.size()})")
    return list(seen)


def _random_block(ss: StageSpec, r: random.Random) -> BlockArch:
    kind = r.choice(ss.kinds)
    return BlockArch(kind, r.choice(ss.kernels), r.choice(ss.expands) if _takes_expand(kind) else 1)


def mutate(space: Space, arch: Arch, r: random.Random, prob: float) -> Arch:
    """Resample each choice of (validated) `arch` with probability `prob`; the result stays in the space."""
    res = r.choice(space.resolutions) if r.random() < prob else arch.resolution
    # a changed block: the space's own one when every value is plain (else a new BlockArch of the values)
    own = _tables.blocks(space) if plain(arch) else None
    stages = []
    for sa, ss in zip(arch.stages, space.stages):
        width = r.choice(ss.widths) if r.random() < prob else sa.width
        depth = r.choice(ss.depths) if r.random() < prob else sa.depth
        new = []
        for j in range(depth):
            b = sa.blocks[j] if j < sa.depth else _random_block(ss, r)
            kind = r.choice(ss.kinds) if r.random() < prob else b.kind
            k = r.choice(ss.kernels) if r.random() < prob else b.kernel
            if not _takes_expand(kind):
                e = 1
            elif not _takes_expand(b.kind) or r.random() < prob:
                e = r.choice(ss.expands)
            else:
                e = b.expand
            # the block itself when no choice changed (the same values: nothing to build)
            if kind is b.kind and k is b.kernel and e is b.expand:
                new.append(b)
            else:
                new.append((own and own.get((kind, k, e))) or BlockArch(kind, k, e))
        stages.append(_stage(width, new, sa))
    return Arch(res, tuple(stages), space.name)


def _stage(width: int, blocks: list[BlockArch], *parents: StageArch) -> StageArch:
    """`StageArch(width, tuple(blocks))`, or a parent's stage when it is made of the very same objects."""
    n = len(blocks)
    for p in parents:
        pb = p.blocks
        if p.width is width and len(pb) == n and type(pb) is tuple and type(p) is StageArch and all(map(is_, pb, blocks)):
            return p
    return StageArch(width, tuple(blocks))


def crossover(space: Space, a: Arch, b: Arch, r: random.Random) -> Arch:
    """Uniform crossover of (validated) parents: each stage's width/depth and each block slot from either."""
    res = r.choice((a.resolution, b.resolution))
    stages = []
    for sa, sb in zip(a.stages, b.stages):
        width = r.choice((sa.width, sb.width))
        depth = r.choice((sa.depth, sb.depth))
        blocks = []
        for j in range(depth):
            options = [s.blocks[j] for s in (sa, sb) if j < s.depth]
            blocks.append(r.choice(options))
        stages.append(_stage(width, blocks, sa, sb))
    return Arch(res, tuple(stages), space.name)


def extreme_arch(space: Space, largest: bool) -> Arch:
    """The largest (or smallest) arch: every choice at its max (min); in a stage of several kinds,
    the kind whose block costs the most (least) multiply-adds per output pixel at those choices."""
    pick = max if largest else min
    stages = []
    prev_w = space.stem.channels
    for i, ss in enumerate(space.stages):
        w, k, e = pick(ss.widths), pick(ss.kernels), pick(ss.expands)

        def cost(kind: str, i: int = i, cin: int = prev_w, w: int = w, k: int = k, e: int = e) -> int:
            # a 1x1 map at stride 1 without SE: multiply-adds per output pixel
            c = stage_block_config(space, i, kind, cin, w, k, e, 1, 1)
            return block_macs(space, replace(c, se=False))

        kind = pick(ss.kinds, key=cost)
        blk = BlockArch(kind, k, block_kind(kind).expand_of(e))
        stages.append(StageArch(w, (blk,) * pick(ss.depths)))
        prev_w = w
    return Arch(pick(space.resolutions), tuple(stages), space.name)
