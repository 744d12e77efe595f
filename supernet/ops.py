"""Dynamic (elastic) ops: one set of max-size weights serves every smaller choice.

Each op keeps its active choice on the instance (`active_out`, `active_kernel`); nothing is
global. The active input width is read off the input tensor.

- `DynamicConv2d`: elastic in/out channels, and elastic kernel by Once-for-All's kernel transform
  matrices: a smaller kernel is the centre of the next larger one passed through a learned
  (k*k x k*k) linear map, initialised to the identity and shared by all filters of the layer.
  `separate_kernels()` switches a layer to one independent weight per kernel size instead
  (single-path one-shot style; each starts as the current centre-cropped, transformed kernel).
- `DynamicBatchNorm2d`: the first c channels of a max-width BN (statistics updated in place).
- `DynamicSE`: squeeze-and-excitation whose squeeze width follows the active input width.
- `DynamicLinear`: elastic input features.
- `depthwise_conv2d`: a depthwise convolution whose weight gradient is fast on CPU for small
  feature maps (PyTorch's CPU kernel spends ~10-40x the forward's time on it; see its docstring).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from hwnas.search_space import se_channels
from torch import nn

__all__ = [
    "build_act",
    "HSigmoid",
    "DynamicConv2d",
    "DynamicBatchNorm2d",
    "DynamicSE",
    "DynamicLinear",
    "center_crop",
    "depthwise_conv2d",
    "DepthwiseConv2d",
]


def build_act(name: str | None) -> nn.Module:
    """The activation module for a space's activation name (`nn.Identity` for None)."""
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; allowed: relu, relu6, hswish, swish")


