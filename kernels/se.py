"""Squeeze-and-excitation, fused where it pays.

SE is pool -> 1x1 reduce + ReLU -> 1x1 expand -> hard-sigmoid gate -> x * gate. Run as PyTorch
ops that is seven launches and two extra passes over the activation. Here:
- the pool is the epilogue of the conv that produces x (`depthwise_conv(..., pool=buf)` or
  `conv_gemm(..., pool=buf)` sum their tiles into an (N, C) buffer with atomics);
- `se_gate` runs the two small FCs as two launches (reduce + ReLU, expand + hard-sigmoid gate),
  each spreading its weight rows over programs so that no single SM streams a whole weight matrix;
- the multiply by the gate is the prologue of the following 1x1 projection (`conv_gemm(gate=)`),
  or, where no GEMM follows (a regular conv block), `se_scale` applies it together with the
  residual add in one elementwise pass.
Tutorial order: PyTorch reference -> `@triton.jit` kernels -> host wrappers -> checks -> benchmark.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from hwnas.kernels._common import Launcher, _act, act_code, interpreting

__all__ = ["se_gate_ref", "se_gate", "se_scale_ref", "se_scale", "check_se", "bench_se"]


# ---------------------------------------------------------------------------------------------
# 1. PyTorch references
# ---------------------------------------------------------------------------------------------
def se_gate_ref(pool_sum: torch.Tensor, hw: int, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Gate (N, C) from per-channel sums: hsigmoid(W2 relu(W1 mean + b1) + b2); w1 (MID, C), w2 (C, MID)."""
    h = torch.relu(pool_sum / hw @ w1.t() + b1)
    return (h @ w2.t() + b2 + 3.0).clamp(0.0, 6.0) / 6.0


