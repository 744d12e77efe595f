"""`Supernet`: one weight-sharing network holding every architecture of a `Space`.

Each stage has `max_depth` block slots; each slot holds one dynamic block per allowed kind.
`set_active(arch)` tells each used slot its choice once, and records the path `forward` walks,
so `forward` has no decisions left. All active state lives on module instances.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from hwnas.search_space import Arch, Space, as_random, block_kind, walk
from hwnas.supernet.blocks import DynamicHead, make_dynamic_block
from hwnas.supernet.static import ConvBNAct, StaticNet
from torch import nn

__all__ = ["Supernet", "resize_input"]


def resize_input(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a batch of images to `resolution` x `resolution` (bilinear; a no-op when it already is)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=False)


class Supernet(nn.Module):
    """The once-for-all network of a space. Build with `Supernet(space)` or `Supernet("fmnist-mbv3")`."""

    def __init__(self, space: Space | str):
        super().__init__()
        space = Space.preset(space) if isinstance(space, str) else space
        self.space = space
        st = space.stem
        self.stem = ConvBNAct(space.in_channels, st.channels, st.kernel, st.stride, st.act)
        self.stages = nn.ModuleList()
        prev_max = st.channels
        for ss in space.stages:
            w = max(ss.widths)
            slots = nn.ModuleList()
            for j in range(ss.max_depth):
                slots.append(
                    nn.ModuleDict(
                        {
                            kind: make_dynamic_block(
                                kind,
                                prev_max if j == 0 else w,
                                w,
                                ss.kernels,
                                ss.expands,
                                ss.stride if j == 0 else 1,
                                ss.se,
                                ss.act,
                                block_kind(kind).has_expand(ss.expands),
                            )
                            for kind in ss.kinds
                        }
                    )
                )
            self.stages.append(slots)
            prev_max = w
        h = space.head
        self.head = DynamicHead(prev_max, space.num_classes, h.expand_channels, h.feature_channels, h.act, h.dropout)
        self._path: list[nn.Module] = []
        self.active_arch: Arch | None = None
        self.set_max()

    # ---- choosing the active subnet ------------------------------------------------------------
    def set_active(self, arch: Arch | str | dict[str, Any]) -> Arch:
        """Make `arch` the subnet that `forward` runs; returns the validated arch."""
        arch = self.space.parse(arch)
        path: list[nn.Module] = []
        for s in walk(self.space, arch):
            blk = self.stages[s.stage][s.index][s.block.kind]
            blk.set_active(s.cin, s.cout, s.block.kernel, s.block.expand)
            path.append(blk)
        self._path = path
        self.active_arch = arch
        return arch

    def set_max(self) -> Arch:
        return self.set_active(self.space.max_arch())

    def set_min(self) -> Arch:
        return self.set_active(self.space.min_arch())

    def sample_active(self, rng: Any = None) -> Arch:
        """Draw an arch from the space with `rng` and make it active (same seed, same arch on every rank)."""
        return self.set_active(self.space.sample(as_random(rng)))

    # ---- running -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for blk in self._path:
            x = blk(x)
        return self.head(x)

    # ---- maintenance -------------------------------------------------------------------------
    @torch.no_grad()
    def separate_kernels(self) -> int:
        """Give each smaller kernel size of every elastic-kernel conv its own weight instead of
        Once-for-All's transform of the larger kernel's centre (trainer switch `kernel_sharing:
        separate`). Each starts as the kernel the transform gives now, so every subnet computes the
        same function before and after. Returns the weights added."""
        from hwnas.supernet.ops import DynamicConv2d

        return sum(m.separate_kernels() for m in self.modules() if isinstance(m, DynamicConv2d))

    @property
    def kernel_sharing(self) -> str:
        """Either "transform" (Once-for-All's kernel transform) or "separate" (one weight per kernel size)."""
        return "separate" if any(".kernel_weights." in n for n, _ in self.named_parameters()) else "transform"

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every block's hidden channels by L1 importance (before shrinking the expand ratio)."""
        for slots in self.stages:
            for slot in slots:
                for blk in slot.values():
                    blk.sort_channels()

    @torch.no_grad()
    def extract(self, arch: Arch | str | None = None) -> StaticNet:
        """A standalone static model of `arch` (or the active arch) with copied weights, same train/eval mode.

        The supernet's active arch is the same afterwards as before: extracting is a read.
        """
        before = self.active_arch
        if arch is not None:
            self.set_active(arch)
        assert self.active_arch is not None
        arch = self.active_arch
        try:
            with torch.device("meta"):  # a skeleton only: every part is replaced by a copy below
                net = StaticNet(self.space, arch)
            net.stem = copy.deepcopy(self.stem)
            net.blocks = nn.Sequential(*[blk.to_static() for blk in self._path])
            net.head = self.head.to_static(arch.stages[-1].width)
        finally:
            if before is not None and before != arch:
                self.set_active(before)
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        return net.to(device=device, dtype=dtype).train(self.training)
