"""Pointwise (1x1) convolution as a GEMM with BatchNorm folded, activation fused, optional fused
residual add, SE gate applied to the input, and pooled output sums.

The same implicit-GEMM kernel also runs dense kxk convolutions (the stem, fused-MBConv expand
convs, regular conv blocks): the reduction runs over kernel taps x input channels, so a 1x1 conv
is the K=1 case with no extra cost. Tutorial order: PyTorch reference -> `@triton.jit` kernel ->
host wrapper -> correctness check -> benchmark.

    y[n, co, p] = act(alpha * sum_{tap, ci} x[n, ci, p + tap] * gate[n, ci] * W[tap, ci, co] + b[co]) + res[n, co, p]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from hwnas.kernels._common import (
    Launcher,
    _act,
    act_code,
    apply_act_ref,
    batch_regime,
    interpreting,
)

__all__ = ["conv_gemm_ref", "conv_gemm", "prepare_gemm_weight", "check_conv_gemm", "bench_pointwise"]


# ---------------------------------------------------------------------------------------------
# 1. PyTorch reference
# ---------------------------------------------------------------------------------------------
def conv_gemm_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int = 1,
    act: str | None = None,
    *,
    residual: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    pool: bool = False,
    alpha: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference of `conv_gemm`: weight (Cout, Cin, k, k), padding k//2; returns (y, per-channel sums or None)."""
    if gate is not None:
        x = x * gate[:, :, None, None]
    k = weight.shape[-1]
    y = F.conv2d(x, weight, None, stride, k // 2) * alpha
    if bias is not None:
        y = y + bias[None, :, None, None]
    y = apply_act_ref(y, act)
    if residual is not None:
        y = y + residual
    return y, (y.sum((2, 3)) if pool else None)


# ---------------------------------------------------------------------------------------------
# 2. Triton kernel
# ---------------------------------------------------------------------------------------------
@triton.jit
def _conv_gemm_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, res_ptr, gate_ptr, pool_ptr,
    N, CIN, COUT, H, W, OH, OW, alpha,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    srn, src, srh, srw,
    K: tl.constexpr, STRIDE: tl.constexpr, ACT: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, HAS_GATE: tl.constexpr,
    POOL: tl.constexpr, STORE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Tile: BLOCK_M output pixels of one sample (grid axis 2) x BLOCK_N output channels.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    n = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < OH * OW
    mask_n = offs_n < COUT
    oh = offs_m // OW
    ow = offs_m % OW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in tl.static_range(K):
        ih = oh * STRIDE - K // 2 + kh
        for kw in tl.static_range(K):
            iw = ow * STRIDE - K // 2 + kw
            valid = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_base = x_ptr + n * sxn + (ih * sxh + iw * sxw)[:, None]
            w_base = w_ptr + (kh * K + kw) * CIN * COUT + offs_n[None, :]
            for k0 in range(0, CIN, BLOCK_K):
                ck = k0 + offs_k
                mask_k = ck < CIN
                a = tl.load(a_base + ck[None, :] * sxc, mask=valid[:, None] & mask_k[None, :], other=0.0)
                if HAS_GATE:
                    # SE gate folded into the GEMM's input: x * g never goes to memory
                    g = tl.load(gate_ptr + n * CIN + ck, mask=mask_k, other=0.0)
                    a = (a * g[None, :]).to(x_ptr.dtype.element_ty)
                b = tl.load(w_base + ck[:, None] * COUT, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
                acc = tl.dot(a, b, acc, input_precision=PRECISION)
    acc = acc * alpha
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    acc = _act(acc, ACT)
    mask = mask_m[:, None] & mask_n[None, :]
    if HAS_RES:
        r = tl.load(res_ptr + n * srn + offs_n[None, :] * src + (oh * srh + ow * srw)[:, None], mask=mask, other=0.0)
        acc += r
    if STORE:
        y_ptrs = y_ptr + n * syn + offs_n[None, :] * syc + (oh * syh + ow * syw)[:, None]
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    if POOL:
        s = tl.sum(tl.where(mask, acc, 0.0), axis=0)
        tl.atomic_add(pool_ptr + n * COUT + offs_n, s, mask=mask_n)


# Batch 1: few output tiles, so small BLOCK_M/BLOCK_N give the grid enough programs to fill the
# SMs. Batch >= 32: large tiles for operand reuse, deeper pipelining.
_SMALL = [
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=2, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    # skinny GEMMs (7x7 maps or the head's single pixel, hundreds of input channels): narrow
    # tiles double the programs, a deeper K step halves the loop
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 64}, num_warps=2, num_stages=3),
]
_LARGE = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
]
_KEY = ["N", "CIN", "COUT", "OH", "OW", "K", "STRIDE", "sxc", "POOL", "HAS_GATE"]
_launch = Launcher(_conv_gemm_kernel, _SMALL, _LARGE, _KEY, ["pool_ptr"])


# ---------------------------------------------------------------------------------------------
# 3. Host wrapper
# ---------------------------------------------------------------------------------------------
def prepare_gemm_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, k, k) conv weight (or (Cout, Cin) linear) -> the kernel's (k*k*Cin, Cout) layout."""
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    cout, cin, k, _ = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(k * k * cin, cout).contiguous()