def se_scale_ref(y: torch.Tensor, gate: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """y * gate[n, c] (+ residual)."""
    out = y * gate[:, :, None, None]
    return out + residual if residual is not None else out


# ---------------------------------------------------------------------------------------------
# 2. Triton kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _se_fc_kernel(
    v_ptr, w_ptr, b_ptr, out_ptr,
    ROWS, COLS, scale,
    ACT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # out[n, r] = act(scale * sum_c W[r, c] * v[n, c] + b[r]) for BLOCK_R rows r of one sample:
    # both SE FCs (reduce + ReLU with scale = 1/HW turning sums into means; expand + hard-sigmoid).
    # The rows are spread over programs: one program per sample would stream a whole weight
    # matrix (C x C/4, ~1 MB at 960 channels) through a single SM.
    pid_r = tl.program_id(0)
    n = tl.program_id(1)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = offs_r < ROWS
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for c0 in range(0, COLS, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask_c = offs_c < COLS
        v = tl.load(v_ptr + n * COLS + offs_c, mask=mask_c, other=0.0)
        w = tl.load(w_ptr + offs_r[:, None] * COLS + offs_c[None, :], mask=mask_r[:, None] & mask_c[None, :], other=0.0)
        acc += tl.sum(w * v[None, :], axis=1)
    out = _act(acc * scale + tl.load(b_ptr + offs_r, mask=mask_r, other=0.0), ACT)
    tl.store(out_ptr + n * ROWS + offs_r, out, mask=mask_r)


@triton.jit
def _se_scale_kernel(
    y_ptr, gate_ptr, res_ptr, out_ptr,
    C, HW, W,
    syn, syc, syh, syw, srn, src, srh, srw, son, soc, soh, sow,
    HAS_RES: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    mask = (offs_p < HW)[:, None] & mask_c[None, :]
    ph = offs_p // W
    pw = offs_p % W
    y = tl.load(y_ptr + n * syn + offs_c[None, :] * syc + (ph * syh + pw * syw)[:, None], mask=mask, other=0.0)
    g = tl.load(gate_ptr + n * C + offs_c, mask=mask_c, other=0.0)
    out = y * g[None, :]
    if HAS_RES:
        out += tl.load(res_ptr + n * srn + offs_c[None, :] * src + (ph * srh + pw * srw)[:, None], mask=mask, other=0.0)
    tl.store(out_ptr + n * son + offs_c[None, :] * soc + (ph * soh + pw * sow)[:, None], out, mask=mask)


_launch_fc = Launcher(_se_fc_kernel)
_launch_scale = Launcher(_se_scale_kernel)


# ---------------------------------------------------------------------------------------------
# 3. Host wrappers
# ---------------------------------------------------------------------------------------------
def se_gate(pool_sum: torch.Tensor, hw: int, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Fused SE excitation: (N, C) channel sums over `hw` pixels -> (N, C) gate; w1 (MID, C), w2 (C, MID) contiguous."""
    n, c = pool_sum.shape
    mid = w1.shape[0]
    if w1.shape != (mid, c) or w2.shape != (c, mid):
        raise ValueError(f"SE weights {tuple(w1.shape)}, {tuple(w2.shape)} do not fit C={c}")
    h = torch.empty((n, mid), device=pool_sum.device, dtype=torch.float32)
    gate = torch.empty_like(pool_sum)
    if interpreting():  # the interpreter runs each program in numpy: few, wide programs
        block_r, block_c = 64, 1024
    else:  # rows per program: enough programs to spread W1 / W2 over SMs at batch 1
        block_r, block_c = 16, 128
    for v, w, b, out, rows, cols, scale, act in ((pool_sum, w1, b1, h, mid, c, 1.0 / hw, "relu"),
                                                 (h, w2, b2, gate, c, mid, 1.0, "hsigmoid")):
        _launch_fc(None, (triton.cdiv(rows, block_r), n), (v, w, b, out, rows, cols, scale),
                   dict(ACT=act_code(act), BLOCK_R=block_r, BLOCK_C=min(block_c, max(16, triton.next_power_of_2(cols)))),
                   num_warps=4)
    return gate


def se_scale(y: torch.Tensor, gate: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """y * gate (+ residual) in one pass; output keeps y's memory format."""
    n, c, h, w = y.shape
    out = torch.empty_like(y)
    res = residual if residual is not None else y
    if interpreting():
        bp, bc = min(256, triton.next_power_of_2(h * w)), min(128, triton.next_power_of_2(c))
    else:
        bp, bc = 32, 32
    grid = (triton.cdiv(h * w, bp), triton.cdiv(c, bc), n)
    _launch_scale(
        None, grid, (y, gate, res, out, c, h * w, w, *y.stride(), *res.stride(), *out.stride()),
        dict(HAS_RES=residual is not None, BLOCK_P=bp, BLOCK_C=bc), num_warps=4,
    )
    return out


# ---------------------------------------------------------------------------------------------
# 4. Correctness check
# ---------------------------------------------------------------------------------------------
def check_se(n: int, c: int, mid: int, h: int, w: int, *, residual: bool = True, device: str = "cpu", seed: int = 0) -> float:
    """Max abs error of `se_gate` and `se_scale` against their references on fresh random inputs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, c, h, w, generator=g).to(device)
    w1 = (torch.randn(mid, c, generator=g) / c**0.5).to(device)
    b1 = torch.randn(mid, generator=g).to(device)
    w2 = (torch.randn(c, mid, generator=g) / mid**0.5).to(device)
    b2 = torch.randn(c, generator=g).to(device)
    res = torch.randn(n, c, h, w, generator=g).to(device) if residual else None
    sums = y.sum((2, 3))
    gate = se_gate(sums, h * w, w1, b1, w2, b2)
    err = (gate - se_gate_ref(sums, h * w, w1, b1, w2, b2)).abs().max().item()
    out = se_scale(y, gate, res)
    return max(err, (out - se_scale_ref(y, gate, res)).abs().max().item())


# ---------------------------------------------------------------------------------------------
# 5. Benchmark
# ---------------------------------------------------------------------------------------------
def bench_se(n: int, c: int, h: int, reduction: int = 4) -> dict[str, float]:
    """Median ms of the fused gate (+ scale) vs the PyTorch SE module's ops, on CUDA."""
    from triton.testing import do_bench

    mid = max(8, c // reduction)
    y = torch.randn(n, c, h, h, device="cuda")
    w1, b1 = torch.randn(mid, c, device="cuda") / c**0.5, torch.randn(mid, device="cuda")
    w2, b2 = torch.randn(c, mid, device="cuda") / mid**0.5, torch.randn(c, device="cuda")

    def fused() -> torch.Tensor:
        return se_scale(y, se_gate(y.sum((2, 3)), h * h, w1, b1, w2, b2))

    def eager() -> torch.Tensor:
        return se_scale_ref(y, se_gate_ref(y.sum((2, 3)), h * h, w1, b1, w2, b2))

    return {"triton_ms": do_bench(fused, return_mode="median"), "torch_ms": do_bench(eager, return_mode="median")}
