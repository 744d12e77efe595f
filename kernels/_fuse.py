"""`fuse(model)`: fold BatchNorm into the convs of an exported static subnet and swap its blocks
for modules that run the fused Triton kernels.

A fused MBConv runs as: 1x1 expand GEMM (+bias+act) -> depthwise (+bias+act, + SE pool in its
epilogue) -> SE gate (two short launches) -> 1x1 project GEMM (SE gate in its prologue, residual in its
epilogue). Eager PyTorch needs 9 launches without SE and about 17 with it.

Backends: a fused module launches Triton kernels when its input is a CUDA tensor, or a CPU tensor
while TRITON_INTERPRET=1 (the Triton interpreter, for tests). Otherwise it runs the same folded
math as PyTorch ops, and `fuse` says so with a warning.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from hwnas.kernels._common import apply_act_ref, fold_bn, interpreting, use_triton
from hwnas.kernels.depthwise import depthwise_conv, prepare_depthwise_weight
from hwnas.kernels.pointwise import conv_gemm, prepare_gemm_weight
from hwnas.kernels.se import se_gate, se_gate_ref, se_scale, se_scale_ref
from hwnas.search_space import block_module, register_block_module
from torch import nn

__all__ = ["CudaGraphed", "FusedConv", "FusedSE", "FusedBlock", "FusedHead", "FusedNet", "fuse", "fused_block", "kernels_available"]

log = logging.getLogger(__name__)

_ACT_NAMES: dict[type, str | None] = {
    nn.Identity: None,
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hswish",
    nn.SiLU: "swish",
}


def kernels_available() -> bool:
    """Whether fused modules can run Triton kernels here (a CUDA GPU, or the interpreter)."""
    return torch.cuda.is_available() or interpreting()


def _act_name(m: nn.Module) -> str | None:
    if type(m) not in _ACT_NAMES:
        raise ValueError(f"cannot fuse activation {type(m).__name__}; allowed: {[t.__name__ for t in _ACT_NAMES]}")
    return _ACT_NAMES[type(m)]


class FusedConv(nn.Module):
    """Conv (depthwise, or dense kxk / 1x1) with BN folded and activation fused; one kernel launch."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: str | None, *, tf32: bool = False):
        super().__init__()
        k = conv.kernel_size[0]
        if conv.kernel_size[0] != conv.kernel_size[1] or conv.padding != (k // 2, k // 2) or conv.dilation != (1, 1):
            raise ValueError(f"cannot fuse {conv}: needs a square kernel, padding k//2 and no dilation")
        if conv.stride[0] != conv.stride[1]:
            raise ValueError(f"cannot fuse {conv}: needs equal strides")
        self.depthwise = conv.groups > 1
        if self.depthwise and conv.groups != conv.in_channels:
            raise ValueError(f"cannot fuse grouped conv {conv}: only depthwise (groups == in_channels) or dense")
        self.kernel, self.stride, self.act, self.tf32 = k, conv.stride[0], act, tf32
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        if bn is not None:
            w, b = fold_bn(conv.weight, bn, conv.bias)
        else:
            w = conv.weight.detach().contiguous()
            b = conv.bias.detach().contiguous() if conv.bias is not None else None
        self.register_buffer("weight", w)  # PyTorch layout, for the fallback path
        self.register_buffer("bias", b)
        self.register_buffer("w_kernel", prepare_depthwise_weight(w) if self.depthwise else prepare_gemm_weight(w))

    @classmethod
    def from_conv_bn_act(cls, seq: nn.Sequential, *, tf32: bool = False) -> FusedConv:
        """From a `ConvBNAct` = Sequential(Conv2d, BatchNorm2d, act)."""
        conv, bn, act = seq[0], seq[1], seq[2]
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise ValueError(f"expected Sequential(Conv2d, BatchNorm2d, act), got {seq}")
        return cls(conv, bn, _act_name(act), tf32=tf32)

    def run(
        self,
        x: torch.Tensor,
        *,
        residual: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
        pool: bool = False,
        store: bool = True,
        alpha: float = 1.0,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(y, per-channel sums of y or None). `gate` scales input channels; `residual` is added last."""
        if use_triton(x):
            buf = torch.zeros(x.shape[0], self.out_channels, device=x.device, dtype=torch.float32) if pool else None
            if self.depthwise:
                if residual is not None or gate is not None or not store or alpha != 1.0:
                    raise ValueError("the depthwise kernel fuses no residual, gate, alpha or store=False")
                return depthwise_conv(x, self.w_kernel, self.bias, self.kernel, self.stride, self.act, buf), buf
            y = conv_gemm(
                x, self.w_kernel, self.bias, self.kernel, self.stride, self.act,
                residual=residual, gate=gate, pool=buf, store=store, alpha=alpha, tf32=self.tf32,
            )
            return y, buf
        if gate is not None:
            x = x * gate[:, :, None, None]
        groups = self.in_channels if self.depthwise else 1
        y = F.conv2d(x, self.weight, None, self.stride, self.kernel // 2, 1, groups) * alpha
        if self.bias is not None:
            y = y + self.bias[None, :, None, None]
        y = apply_act_ref(y, self.act)
        if residual is not None:
            y = y + residual
        return y, (y.sum((2, 3)) if pool else None)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    def extra_repr(self) -> str:
        kind = "depthwise" if self.depthwise else "dense"
        return f"{self.in_channels}->{self.out_channels}, {kind} k{self.kernel} s{self.stride}, act={self.act}"


class FusedSE(nn.Module):
    """The excitation half of SE (FC -> ReLU -> FC -> hsigmoid) from channel sums; two short launches."""

    def __init__(self, se: nn.Module):
        super().__init__()
        if not isinstance(se.act, nn.ReLU):
            raise ValueError(f"cannot fuse SE with inner activation {type(se.act).__name__}; the kernel fuses ReLU")
        mid, c = se.reduce.out_channels, se.reduce.in_channels
        self.register_buffer("w1", se.reduce.weight.detach().reshape(mid, c).contiguous())
        self.register_buffer("b1", se.reduce.bias.detach().contiguous())
        self.register_buffer("w2", se.expand.weight.detach().reshape(c, mid).contiguous())
        self.register_buffer("b2", se.expand.bias.detach().contiguous())

    def gate(self, sums: torch.Tensor, hw: int) -> torch.Tensor:
        if use_triton(sums):
            return se_gate(sums, hw, self.w1, self.b1, self.w2, self.b2)
        return se_gate_ref(sums, hw, self.w1, self.b1, self.w2, self.b2)


@register_block_module("mb", "fused")
@register_block_module("fmb", "fused")
@register_block_module("conv", "fused")
class FusedBlock(nn.Module):
    """A stage block as fused kernels: [1x1 expand] -> main conv [+SE pool] -> [SE gate] -> [1x1 project].

    Reads the static block's `body` by the names in its class's `BODY_PARTS` (`pre`, `main`, `se`,
    `post`), so any kind whose static module is laid out that way fuses with this class.
    """

    def __init__(self, block: nn.Module, *, tf32: bool = False):
        super().__init__()
        from hwnas.supernet.static import SqueezeExcite

        names = getattr(type(block), "BODY_PARTS", None)
        if names is None or "main" not in names:
            raise ValueError(f"cannot fuse block {type(block).__name__}: its class names no BODY_PARTS with a 'main' conv")
        parts = dict(zip(names, block.body))
        pre, main = parts.get("pre", nn.Identity()), parts["main"]
        se, post = parts.get("se", nn.Identity()), parts.get("post", nn.Identity())
        self.kind = type(block).__name__
        self.pre = None if isinstance(pre, nn.Identity) else FusedConv.from_conv_bn_act(pre, tf32=tf32)
        self.main = FusedConv.from_conv_bn_act(main, tf32=tf32)
        if not isinstance(se, (nn.Identity, SqueezeExcite)):
            raise ValueError(f"unexpected SE module {type(se).__name__}")
        self.se = None if isinstance(se, nn.Identity) else FusedSE(se)
        self.post = None if isinstance(post, nn.Identity) else FusedConv.from_conv_bn_act(post, tf32=tf32)
        self.residual = bool(block.residual)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre.run(x)[0] if self.pre is not None else x
        res = x if self.residual else None
        if self.se is None:
            if self.post is None:
                return self.main.run(h, residual=res)[0]
            y = self.main.run(h)[0]
            return self.post.run(y, residual=res)[0]
        y, sums = self.main.run(h, pool=True)
        gate = self.se.gate(sums, y.shape[2] * y.shape[3])
        if self.post is not None:
            return self.post.run(y, gate=gate, residual=res)[0]
        if use_triton(y):
            return se_scale(y, gate, res)
        return se_scale_ref(y, gate, res)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, residual={self.residual}"


@register_block_module("head", "fused")
class FusedHead(nn.Module):
    """Head: [1x1 expand, pooled in its epilogue, never stored] -> [1x1 feature + act] -> classifier."""

    def __init__(self, head: nn.Module, *, tf32: bool = False):
        super().__init__()
        self.expand = None if isinstance(head.expand, nn.Identity) else FusedConv.from_conv_bn_act(head.expand, tf32=tf32)
        self.feature = None
        if not isinstance(head.feature, nn.Identity):
            conv, act = head.feature[0], head.feature[1]
            self.feature = FusedConv(conv, None, _act_name(act), tf32=tf32)
        lin = head.classifier
        cls = nn.Conv2d(lin.in_features, lin.out_features, 1, bias=True).to(lin.weight.device)
        with torch.no_grad():
            cls.weight.copy_(lin.weight[:, :, None, None])
            cls.bias.copy_(lin.bias)
        self.classifier = FusedConv(cls, None, None, tf32=tf32)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw = x.shape[2] * x.shape[3]
        if self.expand is not None:
            sums = self.expand.run(x, pool=True, store=False)[1]
        else:
            sums = x.sum((2, 3), dtype=torch.float32)
        v = sums[:, :, None, None]
        # the mean's 1/hw rides on the next GEMM's alpha rather than a separate division
        if self.feature is not None:
            v = self.feature.run(v, alpha=1.0 / hw)[0]
            alpha = 1.0
        else:
            alpha = 1.0 / hw
        return self.classifier.run(v, alpha=alpha)[0].flatten(1)


class FusedNet(nn.Module):
    """A StaticNet with BN folded and every part swapped for fused-kernel modules (inference only)."""

    def __init__(self, model: nn.Module, *, tf32: bool = False):
        super().__init__()
        self.arch_string = getattr(model, "arch_string", None)
        self.resolution = getattr(model, "resolution", None)
        self.stem = FusedConv.from_conv_bn_act(model.stem, tf32=tf32)
        self.blocks = nn.Sequential(*[fused_block(b, tf32=tf32) for b in model.blocks])
        self.head = FusedHead(model.head, tf32=tf32)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class CudaGraphed(nn.Module):
    """Runs a module as a CUDA-graph replay, one graph per input shape/stride/dtype.

    At batch 1 a fused net is bound by the host launching its kernels (tens of microseconds each
    through Triton's Python launcher); a replay launches them all at once. Inputs are copied into
    a static buffer and the output is cloned out, so callers see ordinary tensors. CPU inputs run
    the module directly.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return self.module(x)
        key = (tuple(x.shape), x.stride(), x.dtype, x.device)
        if key not in self._graphs:
            static_x = x.clone()
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # autotuning and first-call allocations happen outside capture
                    self.module(static_x)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.module(static_x)
            self._graphs[key] = (graph, static_x, static_out)
        graph, static_x, static_out = self._graphs[key]
        static_x.copy_(x)
        graph.replay()
        return static_out.clone()


@register_block_module("stem", "fused")
def _fused_stem(block: nn.Module, *, tf32: bool = False) -> nn.Module:
    return FusedConv.from_conv_bn_act(block, tf32=tf32)


def fused_block(block: nn.Module, *, tf32: bool = False) -> nn.Module:
    """The fused-kernel module of one static block (a stage block, the stem's ConvBNAct or the head),
    as registered for its kind in the block-kind registry.

    This is what the estimators' `triton` backend times for a block configuration.
    """
    kind = getattr(type(block), "block_kind", None)
    if kind is None:
        raise ValueError(f"cannot fuse {type(block).__name__}: not a registered static block module "
                         "(MBConv, FusedMBConv, ConvBlock, ConvBNAct, Head, or one added with register_block_module)")
    return block_module(kind, "fused")(block, tf32=tf32)


def fuse(model: nn.Module, *, tf32: bool = False, cuda_graph: bool = False) -> nn.Module:
    """Fold BN and swap the blocks of an exported static subnet (eval mode) for fused-kernel modules.

    Takes a `StaticNet` (stem, blocks, head) or a single static block. The result is inference
    only and equals the original within float tolerance (with `tf32=True`, about 1e-3 relative,
    since the GEMMs then round operands to tf32 on tensor cores). Without CUDA (and without
    TRITON_INTERPRET=1) it warns and the modules run PyTorch ops with BN folded. `cuda_graph=True`
    wraps the result in `CudaGraphed` (replays per input shape; removes launch overhead).
    """
    if model.training:
        warnings.warn("fuse: the model is in training mode; BatchNorm is folded with its running statistics", stacklevel=2)
    if not kernels_available():
        msg = "hwnas.kernels.fuse(): no CUDA device (and TRITON_INTERPRET is not set); fused modules run PyTorch ops with BN folded"
        log.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if all(hasattr(model, a) for a in ("stem", "blocks", "head")):
        out: nn.Module = FusedNet(model, tf32=tf32)
    else:
        out = fused_block(model, tf32=tf32)
    if cuda_graph:
        out = CudaGraphed(out)
    return out.eval()
