"""Static blocks and `StaticNet`: plain PyTorch modules, no dynamic code.

This is what `Supernet.extract` returns and what `export.load` rebuilds from `arch.json`.
Switched-off parts are `nn.Identity`, so each `forward` reads straight down. Each block class is
registered as its kind's static module in the block-kind registry (`hwnas.search_space._blocks`)
and is built from a `BlockConfig` by `from_config`; `BODY_PARTS` names the steps of its `body`
(`pre` expand conv, `main` conv, `se`, `post` projection), which the fused kernels read.
"""

from __future__ import annotations

import torch
from hwnas.search_space import (
    Arch,
    BlockConfig,
    Space,
    block_module,
    mid_channels,
    register_block_module,
    se_channels,
    stage_block_config,
    walk,
)
from hwnas.supernet.ops import DepthwiseConv2d, HSigmoid, build_act
from torch import nn

__all__ = ["ConvBNAct", "SqueezeExcite", "MBConv", "FusedMBConv", "ConvBlock", "Head", "StaticNet", "build_block", "build_static",
           "make_block"]


@register_block_module("stem", "static")
class ConvBNAct(nn.Sequential):
    """Conv (no bias, padding k//2) -> BatchNorm -> activation (Identity when act is None); also the stem."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, act: str | None = "relu", groups: int = 1):
        depthwise = groups > 1 and groups == cin == cout
        super().__init__(
            DepthwiseConv2d(cin, kernel, stride) if depthwise else nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            build_act(act),
        )

    @classmethod
    def from_config(cls, space: Space, c: BlockConfig) -> ConvBNAct:
        return cls(c.cin, c.cout, c.kernel, c.stride, c.act)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: pool, 1x1 reduce + ReLU, 1x1 expand, hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = se_channels(channels, reduction)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = HSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(y))))


class _Residual(nn.Module):
    """Runs `body`; adds the input back when `residual` is set (stride 1, same width)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


@register_block_module("mb", "static")
class MBConv(_Residual):
    """Inverted residual: 1x1 expand, kxk depthwise, SE, 1x1 project (linear), residual."""

    BODY_PARTS = ("pre", "main", "se", "post")

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, act: str, has_expand: bool = True):
        super().__init__()
        mid = mid_channels(cin, expand) if has_expand else cin
        self.body = nn.Sequential(
            ConvBNAct(cin, mid, 1, 1, act) if has_expand else nn.Identity(),
            ConvBNAct(mid, mid, kernel, stride, act, groups=mid),
            SqueezeExcite(mid) if se else nn.Identity(),
            ConvBNAct(mid, cout, 1, 1, None),
        )
        self.residual = stride == 1 and cin == cout

    @classmethod
    def from_config(cls, space: Space, c: BlockConfig) -> MBConv:
        return cls(c.cin, c.cout, c.kernel, c.expand, c.stride, c.se, c.act, c.has_expand)


@register_block_module("fmb", "static")
class FusedMBConv(_Residual):
    """Fused inverted residual: kxk expand conv, SE, 1x1 project (linear), residual."""

    BODY_PARTS = ("main", "se", "post")

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, act: str):
        super().__init__()
        mid = mid_channels(cin, expand)
        self.body = nn.Sequential(
            ConvBNAct(cin, mid, kernel, stride, act),
            SqueezeExcite(mid) if se else nn.Identity(),
            ConvBNAct(mid, cout, 1, 1, None),
        )
        self.residual = stride == 1 and cin == cout

    @classmethod
    def from_config(cls, space: Space, c: BlockConfig) -> FusedMBConv:
        return cls(c.cin, c.cout, c.kernel, c.expand, c.stride, c.se, c.act)


@register_block_module("conv", "static")
class ConvBlock(_Residual):
    """Regular kxk conv + BN + activation (+ SE), residual when shapes allow."""

    BODY_PARTS = ("main", "se")

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, se: bool, act: str):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(cin, cout, kernel, stride, act),
            SqueezeExcite(cout) if se else nn.Identity(),
        )
        self.residual = stride == 1 and cin == cout

    @classmethod
    def from_config(cls, space: Space, c: BlockConfig) -> ConvBlock:
        return cls(c.cin, c.cout, c.kernel, c.stride, c.se, c.act)


@register_block_module("head", "static")
class Head(nn.Module):
    """1x1 expand conv (optional), global average pool, 1x1 feature conv (optional), dropout, linear."""

    def __init__(self, cin: int, num_classes: int, expand: int | None, feature: int | None, act: str, dropout: float):
        super().__init__()
        self.expand = ConvBNAct(cin, expand, 1, 1, act) if expand else nn.Identity()
        c = expand or cin
        self.feature = nn.Sequential(nn.Conv2d(c, feature, 1, bias=False), build_act(act)) if feature else nn.Identity()
        c = feature or c
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature(x)
        return self.classifier(self.dropout(torch.flatten(x, 1)))

    @classmethod
    def from_config(cls, space: Space, c: BlockConfig) -> Head:
        h = space.head
        return cls(c.cin, space.num_classes, h.expand_channels, h.feature_channels, h.act, h.dropout)


def build_block(space: Space, c: BlockConfig) -> nn.Module:
    """A freshly initialised static module for one block configuration (stem, stage block or head)."""
    return block_module(c.kind, "static").from_config(space, c)


def make_block(space: Space, stage: int, kind: str, cin: int, cout: int, kernel: int, expand: int, stride: int,
               in_size: int = 1) -> nn.Module:
    """A static block of kind `kind` in stage `stage` (SE, activation and expand conv from the stage)."""
    return build_block(space, stage_block_config(space, stage, kind, cin, cout, kernel, expand, stride, in_size))


class StaticNet(nn.Module):
    """A standalone subnet: stem, the arch's blocks in order, head. Plain modules only."""

    def __init__(self, space: Space, arch: Arch):
        super().__init__()
        arch = space.validate(arch)
        self.arch_string = arch.to_string()
        self.resolution = arch.resolution
        st = space.stem
        self.stem = ConvBNAct(space.in_channels, st.channels, st.kernel, st.stride, st.act)
        blocks = [make_block(space, s.stage, s.block.kind, s.cin, s.cout, s.block.kernel, s.block.expand, s.stride,
                             s.in_size) for s in walk(space, arch)]
        cin = arch.stages[-1].width
        self.blocks = nn.Sequential(*blocks)
        h = space.head
        self.head = Head(cin, space.num_classes, h.expand_channels, h.feature_channels, h.act, h.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_static(space: Space, arch: Arch | str) -> StaticNet:
    """A freshly initialised static subnet for `arch` (weights are not copied)."""
    return StaticNet(space, space.parse(arch))
