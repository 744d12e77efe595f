"""Dynamic blocks: MBConv, Fused-MBConv and Conv over shared max-size weights.

Each block is told its active choice by `set_active(cin, cout, kernel, expand)` (the supernet
does it once per arch, so `forward` has no decisions left), returns a static twin with copied
weights from `to_static()`, and `sort_channels()` reorders its hidden channels by importance so
that smaller expand ratios keep the most important ones (Once-for-All). Each block class is
registered as its kind's dynamic module in the block-kind registry, and all take the same
constructor arguments (`make_dynamic_block`'s), ignoring the ones their kind has no use for.
"""

from __future__ import annotations

import torch
from hwnas.search_space import block_module, mid_channels, register_block_module, se_channels
from hwnas.supernet import static as S
from hwnas.supernet.ops import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    DynamicSE,
    build_act,
)
from torch import nn

__all__ = ["DynamicMBConv", "DynamicFusedMBConv", "DynamicConvBlock", "DynamicHead", "make_dynamic_block"]


# ---- weight copies into static modules --------------------------------------------------------
@torch.no_grad()
def _copy_conv(dst: nn.Conv2d, src: DynamicConv2d, cin: int, cout: int, k: int) -> None:
    dst.weight.copy_(src.get_weight(cin, cout, k))
    if src.bias is not None:
        dst.bias.copy_(src.bias[:cout])


@torch.no_grad()
def _copy_bn(dst: nn.BatchNorm2d, src: DynamicBatchNorm2d | nn.BatchNorm2d, c: int) -> None:
    bn = src.bn if isinstance(src, DynamicBatchNorm2d) else src
    dst.weight.copy_(bn.weight[:c])
    dst.bias.copy_(bn.bias[:c])
    dst.running_mean.copy_(bn.running_mean[:c])
    dst.running_var.copy_(bn.running_var[:c])
    dst.num_batches_tracked.copy_(bn.num_batches_tracked)
    dst.eps, dst.momentum = bn.eps, bn.momentum


@torch.no_grad()
def _copy_se(dst: S.SqueezeExcite, src: DynamicSE, c: int) -> None:
    m = se_channels(c, src.reduction)
    dst.reduce.weight.copy_(src.reduce.weight[:m, :c])
    dst.reduce.bias.copy_(src.reduce.bias[:m])
    dst.expand.weight.copy_(src.expand.weight[:c, :m])
    dst.expand.bias.copy_(src.expand.bias[:c])


# ---- channel sorting ---------------------------------------------------------------------------
@torch.no_grad()
def _permute_(t: torch.Tensor, idx: torch.Tensor, dim: int) -> None:
    t.copy_(t.index_select(dim, idx))


@torch.no_grad()
def _permute_conv_(conv: DynamicConv2d, idx: torch.Tensor, dim: int) -> None:
    """Permute a dynamic conv's weight and, when its kernels are separate, each kernel's weight."""
    for t in (conv.weight, *conv.kernel_weights.values()):
        _permute_(t, idx, dim)


@torch.no_grad()
def _permute_bn_(bn: DynamicBatchNorm2d, idx: torch.Tensor) -> None:
    for t in (bn.bn.weight, bn.bn.bias, bn.bn.running_mean, bn.bn.running_var):
        _permute_(t, idx, 0)


@torch.no_grad()
def _sort_se_(se: DynamicSE, idx: torch.Tensor) -> None:
    """Apply the hidden-channel permutation to an SE over them, then sort the SE's own squeeze channels."""
    _permute_(se.reduce.weight, idx, 1)
    _permute_(se.expand.weight, idx, 0)
    _permute_(se.expand.bias, idx, 0)
    inner = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
    _permute_(se.reduce.weight, inner, 0)
    _permute_(se.reduce.bias, inner, 0)
    _permute_(se.expand.weight, inner, 1)


def _importance(project: DynamicConv2d) -> torch.Tensor:
    """L1 norm of the projection weights reading each hidden channel, most important first."""
    return torch.argsort(project.weight.abs().sum(dim=(0, 2, 3)), descending=True)


class _DynamicBlock(nn.Module):
    def __init__(self, max_cin: int, max_cout: int, stride: int):
        super().__init__()
        self.max_cin, self.max_cout, self.stride = max_cin, max_cout, stride
        self.residual = False
        self.cin, self.cout, self.kernel, self.expand = max_cin, max_cout, 1, 1

    def set_active(self, cin: int, cout: int, kernel: int, expand: int) -> None:
        self.cin, self.cout, self.kernel, self.expand = cin, cout, kernel, expand
        self.residual = self.stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y

    def sort_channels(self) -> None:  # blocks without hidden channels have nothing to sort
        return None


