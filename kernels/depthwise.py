"""Depthwise kxk convolution with BatchNorm folded in and the activation fused.

Reads as the Triton tutorials do: PyTorch reference -> `@triton.jit` kernel -> host wrapper ->
correctness check -> benchmark. The kernel takes every tensor with explicit strides, so one kernel
serves NCHW and channels-last (NHWC) inputs; the output keeps the input's memory format.

Optionally the kernel also sums its (activated) output over the pixels of each (sample, channel)
into a pool buffer: the squeeze of a following squeeze-and-excitation then costs no extra pass.
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

__all__ = ["depthwise_ref", "depthwise_conv", "check_depthwise", "bench_depthwise", "prepare_depthwise_weight"]


# ---------------------------------------------------------------------------------------------
# 1. PyTorch reference
# ---------------------------------------------------------------------------------------------
def depthwise_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, act: str | None, pool: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference: depthwise conv (weight (C,1,k,k), padding k//2) + bias + act; and the per-channel sum if `pool`."""
    k = weight.shape[-1]
    y = apply_act_ref(F.conv2d(x, weight, bias, stride, k // 2, groups=x.shape[1]), act)
    return y, (y.sum((2, 3)) if pool else None)


# ---------------------------------------------------------------------------------------------
# 2. Triton kernel
# ---------------------------------------------------------------------------------------------
@triton.jit
def _dw_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, pool_ptr,
    N, C, H, W, OH, OW,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    K: tl.constexpr, STRIDE: tl.constexpr, ACT: tl.constexpr, POOL: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # One program: BLOCK_P output pixels x BLOCK_C channels of one sample (grid axis 2), so a
    # tile never straddles two samples and its pooled column sums belong to one (n, c).
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_p = offs_p < OH * OW
    mask_c = offs_c < C
    oh = offs_p // OW
    ow = offs_p % OW
    # Integer work is hoisted out of the K*K tap loop: per tap only one add and one multiply of
    # a pixel vector remain (it also keeps the CPU interpreter, which checks every integer op
    # for overflow, fast enough for CI).
    ih0 = oh * STRIDE - K // 2
    iw0 = ow * STRIDE - K // 2
    x_base = x_ptr + n * sxn + offs_c[None, :] * sxc
    w_base = w_ptr + offs_c
    mask_c2 = mask_c[None, :]
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for kh in tl.static_range(K):
        ih = ih0 + kh
        mh = mask_p & (ih >= 0) & (ih < H)
        row = x_base + (ih * sxh)[:, None]
        for kw in tl.static_range(K):
            iw = iw0 + kw
            m = mh & (iw >= 0) & (iw < W)
            xv = tl.load(row + (iw * sxw)[:, None], mask=m[:, None] & mask_c2, other=0.0)
            # weights are stored tap-major, (K*K, C), so this load is contiguous over channels
            wv = tl.load(w_base + (kh * K + kw) * C, mask=mask_c, other=0.0)
            acc += xv.to(tl.float32) * wv[None, :]
    acc += tl.load(b_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
    acc = _act(acc, ACT)
    mask = mask_p[:, None] & mask_c[None, :]
    y_ptrs = y_ptr + n * syn + offs_c[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    if POOL:
        s = tl.sum(tl.where(mask, acc, 0.0), axis=0)
        tl.atomic_add(pool_ptr + n * C + offs_c, s, mask=mask_c)


# Launch configs: at batch 1 the grid is small, so narrow tiles keep more SMs busy; at batch
# >= 32 there is work enough for wider tiles that reuse index math and raise memory parallelism.
_SMALL = [
    triton.Config({"BLOCK_P": 16, "BLOCK_C": 32}, num_warps=2),
    triton.Config({"BLOCK_P": 32, "BLOCK_C": 32}, num_warps=4),
    triton.Config({"BLOCK_P": 16, "BLOCK_C": 64}, num_warps=4),
]
_LARGE = [
    triton.Config({"BLOCK_P": 64, "BLOCK_C": 32}, num_warps=4),
    triton.Config({"BLOCK_P": 128, "BLOCK_C": 16}, num_warps=4),  # long pixel runs: NCHW
    triton.Config({"BLOCK_P": 32, "BLOCK_C": 64}, num_warps=4),  # wide channel runs: NHWC
]
_KEY = ["N", "C", "OH", "OW", "K", "STRIDE", "sxc", "POOL"]
_launch = Launcher(_dw_kernel, _SMALL, _LARGE, _KEY, ["pool_ptr"])


# ---------------------------------------------------------------------------------------------
# 3. Host wrapper
# ---------------------------------------------------------------------------------------------
def prepare_depthwise_weight(weight: torch.Tensor) -> torch.Tensor:
    """(C, 1, k, k) conv weight -> the kernel's tap-major (k*k, C) layout."""
    c, _, k, _ = weight.shape
    return weight.reshape(c, k * k).t().contiguous()


def _out_like(x: torch.Tensor, c: int, oh: int, ow: int) -> torch.Tensor:
    fmt = torch.channels_last if (not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
    return torch.empty((x.shape[0], c, oh, ow), device=x.device, dtype=x.dtype, memory_format=fmt)


def depthwise_conv(
    x: torch.Tensor,
    w_taps: torch.Tensor,
    bias: torch.Tensor,
    kernel: int,
    stride: int,
    act: str | None,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused depthwise conv: `w_taps` from `prepare_depthwise_weight` (BN already folded), `bias` (C,).

    `pool`, if given, is a zeroed float32 (N, C) buffer that receives the per-channel output sums.
    """
    if kernel not in (3, 5, 7) or stride not in (1, 2):
        raise ValueError(f"depthwise kernel {kernel} stride {stride}; allowed kernel 3/5/7, stride 1/2")
    n, c, h, w = x.shape
    if w_taps.shape != (kernel * kernel, c):
        raise ValueError(f"w_taps has shape {tuple(w_taps.shape)}, expected {(kernel * kernel, c)}")
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    y = _out_like(x, c, oh, ow)
    args = (x, w_taps, bias, y, pool if pool is not None else y, n, c, h, w, oh, ow, *x.stride(), *y.stride())
    consts = dict(K=kernel, STRIDE=stride, ACT=act_code(act), POOL=pool is not None)
    if interpreting():
        # The interpreter runs each program in numpy: few, large programs are fastest.
        bp = min(256, triton.next_power_of_2(oh * ow))
        bc = min(max(16, 131072 // bp), triton.next_power_of_2(c))
        grid = (triton.cdiv(oh * ow, bp), triton.cdiv(c, bc), n)
        _dw_kernel[grid](*args, **consts, BLOCK_P=bp, BLOCK_C=bc)
    else:
        grid = lambda meta: (triton.cdiv(oh * ow, meta["BLOCK_P"]), triton.cdiv(c, meta["BLOCK_C"]), n)  # noqa: E731
        _launch(batch_regime(n, oh * ow), grid, args, consts)
    return y


# ---------------------------------------------------------------------------------------------
# 4. Correctness check
# ---------------------------------------------------------------------------------------------
def check_depthwise(
    n: int, c: int, h: int, w: int, kernel: int, stride: int, act: str | None,
    *, channels_last: bool = False, pool: bool = True, device: str = "cpu", seed: int = 0,
) -> float:
    """Max abs error of the kernel against `depthwise_ref` on fresh random inputs (output and pool)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).to(device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    wt = (torch.randn(c, 1, kernel, kernel, generator=g) / kernel).to(device)
    b = torch.randn(c, generator=g).to(device)
    ref, ref_pool = depthwise_ref(x, wt, b, stride, act, pool)
    buf = torch.zeros(n, c, device=device) if pool else None
    out = depthwise_conv(x, prepare_depthwise_weight(wt), b, kernel, stride, act, buf)
    err = (out - ref).abs().max().item()
    if pool:
        # sums grow with the pixel count: compare the means, which is what SE consumes
        hw = out.shape[2] * out.shape[3]
        err = max(err, ((buf - ref_pool) / hw).abs().max().item())
    return err


# ---------------------------------------------------------------------------------------------
# 5. Benchmark
# ---------------------------------------------------------------------------------------------
def bench_depthwise(n: int, c: int, h: int, kernel: int, stride: int, act: str = "relu", channels_last: bool = False) -> dict[str, float]:
    """Median ms of the fused kernel vs PyTorch eager (conv + bias + act) on the current CUDA device."""
    from triton.testing import do_bench

    x = torch.randn(n, c, h, h, device="cuda")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    wt = torch.randn(c, 1, kernel, kernel, device="cuda")
    b = torch.randn(c, device="cuda")
    taps = prepare_depthwise_weight(wt)
    tri = do_bench(lambda: depthwise_conv(x, taps, b, kernel, stride, act), return_mode="median")
    ref = do_bench(lambda: depthwise_ref(x, wt, b, stride, act), return_mode="median")
    return {"triton_ms": tri, "torch_ms": ref}