def conv_gemm(
    x: torch.Tensor,
    w_gemm: torch.Tensor,
    bias: torch.Tensor | None,
    kernel: int = 1,
    stride: int = 1,
    act: str | None = None,
    *,
    residual: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    pool: torch.Tensor | None = None,
    store: bool = True,
    alpha: float = 1.0,
    tf32: bool = False,
) -> torch.Tensor | None:
    """Fused conv (1x1 or kxk dense, padding k//2) as an implicit GEMM.

    `w_gemm` from `prepare_gemm_weight` (BN already folded); `residual` (N, Cout, OH, OW) is added
    after the activation; `gate` (N, Cin) scales the input channels (SE); `pool`, a zeroed float32
    (N, Cout) buffer, receives per-channel output sums; `store=False` skips writing y (pool only).
    `tf32` lets the tensor cores round fp32 operands to tf32 (about 1e-3 relative error).
    """
    n, cin, h, w = x.shape
    if w_gemm.shape[0] != kernel * kernel * cin:
        raise ValueError(f"w_gemm has {w_gemm.shape[0]} rows, expected kernel^2*Cin = {kernel * kernel * cin}")
    cout = w_gemm.shape[1]
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    if store:
        fmt = torch.channels_last if (not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
        y = torch.empty((n, cout, oh, ow), device=x.device, dtype=x.dtype, memory_format=fmt)
    else:
        if pool is None:
            raise ValueError("store=False needs a pool buffer, else the kernel computes nothing")
        y = pool
    res = residual if residual is not None else y
    rs = residual.stride() if residual is not None else (0, 0, 0, 0)
    ys = y.stride() if store else (0, 0, 0, 0)
    args = (
        x, w_gemm, bias if bias is not None else w_gemm, y, res,
        gate if gate is not None else w_gemm,
        # the pool stand-in must be y: the autotuner zeroes pool_ptr between its timing runs
        pool if pool is not None else y,
        n, cin, cout, h, w, oh, ow, float(alpha), *x.stride(), *ys, *rs,
    )
    consts = dict(
        K=kernel, STRIDE=stride, ACT=act_code(act), HAS_BIAS=bias is not None, HAS_RES=residual is not None,
        HAS_GATE=gate is not None, POOL=pool is not None, STORE=store, PRECISION="tf32" if tf32 else "ieee",
    )
    if interpreting():
        bm = max(16, min(256, triton.next_power_of_2(oh * ow)))
        bn = max(16, min(1024, triton.next_power_of_2(cout)))
        bk = max(16, min(256, triton.next_power_of_2(cin)))
        grid = (triton.cdiv(oh * ow, bm), triton.cdiv(cout, bn), n)
        _conv_gemm_kernel[grid](*args, **consts, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    else:
        grid = lambda meta: (triton.cdiv(oh * ow, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]), n)  # noqa: E731
        _launch(batch_regime(n, oh * ow), grid, args, consts)
    return y if store else None


# ---------------------------------------------------------------------------------------------
# 4. Correctness check
# ---------------------------------------------------------------------------------------------
def check_conv_gemm(
    n: int, cin: int, cout: int, h: int, w: int, kernel: int = 1, stride: int = 1, act: str | None = None,
    *, residual: bool = False, gate: bool = False, pool: bool = False, channels_last: bool = False,
    device: str = "cpu", seed: int = 0,
) -> float:
    """Max abs error of `conv_gemm` against `conv_gemm_ref` on fresh random inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen).to(device)
    wt = (torch.randn(cout, cin, kernel, kernel, generator=gen) / (cin * kernel * kernel) ** 0.5).to(device)
    b = torch.randn(cout, generator=gen).to(device)
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    res = torch.randn(n, cout, oh, ow, generator=gen).to(device) if residual else None
    g = torch.rand(n, cin, generator=gen).to(device) if gate else None
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        res = res.to(memory_format=torch.channels_last) if res is not None else None
    ref, ref_pool = conv_gemm_ref(x, wt, b, stride, act, residual=res, gate=g, pool=pool)
    buf = torch.zeros(n, cout, device=device) if pool else None
    out = conv_gemm(x, prepare_gemm_weight(wt), b, kernel, stride, act, residual=res, gate=g, pool=buf)
    err = (out - ref).abs().max().item()
    if pool:
        err = max(err, ((buf - ref_pool) / (oh * ow)).abs().max().item())
    return err


# ---------------------------------------------------------------------------------------------
# 5. Benchmark
# ---------------------------------------------------------------------------------------------
def bench_pointwise(n: int, cin: int, cout: int, h: int, act: str | None = None, residual: bool = False, tf32: bool = True) -> dict[str, float]:
    """Median ms of the fused 1x1 conv vs PyTorch eager (conv + bias + act (+ add)) on CUDA."""
    from triton.testing import do_bench

    x = torch.randn(n, cin, h, h, device="cuda")
    wt = torch.randn(cout, cin, 1, 1, device="cuda") / cin**0.5
    b = torch.randn(cout, device="cuda")
    res = torch.randn(n, cout, h, h, device="cuda") if residual else None
    wg = prepare_gemm_weight(wt)
    tri = do_bench(lambda: conv_gemm(x, wg, b, 1, 1, act, residual=res, tf32=tf32), return_mode="median")
    ref = do_bench(lambda: conv_gemm_ref(x, wt, b, 1, act, residual=res), return_mode="median")
    return {"triton_ms": tri, "torch_ms": ref}
