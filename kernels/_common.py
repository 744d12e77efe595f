"""Shared pieces of the fused kernels: activation codes, BN folding, backend choice, launch configs."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = [
    "ACT_CODES",
    "act_code",
    "apply_act_ref",
    "fold_bn",
    "interpreting",
    "use_triton",
    "batch_regime",
    "autotune_enabled",
    "tuned",
]

# Activation codes passed to kernels as a constexpr: one compiled variant per activation.
ACT_CODES: dict[str | None, int] = {None: 0, "relu": 1, "relu6": 2, "hswish": 3, "swish": 4, "hsigmoid": 5}


def act_code(act: str | None) -> int:
    """The kernel code of an activation name; ValueError names the allowed ones."""
    if act not in ACT_CODES:
        raise ValueError(f"unknown activation {act!r}; allowed: {sorted(k for k in ACT_CODES if k)} or None")
    return ACT_CODES[act]


def apply_act_ref(x: torch.Tensor, act: str | None) -> torch.Tensor:
    """PyTorch reference of every fused activation (same formulas as `_act` below)."""
    if act is None:
        return x
    if act == "relu":
        return torch.relu(x)
    if act == "relu6":
        return x.clamp(0.0, 6.0)
    if act == "hswish":
        return x * (x + 3.0).clamp(0.0, 6.0) / 6.0
    if act == "swish":
        return x * torch.sigmoid(x)
    if act == "hsigmoid":
        return (x + 3.0).clamp(0.0, 6.0) / 6.0
    raise ValueError(f"unknown activation {act!r}")


@triton.jit
def _act(x, ACT: tl.constexpr):
    # ACT is a constexpr, so the untaken branches vanish at compile time.
    if ACT == 1:
        x = tl.maximum(x, 0.0)
    elif ACT == 2:
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACT == 3:
        x = x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    elif ACT == 4:
        x = x / (1.0 + tl.exp(-x))
    elif ACT == 5:
        x = tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    return x


def fold_bn(weight: torch.Tensor, bn: torch.nn.BatchNorm2d, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding conv: returns (weight', bias').

    Computed in float64 so folding adds no rounding of its own beyond the final cast.
    """
    dtype = weight.dtype
    w = weight.detach().double()
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    b0 = bias.detach().double() if bias is not None else torch.zeros_like(scale)
    w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b = (b0 - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w.to(dtype).contiguous(), b.to(dtype).contiguous()


def interpreting() -> bool:
    """Whether Triton kernels run through the CPU interpreter (TRITON_INTERPRET=1 set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(x: torch.Tensor) -> bool:
    """Whether a fused module should launch Triton kernels for `x` (CUDA tensor, or the interpreter on CPU)."""
    return x.is_cuda or (interpreting() and x.device.type == "cpu")


# Output pixels (batch x height x width) from which a launch counts as throughput work. Batch 1
# at 28 px and below stays in the latency family; batch >= 32 (or batch 1 at 112 px) switches.
LARGE_WORK = 4096


def batch_regime(n: int, pixels: int = 1) -> str:
    """Which family of launch configs suits a launch: 'small' (latency: batch 1, small maps) or
    'large' (throughput: batch >= 32, or large feature maps), from batch x output pixels."""
    return "large" if n >= 32 or n * pixels >= LARGE_WORK else "small"


def autotune_enabled() -> bool:
    """False when HWNAS_KERNELS_AUTOTUNE=0: launches take their family's first config, untimed
    (deterministic and quick to compile, e.g. for long correctness sweeps)."""
    return os.environ.get("HWNAS_KERNELS_AUTOTUNE", "1") != "0"


def _quick_bench(kernel_call, quantiles):  # noqa: ANN001 - the autotuner's do_bench hook
    # Triton's default spends 25 + 100 ms per config; a block has a few kernels and a space has
    # hundreds of shapes, so a short median over ~20 ms is the better trade.
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def tuned(fn, configs: list, key: list[str], reset_to_zero: list[str] | None = None):  # noqa: ANN001, ANN201
    """`triton.autotune` over `configs` with a short timing loop; one tuner per batch regime."""
    return triton.autotune(configs=configs, key=key, reset_to_zero=reset_to_zero, do_bench=_quick_bench)(fn)