class HSigmoid(nn.Module):
    """Hard sigmoid, relu6(x + 3) / 6, the SE gate of MobileNetV3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


def center_crop(w: torch.Tensor, k: int) -> torch.Tensor:
    """The centre k x k window of a (..., K, K) kernel tensor."""
    big = w.shape[-1]
    s = (big - k) // 2
    return w[..., s : s + k, s : s + k]


# Kernels of 5x5 and up on feature maps up to this many pixels take the matrix-product weight
# gradient (below); the rest PyTorch's own. Measured on 2 CPU cores (batch 128, 144 channels):
# k5/k7 from 3x3 to 14x14 maps 1.8-12x faster; k3 within +-10% either way, so left to PyTorch.
# The product costs C*N*(H*W)^2*2 flops, so it loses on large maps.
DW_FAST_MAX_PIXELS = 256
DW_FAST_MIN_KERNEL = 5


@functools.lru_cache(maxsize=128)
def _dw_taps(h: int, w: int, k: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a k x k, stride-s, padding k//2 depthwise conv on an h x w map: `pos`, the flat index of
    each (output pixel, input pixel) pair that a kernel tap connects in an (Ho*Wo, h*w) matrix, and
    `tap`, which of the k*k taps connects it."""
    p = k // 2
    ho_n, wo_n = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    ho, wo, i, j = torch.meshgrid(torch.arange(ho_n), torch.arange(wo_n), torch.arange(k), torch.arange(k), indexing="ij")
    hi, wi = ho * s + i - p, wo * s + j - p
    ok = (hi >= 0) & (hi < h) & (wi >= 0) & (wi < w)
    pos = ((ho * wo_n + wo) * (h * w) + hi * w + wi)[ok]
    tap = (i * k + j)[ok]
    return pos, tap


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise conv: PyTorch's forward and input gradient; the weight gradient as one batched
    matrix product per channel. For channel c, the gradient of the (output pixel x input pixel)
    map is go_c^T @ x_c over the batch (a GEMM with K = batch), and each kernel tap's gradient is
    the sum of the entries that tap connects. Where it is used, and what it gains, is said at
    `DW_FAST_MAX_PIXELS`; benchmarks/depthwise_grad.py measures it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        k = weight.shape[-1]
        return F.conv2d(x, weight, None, stride, k // 2, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        s, k = ctx.stride, weight.shape[-1]
        n, c, h, w = x.shape
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [s, s], [k // 2, k // 2], [1, 1], False, [0, 0], c, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            pos, tap = _dw_taps(h, w, k, s)
            go = grad_out.reshape(n, c, -1).permute(1, 2, 0)  # c, Ho*Wo, n
            xc = x.reshape(n, c, h * w).transpose(0, 1)  # c, n, h*w
            pair = torch.bmm(go, xc).reshape(c, -1)  # c, Ho*Wo*h*w
            grad_w = torch.zeros(c, k * k, dtype=pair.dtype).index_add_(1, tap, pair[:, pos]).view_as(weight)
        return grad_x, grad_w, None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, stride, k // 2, groups=channels)` with a fast CPU weight gradient
    on small maps (`_DepthwiseConv`); same values (float rounding aside). Anything else — no grad,
    other devices, kernels under `DW_FAST_MIN_KERNEL`, maps over `DW_FAST_MAX_PIXELS`,
    tracing/compiling — goes to `F.conv2d`."""
    k = weight.shape[-1]
    if (
        k >= DW_FAST_MIN_KERNEL
        and weight.requires_grad
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.shape[2] * x.shape[3] <= DW_FAST_MAX_PIXELS
        and x.dtype == torch.float32
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    ):
        y = _DepthwiseConv.apply(x, weight, stride)
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    return F.conv2d(x, weight, bias, stride, k // 2, 1, x.shape[1])


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(c, c, k, stride, k // 2, groups=c)` whose training backward uses `depthwise_conv2d`
    (same parameters and state-dict keys as the plain module)."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, bias: bool = False):
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # TorchScript (export) compiles only the plain conv below
            return depthwise_conv2d(x, self.weight, self.bias, self.stride[0])
        return self._conv_forward(x, self.weight, self.bias)


class DynamicConv2d(nn.Module):
    """Conv2d with elastic in/out channels and elastic (odd) kernel size; `padding = k // 2`."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernels: tuple[int, ...] | int = 1,
        *,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        kernels = (kernels,) if isinstance(kernels, int) else tuple(sorted(set(kernels)))
        if depthwise and max_in != max_out:
            raise ValueError(f"depthwise conv needs max_in == max_out, got {max_in} and {max_out}")
        self.max_in, self.max_out = max_in, max_out
        self.kernels = kernels
        self.max_kernel = kernels[-1]
        self.stride = stride
        self.depthwise = depthwise
        k = self.max_kernel
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        # One transform per step down the kernel ladder, e.g. 7->5 and 5->3.
        self.transforms = nn.ParameterDict(
            {f"{big}to{small}": nn.Parameter(torch.eye(small * small)) for big, small in zip(kernels[::-1], kernels[::-1][1:])}
        )
        # Filled by `separate_kernels()`: one weight per smaller kernel, keyed "k3", "k5", ...
        self.kernel_weights = nn.ParameterDict()
        self.active_out = max_out
        self.active_kernel = self.max_kernel

    @torch.no_grad()
    def separate_kernels(self) -> int:
        """Give every smaller kernel its own weight, initialised to what the kernel transform
        makes of the current weight now; the transforms are dropped. Returns the weights added
        (0 when already separate or the layer has one kernel size)."""
        if len(self.kernel_weights) or len(self.kernels) == 1:
            return 0
        for k in self.kernels[:-1]:
            self.kernel_weights[f"k{k}"] = nn.Parameter(self.get_weight(self.max_in, self.max_out, k).clone())
        self.transforms = nn.ParameterDict()
        return len(self.kernels) - 1

    def get_weight(self, cin: int, cout: int, k: int) -> torch.Tensor:
        """The effective (cout, cin or 1, k, k) weight for these choices (differentiable)."""
        if k != self.max_kernel and f"k{k}" in self.kernel_weights:
            w = self.kernel_weights[f"k{k}"]
            w = w if cout == self.max_out else w[:cout]
            return w if self.depthwise or cin == self.max_in else w[:, :cin]
        w = self.weight
        if cout != self.max_out:
            w = w[:cout]
        if not self.depthwise and cin != self.max_in:
            w = w[:, :cin]
        cur = self.max_kernel
        for big, small in zip(self.kernels[::-1], self.kernels[::-1][1:]):
            if cur <= k:
                break
            crop = center_crop(w, small)
            shape = crop.shape
            w = F.linear(crop.reshape(-1, small * small), self.transforms[f"{big}to{small}"]).reshape(shape)
            cur = small
        return w

    def get_bias(self, cout: int) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return self.bias if cout == self.max_out else self.bias[:cout]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        cout = cin if self.depthwise else self.active_out
        k = self.active_kernel
        w = self.get_weight(cin, cout, k)
        if self.depthwise:
            return depthwise_conv2d(x, w, self.get_bias(cout), self.stride)
        return F.conv2d(x, w, self.get_bias(cout), self.stride, k // 2, 1, 1)

    def extra_repr(self) -> str:
        return f"max_in={self.max_in}, max_out={self.max_out}, kernels={self.kernels}, stride={self.stride}, depthwise={self.depthwise}"


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the first c channels of a max-width BN; c is the input's channel count."""

    def __init__(self, max_channels: int, *, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels, eps=eps, momentum=momentum)
        self.max_channels = max_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        bn = self.bn
        if c == self.max_channels:
            return bn(x)
        if bn.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        else:
            momentum = 0.0 if bn.momentum is None else bn.momentum
        use_batch_stats = bn.training or bn.running_mean is None
        return F.batch_norm(
            x,
            bn.running_mean[:c] if bn.running_mean is not None else None,
            bn.running_var[:c] if bn.running_var is not None else None,
            bn.weight[:c],
            bn.bias[:c],
            use_batch_stats,
            momentum,
            bn.eps,
        )


class DynamicSE(nn.Module):
    """Squeeze-and-excitation with elastic channels: pool, 1x1 reduce + ReLU, 1x1 expand, h-sigmoid."""

    def __init__(self, max_channels: int, reduction: int = 4):
        super().__init__()
        self.max_channels = max_channels
        self.reduction = reduction
        max_mid = se_channels(max_channels, reduction)
        self.reduce = nn.Conv2d(max_channels, max_mid, 1, bias=True)
        self.expand = nn.Conv2d(max_mid, max_channels, 1, bias=True)
        self.gate = HSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mid = se_channels(c, self.reduction)
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, self.reduce.weight[:mid, :c], self.reduce.bias[:mid]))
        y = F.conv2d(y, self.expand.weight[:c, :mid], self.expand.bias[:c])
        return x * self.gate(y)


class DynamicLinear(nn.Module):
    """Linear layer with elastic input features (taken from the input)."""

    def __init__(self, max_in: int, out_features: int, *, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(max_in, out_features, bias=bias)
        self.max_in = max_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[-1]
        w = self.linear.weight if cin == self.max_in else self.linear.weight[:, :cin]
        return F.linear(x, w, self.linear.bias)
