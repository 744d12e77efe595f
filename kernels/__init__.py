"""The kernels that run the blocks: Triton fused kernels with their PyTorch references.

- `depthwise_conv`: depthwise kxk conv, BN folded, activation fused, NCHW or channels-last.
- `conv_gemm`: 1x1 (and dense kxk) conv as an implicit GEMM, BN folded, activation, residual,
  SE gate and pooling fused.
- `se_gate` / `se_scale`: the squeeze-and-excitation excitation in one launch.
- `fuse(model)` / `fused_block(block)`: swap a static subnet's blocks for fused-kernel modules.

The names below load on first use (PEP 562), so `import hwnas.kernels` and the `hwnas` CLI
start without importing torch, triton or optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FusedBlock": ("hwnas.kernels._fuse", "FusedBlock"),
    "FusedConv": ("hwnas.kernels._fuse", "FusedConv"),
    "FusedHead": ("hwnas.kernels._fuse", "FusedHead"),
    "FusedNet": ("hwnas.kernels._fuse", "FusedNet"),
    "FusedSE": ("hwnas.kernels._fuse", "FusedSE"),
    "apply_act_ref": ("hwnas.kernels._common", "apply_act_ref"),
    "check_conv_gemm": ("hwnas.kernels.pointwise", "check_conv_gemm"),
    "check_depthwise": ("hwnas.kernels.depthwise", "check_depthwise"),
    "check_se": ("hwnas.kernels.se", "check_se"),
    "conv_gemm": ("hwnas.kernels.pointwise", "conv_gemm"),
    "conv_gemm_ref": ("hwnas.kernels.pointwise", "conv_gemm_ref"),
    "depthwise_conv": ("hwnas.kernels.depthwise", "depthwise_conv"),
    "depthwise_ref": ("hwnas.kernels.depthwise", "depthwise_ref"),
    "fold_bn": ("hwnas.kernels._common", "fold_bn"),
    "fuse": ("hwnas.kernels._fuse", "fuse"),
    "fused_block": ("hwnas.kernels._fuse", "fused_block"),
    "interpreting": ("hwnas.kernels._common", "interpreting"),
    "kernels_available": ("hwnas.kernels._fuse", "kernels_available"),
    "prepare_depthwise_weight": ("hwnas.kernels.depthwise", "prepare_depthwise_weight"),
    "prepare_gemm_weight": ("hwnas.kernels.pointwise", "prepare_gemm_weight"),
    "se_gate": ("hwnas.kernels.se", "se_gate"),
    "se_gate_ref": ("hwnas.kernels.se", "se_gate_ref"),
    "se_scale": ("hwnas.kernels.se", "se_scale"),
    "se_scale_ref": ("hwnas.kernels.se", "se_scale_ref"),
    "to_triton": ("hwnas.kernels._fuse", "fuse"),
}

__all__ = [
    "CudaGraphed",
    "FusedBlock",
    "FusedConv",
    "FusedHead",
    "FusedNet",
    "FusedSE",
    "apply_act_ref",
    "check_conv_gemm",
    "check_depthwise",
    "check_se",
    "conv_gemm",
    "conv_gemm_ref",
    "depthwise_conv",
    "depthwise_ref",
    "fold_bn",
    "fuse",
    "fused_block",
    "interpreting",
    "kernels_available",
    "prepare_depthwise_weight",
    "prepare_gemm_weight",
    "se_gate",
    "se_gate_ref",
    "se_scale",
    "se_scale_ref",
    "to_triton",
]


def __getattr__(name: str) -> Any:
    try:
        mod, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
