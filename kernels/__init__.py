"""The kernels that run the blocks: Triton fused kernels with their PyTorch references.

- `depthwise_conv`: depthwise kxk conv, BN folded, activation fused, NCHW or channels-last.
- `conv_gemm`: 1x1 (and dense kxk) conv as an implicit GEMM, BN folded, activation, residual,
  SE gate and pooling fused.
- `se_gate` / `se_scale`: the squeeze-and-excitation excitation in two short launches, and the gate multiply.
- `fuse(model)` / `fused_block(block)`: swap a static subnet's blocks for fused-kernel modules.
"""

from __future__ import annotations

from hwnas.kernels._common import apply_act_ref, fold_bn, interpreting
from hwnas.kernels._fuse import (
    CudaGraphed,
    FusedBlock,
    FusedConv,
    FusedHead,
    FusedNet,
    FusedSE,
    fuse,
    fused_block,
    kernels_available,
)
from hwnas.kernels.depthwise import (
    check_depthwise,
    depthwise_conv,
    depthwise_ref,
    prepare_depthwise_weight,
)
from hwnas.kernels.pointwise import check_conv_gemm, conv_gemm, conv_gemm_ref, prepare_gemm_weight
from hwnas.kernels.se import check_se, se_gate, se_gate_ref, se_scale, se_scale_ref

# What the estimators' `triton` device backend calls on a static block or subnet to time it.
to_triton = fuse

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