@register_block_module("mb", "dynamic")
class DynamicMBConv(_DynamicBlock):
    """Elastic inverted residual: 1x1 expand (elastic ratio), kxk depthwise (elastic k), SE, 1x1 project."""

    def __init__(self, max_cin: int, max_cout: int, kernels: tuple[int, ...], expands: tuple[int, ...],
                 stride: int, se: bool, act: str, has_expand: bool):
        super().__init__(max_cin, max_cout, stride)
        self.has_expand, self.se_on, self.act = has_expand, se, act
        max_mid = mid_channels(max_cin, max(expands)) if has_expand else max_cin
        self.max_mid = max_mid
        self.body = nn.Sequential(
            nn.Sequential(DynamicConv2d(max_cin, max_mid, 1), DynamicBatchNorm2d(max_mid), build_act(act))
            if has_expand
            else nn.Identity(),
            nn.Sequential(
                DynamicConv2d(max_mid, max_mid, kernels, stride=stride, depthwise=True),
                DynamicBatchNorm2d(max_mid),
                build_act(act),
            ),
            DynamicSE(max_mid) if se else nn.Identity(),
            nn.Sequential(DynamicConv2d(max_mid, max_cout, 1), DynamicBatchNorm2d(max_cout)),
        )

    # Sub-modules live once, inside `body`; these name them.
    expand_conv = property(lambda self: self.body[0][0] if self.has_expand else None)
    expand_bn = property(lambda self: self.body[0][1] if self.has_expand else None)
    dw_conv = property(lambda self: self.body[1][0])
    dw_bn = property(lambda self: self.body[1][1])
    se = property(lambda self: self.body[2] if self.se_on else None)
    project_conv = property(lambda self: self.body[3][0])
    project_bn = property(lambda self: self.body[3][1])

    def mid(self) -> int:
        return mid_channels(self.cin, self.expand) if self.has_expand else self.cin

    def set_active(self, cin: int, cout: int, kernel: int, expand: int) -> None:
        super().set_active(cin, cout, kernel, expand)
        if self.expand_conv is not None:
            self.expand_conv.active_out = self.mid()
        self.dw_conv.active_kernel = kernel
        self.project_conv.active_out = cout

    def to_static(self) -> S.MBConv:
        cin, cout, k, mid = self.cin, self.cout, self.kernel, self.mid()
        out = S.MBConv(cin, cout, k, self.expand, self.stride, self.se_on, self.act, self.has_expand)
        if self.has_expand:
            _copy_conv(out.body[0][0], self.expand_conv, cin, mid, 1)
            _copy_bn(out.body[0][1], self.expand_bn, mid)
        _copy_conv(out.body[1][0], self.dw_conv, mid, mid, k)
        _copy_bn(out.body[1][1], self.dw_bn, mid)
        if self.se is not None:
            _copy_se(out.body[2], self.se, mid)
        _copy_conv(out.body[3][0], self.project_conv, mid, cout, 1)
        _copy_bn(out.body[3][1], self.project_bn, cout)
        return out

    @torch.no_grad()
    def sort_channels(self) -> None:
        if not self.has_expand:
            return
        idx = _importance(self.project_conv)
        _permute_(self.expand_conv.weight, idx, 0)
        _permute_bn_(self.expand_bn, idx)
        _permute_conv_(self.dw_conv, idx, 0)
        _permute_bn_(self.dw_bn, idx)
        if self.se is not None:
            _sort_se_(self.se, idx)
        _permute_(self.project_conv.weight, idx, 1)


@register_block_module("fmb", "dynamic")
class DynamicFusedMBConv(_DynamicBlock):
    """Elastic fused inverted residual: kxk expand conv (elastic k and ratio), SE, 1x1 project."""

    def __init__(self, max_cin: int, max_cout: int, kernels: tuple[int, ...], expands: tuple[int, ...],
                 stride: int, se: bool, act: str, has_expand: bool = False):
        super().__init__(max_cin, max_cout, stride)
        self.se_on, self.act = se, act
        max_mid = mid_channels(max_cin, max(expands))
        self.body = nn.Sequential(
            nn.Sequential(DynamicConv2d(max_cin, max_mid, kernels, stride=stride), DynamicBatchNorm2d(max_mid), build_act(act)),
            DynamicSE(max_mid) if se else nn.Identity(),
            nn.Sequential(DynamicConv2d(max_mid, max_cout, 1), DynamicBatchNorm2d(max_cout)),
        )

    fused_conv = property(lambda self: self.body[0][0])
    fused_bn = property(lambda self: self.body[0][1])
    se = property(lambda self: self.body[1] if self.se_on else None)
    project_conv = property(lambda self: self.body[2][0])
    project_bn = property(lambda self: self.body[2][1])

    def mid(self) -> int:
        return mid_channels(self.cin, self.expand)

    def set_active(self, cin: int, cout: int, kernel: int, expand: int) -> None:
        super().set_active(cin, cout, kernel, expand)
        self.fused_conv.active_out = self.mid()
        self.fused_conv.active_kernel = kernel
        self.project_conv.active_out = cout

    def to_static(self) -> S.FusedMBConv:
        cin, cout, k, mid = self.cin, self.cout, self.kernel, self.mid()
        out = S.FusedMBConv(cin, cout, k, self.expand, self.stride, self.se_on, self.act)
        _copy_conv(out.body[0][0], self.fused_conv, cin, mid, k)
        _copy_bn(out.body[0][1], self.fused_bn, mid)
        if self.se is not None:
            _copy_se(out.body[1], self.se, mid)
        _copy_conv(out.body[2][0], self.project_conv, mid, cout, 1)
        _copy_bn(out.body[2][1], self.project_bn, cout)
        return out

    @torch.no_grad()
    def sort_channels(self) -> None:
        idx = _importance(self.project_conv)
        _permute_conv_(self.fused_conv, idx, 0)
        _permute_bn_(self.fused_bn, idx)
        if self.se is not None:
            _sort_se_(self.se, idx)
        _permute_(self.project_conv.weight, idx, 1)


