"""Dynamic (elastic) ops: one set of max-size weights serves every smaller choice.

Each op keeps its active choice on the instance (`active_out`, `active_kernel`); nothing is
global. The active input width is read off the input tensor.

- `DynamicConv2d`: elastic in/out channels, and elastic kernel by Once-for-All's kernel transform
  matrices: a smaller kernel is the centre of the next larger one passed through a learned
  (k*k x k*k) linear map, initialised to the identity and shared by all filters of the layer.
- `DynamicBatchNorm2d`: the first c channels of a max-width BN (statistics updated in place).
- `DynamicSE`: squeeze-and-excitation whose squeeze width follows the active input width.
- `DynamicLinear`: elastic input features.
"""

from __future__ import annotations

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
        self.active_out = max_out
        self.active_kernel = self.max_kernel

    def get_weight(self, cin: int, cout: int, k: int) -> torch.Tensor:
        """The effective (cout, cin or 1, k, k) weight for these choices (differentiable)."""
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
        return F.conv2d(x, w, self.get_bias(cout), self.stride, k // 2, 1, cin if self.depthwise else 1)

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
