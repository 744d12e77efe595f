"""One walk of an arch through the network: each active block's widths, stride and feature sizes.

Every component that follows an arch block by block (the space's block configurations, the static
net and the supernet, the latency lookup, the kernels' checks) asks `walk` instead of redoing the
arithmetic of which width enters a block and how large its input map is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from hwnas.search_space._arch import Arch, BlockArch

if TYPE_CHECKING:
    from hwnas.search_space._space import Space

__all__ = ["BlockSite", "feature_sizes", "walk"]


class BlockSite(NamedTuple):
    """Where one active block runs: stage `stage` (0-based), slot `index` in it, its choice `block`,
    input/output widths, stride, and input/output feature sizes."""

    stage: int
    index: int
    block: BlockArch
    cin: int
    cout: int
    stride: int
    in_size: int
    out_size: int


def feature_sizes(space: Space, resolution: int) -> list[int]:
    """Input spatial size of every stage (index 0..n-1) and, last, of the head."""
    h = math.ceil(resolution / space.stem.stride)
    sizes = []
    for st in space.stages:
        sizes.append(h)
        h = math.ceil(h / st.stride)
    sizes.append(h)
    return sizes


def walk(space: Space, arch: Arch) -> Iterator[BlockSite]:
    """Each active block of `arch` in order (stem and head excluded: the stem reads the input at
    `arch.resolution`; the head reads the last block's width at `feature_sizes(...)[-1]`).

    `arch` is taken as given (validate it first): this sits on hot paths such as the latency
    lookup, which walk thousands of archs a second.
    """
    cin = space.stem.channels
    h = math.ceil(arch.resolution / space.stem.stride)
    for i, (sa, ss) in enumerate(zip(arch.stages, space.stages)):
        for j, b in enumerate(sa.blocks):
            stride = ss.stride if j == 0 else 1
            ho = math.ceil(h / stride)
            yield BlockSite(i, j, b, cin, sa.width, stride, h, ho)
            cin, h = sa.width, ho
