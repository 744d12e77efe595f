"""Static blocks and `StaticNet`: plain PyTorch modules, no dynamic code.

This is what `Supernet.extract` returns and what `export.load` rebuilds from `arch.json`.
Switched-off parts are `nn.Identity`, so each `forward` reads straight down.
"""

from __future__ import annotations

import torch
from hwnas.search_space import Arch, Space, mid_channels, se_channels
from hwnas.supernet.ops import DepthwiseConv2d, HSigmoid, build_act
from torch import nn

__all__ = ["ConvBNAct", "SqueezeExcite", "MBConv", "FusedMBConv", "ConvBlock", "Head", "StaticNet", "build_static", "stage_has_expand"]


class ConvBNAct(nn.Sequential):
    """Conv (no bias, padding k//2) -> BatchNorm -> activation (Identity when act is None)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, act: str | None = "relu", groups: int = 1):
        depthwise = groups > 1 and groups == cin == cout
        super().__init__(
            DepthwiseConv2d(cin, kernel, stride) if depthwise else nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            build_act(act),
        )


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


class MBConv(_Residual):
    """Inverted residual: 1x1 expand, kxk depthwise, SE, 1x1 project (linear), residual."""

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


class FusedMBConv(_Residual):
    """Fused inverted residual: kxk expand conv, SE, 1x1 project (linear), residual."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, act: str):
        super().__init__()
        mid = mid_channels(cin, expand)
        self.body = nn.Sequential(
            ConvBNAct(cin, mid, kernel, stride, act),
            SqueezeExcite(mid) if se else nn.Identity(),
            ConvBNAct(mid, cout, 1, 1, None),
        )
        self.residual = stride == 1 and cin == cout


class ConvBlock(_Residual):
    """Regular kxk conv + BN + activation (+ SE), residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, se: bool, act: str):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(cin, cout, kernel, stride, act),
            SqueezeExcite(cout) if se else nn.Identity(),
        )
        self.residual = stride == 1 and cin == cout


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


def stage_has_expand(space: Space, stage: int) -> bool:
    """Whether MBConv blocks of a stage have a 1x1 expand conv (not when every ratio is 1, as OFA's first block)."""
    return max(space.stages[stage].expands) > 1


def make_block(space: Space, stage: int, kind: str, cin: int, cout: int, kernel: int, expand: int, stride: int) -> nn.Module:
    ss = space.stages[stage]
    if kind == "mb":
        return MBConv(cin, cout, kernel, expand, stride, ss.se, ss.act, stage_has_expand(space, stage))
    if kind == "fmb":
        return FusedMBConv(cin, cout, kernel, expand, stride, ss.se, ss.act)
    if kind == "conv":
        return ConvBlock(cin, cout, kernel, stride, ss.se, ss.act)
    raise ValueError(f"unknown block kind {kind!r}")


class StaticNet(nn.Module):
    """A standalone subnet: stem, the arch's blocks in order, head. Plain modules only."""

    def __init__(self, space: Space, arch: Arch):
        super().__init__()
        arch = space.validate(arch)
        self.arch_string = arch.to_string()
        self.resolution = arch.resolution
        st = space.stem
        self.stem = ConvBNAct(space.in_channels, st.channels, st.kernel, st.stride, st.act)
        blocks = []
        cin = st.channels
        for i, sa in enumerate(arch.stages):
            for j, b in enumerate(sa.blocks):
                stride = space.stages[i].stride if j == 0 else 1
                blocks.append(make_block(space, i, b.kind, cin, sa.width, b.kernel, b.expand, stride))
                cin = sa.width
        self.blocks = nn.Sequential(*blocks)
        h = space.head
        self.head = Head(cin, space.num_classes, h.expand_channels, h.feature_channels, h.act, h.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_static(space: Space, arch: Arch | str) -> StaticNet:
    """A freshly initialised static subnet for `arch` (weights are not copied)."""
    return StaticNet(space, space.parse(arch))
