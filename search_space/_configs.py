"""Block configurations: the distinct blocks a profiler times and the cost models price.

A `BlockConfig` is one block as a module sees it (kind, widths, kernel, expand, stride, input size,
SE, activation) and also says where it sits (`stage`) and whether it has an expand conv, so nothing
downstream has to guess which stage a configuration came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwnas.search_space._arch import plain
from hwnas.search_space._blocks import block_kind
from hwnas.search_space._tables import per_space
from hwnas.search_space._tables import plain as plain_space
from hwnas.search_space._walk import feature_sizes, walk

if TYPE_CHECKING:
    from hwnas.search_space._arch import Arch
    from hwnas.search_space._space import Space

__all__ = ["BlockConfig", "block_configs", "distinct_block_configs", "stage_block_config"]


@dataclass(frozen=True)
class BlockConfig:
    """A distinct block as a profiler sees it: kind, channels, kernel, expand, stride, input size.

    `stage` is the 0-based stage index of a stage block (None for the stem and the head);
    `has_expand` whether the block has a separate 1x1 expand conv (the kind's rule for its stage).
    Neither is part of `key`, the lookup-table key, which stays what profiles on disk were written
    with.
    """

    kind: str  # stem | head | a block kind of the registry (mb, fmb, conv)
    cin: int
    cout: int
    kernel: int
    expand: int
    stride: int
    in_size: int
    se: bool
    act: str
    stage: int | None = None
    has_expand: bool = False

    # Not a field: the hash, computed at construction (cost models look every block of every arch up by
    # its configuration; the generated hash would hash all eleven fields in Python on each lookup).
    _hash = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_hash", hash(self._values()))
        except TypeError:  # an unhashable value: `hash(config)` raises, when asked, as before
            pass

    def _values(self) -> tuple:
        return (self.kind, self.cin, self.cout, self.kernel, self.expand, self.stride, self.in_size, self.se,
                self.act, self.stage, self.has_expand)

    def __hash__(self) -> int:  # kept by @dataclass (frozen, eq) since defined here; consistent with __eq__
        h = self._hash
        return h if h is not None else hash(self._values())

    @property
    def key(self) -> str:
        return (
            f"{self.kind}_i{self.cin}_o{self.cout}_k{self.kernel}_e{self.expand}_s{self.stride}"
            f"_r{self.in_size}_se{int(self.se)}_{self.act}"
        )

    @property
    def out_size(self) -> int:
        return math.ceil(self.in_size / self.stride)


def stage_block_config(space: Space, stage: int, kind: str, cin: int, cout: int, kernel: int, expand: int,
                       stride: int, in_size: int) -> BlockConfig:
    """The configuration of a block of kind `kind` in stage `stage` (SE, activation and expand conv from the stage)."""
    ss = space.stages[stage]
    rec = block_kind(kind)
    return BlockConfig(kind, cin, cout, kernel, rec.expand_of(expand), stride, in_size, ss.se, ss.act, stage,
                       rec.has_expand(ss.expands))


def _stem(space: Space, resolution: int) -> BlockConfig:
    st = space.stem
    return BlockConfig("stem", space.in_channels, st.channels, st.kernel, 1, st.stride, resolution, False, st.act)


def _head(space: Space, cin: int, size: int) -> BlockConfig:
    return BlockConfig("head", cin, space.num_classes, 1, 1, 1, size, False, space.head.act)


@per_space
def _made(space: Space) -> dict[tuple, BlockConfig]:
    """The configurations `block_configs` made for plain archs of a plain `space`, by their arguments:
    filled as archs come, bounded by the space (its archs are validated first)."""
    return {}


def block_configs(space: Space, arch: Arch) -> list[BlockConfig]:
    """The blocks `arch` (validated) runs, in order: stem, every active block, head."""
    # The same arguments give an equal configuration: for plain values (no 3.0 == 3) it is made once.
    made = _made(space) if plain(arch) and plain_space(space) else None

    def config(key: tuple, make: Callable[..., BlockConfig], *args: Any) -> BlockConfig:
        c = made.get(key) if made is not None else None
        if c is None:
            c = make(space, *args)
            if made is not None:
                made[key] = c
        return c

    out = [config(("stem", arch.resolution), _stem, arch.resolution)]
    cin = space.stem.channels
    for s in walk(space, arch):
        b = s.block
        args = (s.stage, b.kind, s.cin, s.cout, b.kernel, b.expand, s.stride, s.in_size)
        out.append(config(args, stage_block_config, *args))
        cin = s.cout
    out.append(config(("head", cin, arch.resolution), _head_at, cin, arch.resolution))
    return out


def _head_at(space: Space, cin: int, resolution: int) -> BlockConfig:
    return _head(space, cin, feature_sizes(space, resolution)[-1])


def distinct_block_configs(space: Space) -> list[BlockConfig]:
    """Every distinct block configuration any arch of `space` can contain (sorted by key).

    Two stages that yield the same key share one entry (the first stage's): the key is what the
    lookup table is indexed by.
    """
    seen: dict[str, BlockConfig] = {}

    def add(c: BlockConfig) -> None:
        seen.setdefault(c.key, c)

    for r in space.resolutions:
        sizes = feature_sizes(space, r)
        add(_stem(space, r))
        for i, ss in enumerate(space.stages):
            h = sizes[i]
            for b in ss.block_choices():
                for w in ss.widths:
                    for cin in space.stage_in_widths(i):
                        add(stage_block_config(space, i, b.kind, cin, w, b.kernel, b.expand, ss.stride, h))
                    if ss.max_depth > 1:
                        add(stage_block_config(space, i, b.kind, w, w, b.kernel, b.expand, 1, math.ceil(h / ss.stride)))
        for cin in space.stages[-1].widths:
            add(_head(space, cin, sizes[-1]))
    return [seen[k] for k in sorted(seen)]