@register_block_module("conv", "dynamic")
class DynamicConvBlock(_DynamicBlock):
    """Elastic regular conv block: kxk conv (elastic k, in/out channels), BN, activation, SE."""

    def __init__(self, max_cin: int, max_cout: int, kernels: tuple[int, ...], expands: tuple[int, ...],
                 stride: int, se: bool, act: str, has_expand: bool = False):
        super().__init__(max_cin, max_cout, stride)
        self.se_on, self.act = se, act
        self.body = nn.Sequential(
            nn.Sequential(DynamicConv2d(max_cin, max_cout, kernels, stride=stride), DynamicBatchNorm2d(max_cout), build_act(act)),
            DynamicSE(max_cout) if se else nn.Identity(),
        )

    conv = property(lambda self: self.body[0][0])
    bn = property(lambda self: self.body[0][1])
    se = property(lambda self: self.body[1] if self.se_on else None)

    def set_active(self, cin: int, cout: int, kernel: int, expand: int) -> None:
        super().set_active(cin, cout, kernel, expand)
        self.conv.active_out = cout
        self.conv.active_kernel = kernel

    def to_static(self) -> S.ConvBlock:
        out = S.ConvBlock(self.cin, self.cout, self.kernel, self.stride, self.se_on, self.act)
        _copy_conv(out.body[0][0], self.conv, self.cin, self.cout, self.kernel)
        _copy_bn(out.body[0][1], self.bn, self.cout)
        if self.se is not None:
            _copy_se(out.body[1], self.se, self.cout)
        return out


class DynamicHead(nn.Module):
    """The head with an elastic input width: its first layer reads however many channels arrive."""

    def __init__(self, max_cin: int, num_classes: int, expand: int | None, feature: int | None, act: str, dropout: float):
        super().__init__()
        self.expand_channels, self.feature_channels, self.act, self.dropout_p = expand, feature, act, dropout
        self.num_classes = num_classes
        if expand:
            self.expand = nn.Sequential(DynamicConv2d(max_cin, expand, 1), nn.BatchNorm2d(expand), build_act(act))
        else:
            self.expand = nn.Identity()
        c = expand or max_cin
        if feature:
            self.feature = nn.Sequential(DynamicConv2d(c, feature, 1), build_act(act))
        else:
            self.feature = nn.Identity()
        c = feature or c
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature(x)
        return self.classifier(self.dropout(torch.flatten(x, 1)))

    @torch.no_grad()
    def to_static(self, cin: int) -> S.Head:
        out = S.Head(cin, self.num_classes, self.expand_channels, self.feature_channels, self.act, self.dropout_p)
        c = cin
        if self.expand_channels:
            _copy_conv(out.expand[0], self.expand[0], cin, self.expand_channels, 1)
            _copy_bn(out.expand[1], self.expand[1], self.expand_channels)
            c = self.expand_channels
        if self.feature_channels:
            _copy_conv(out.feature[0], self.feature[0], c, self.feature_channels, 1)
            c = self.feature_channels
        w = self.classifier.linear.weight
        out.classifier.weight.copy_(w[:, :c])
        out.classifier.bias.copy_(self.classifier.linear.bias)
        return out


def make_dynamic_block(kind: str, max_cin: int, max_cout: int, kernels: tuple[int, ...], expands: tuple[int, ...],
                       stride: int, se: bool, act: str, has_expand: bool) -> _DynamicBlock:
    """The dynamic module registered for block kind `kind`, sized for the largest choices of its slot."""
    return block_module(kind, "dynamic")(max_cin, max_cout, kernels, expands, stride, se, act, has_expand)
