"""Correctness sweeps of the fused kernels against their PyTorch references.

Used by the tests (in a subprocess with TRITON_INTERPRET=1, since Triton reads that variable when
the kernels are defined), by `hwnas kernels check`, and on a GPU. Every record names what was
checked and its max abs error; nothing here decides pass/fail except `--tol` in `main`.

    TRITON_INTERPRET=1 python -m hwnas.kernels._check --space fmnist-mbv3 --what configs,odd,fuse
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["CheckRecord", "randomize_", "block_for_config", "check_block_config", "check_space_configs", "check_odd_shapes", "check_fuse_archs"]


@dataclass(frozen=True)
class CheckRecord:
    """One comparison: which check, on what, the max abs error and the reference's max magnitude."""

    check: str
    what: str
    err: float
    ref_max: float


def _rec(check: str, what: str, out: torch.Tensor, ref: torch.Tensor) -> CheckRecord:
    out, ref = out.detach().float().cpu(), ref.detach().float().cpu()
    if out.shape != ref.shape:
        raise AssertionError(f"{check} {what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    err = (out - ref).abs().max().item() if out.numel() else 0.0
    if math.isnan(err) or not torch.isfinite(out).all():
        err = float("inf")
    return CheckRecord(check, what, err, ref.abs().max().item() if ref.numel() else 0.0)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every conv/linear/BN fresh random weights and BN statistics of unit-ish scale.

    Freshly initialised nets have BN at mean 0 / var 1 and some zero-initialised layers, which
    would make BN folding and the residual paths look right by accident.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.5 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model.eval()


def block_for_config(space, cfg) -> nn.Module:  # noqa: ANN001 - Space, BlockConfig
    """A static PyTorch module for one `BlockConfig` of `space` (stem, stage block, or head)."""
    from hwnas.supernet.static import build_block

    return build_block(space, cfg)


@torch.no_grad()
def check_block_config(space, cfg, *, batch: int = 1, seed: int = 0, device: str = "cpu", whole: bool = False) -> list[CheckRecord]:  # noqa: ANN001
    """Each kernel of a block's fused version against the PyTorch op it replaces, on the same input;
    with `whole`, also the fused block's forward against the static block's (the fuse check covers that)."""
    from hwnas.kernels._fuse import FusedBlock, FusedConv, FusedHead, fused_block

    mod = randomize_(block_for_config(space, cfg), seed).to(device)
    fused = fused_block(mod).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, cfg.cin, cfg.in_size, cfg.in_size, generator=g).to(device)
    key = cfg.key
    out: list[CheckRecord] = []
    if isinstance(fused, FusedConv):
        out.append(_rec("conv_gemm", key, fused(x), mod(x)))
        return out
    if isinstance(fused, FusedHead):
        out.append(_rec("head", key, fused(x), mod(x)))
        return out
    assert isinstance(fused, FusedBlock)
    ref_mods = dict(zip(type(mod).BODY_PARTS, mod.body))
    h = x
    if fused.pre is not None:
        y = fused.pre.run(h)[0]
        out.append(_rec("conv_gemm", f"{key}/expand", y, ref_mods["pre"](h)))
        h = y
    name = "depthwise" if fused.main.depthwise else "conv_gemm"
    y, sums = fused.main.run(h, pool=fused.se is not None, residual=x if (fused.residual and fused.se is None and fused.post is None) else None)
    ref_y = ref_mods["main"](h)
    if fused.residual and fused.se is None and fused.post is None:
        ref_y = ref_y + x
    out.append(_rec(name, f"{key}/main", y, ref_y))
    gate = None
    if fused.se is not None:
        hw = y.shape[2] * y.shape[3]
        out.append(_rec(f"{name}_pool", f"{key}/pool_mean", sums / hw, y.mean((2, 3))))
        se = ref_mods["se"]
        ref_gate = se.gate(se.expand(se.act(se.reduce(y.mean((2, 3), keepdim=True))))).flatten(1)
        gate = fused.se.gate(sums, hw)
        out.append(_rec("se_gate", f"{key}/se_gate", gate, ref_gate))
    if fused.post is not None:
        res = x if fused.residual else None
        z = fused.post.run(y, gate=gate, residual=res)[0]
        ref_in = y * gate[:, :, None, None] if gate is not None else y
        ref_z = ref_mods["post"](ref_in) + (x if res is not None else 0)
        out.append(_rec("conv_gemm", f"{key}/project", z, ref_z))
    if whole:
        out.append(_rec("block", key, fused(x), mod(x)))
    return out


def check_space_configs(space_name: str, *, batch: int = 1, seed: int = 0, device: str = "cpu", limit: int | None = None) -> list[CheckRecord]:
    """`check_block_config` over every distinct block configuration of a space."""
    from hwnas.search_space import Space

    space = Space.preset(space_name)
    cfgs = space.distinct_block_configs()[:limit]
    out: list[CheckRecord] = []
    for i, c in enumerate(cfgs):
        out += check_block_config(space, c, batch=batch, seed=seed + i, device=device)
    return out


# (n, c, h, w, kernel, stride, act, channels_last): sizes that are no multiple of any block size,
# stride 2 on odd inputs, a single channel, batch 1 and 7, every activation, both layouts.
ODD_DEPTHWISE = [
    (1, 1, 9, 9, 3, 1, "relu", False),
    (7, 3, 13, 11, 5, 2, "relu6", False),
    (1, 37, 15, 15, 7, 2, "hswish", True),
    (7, 1, 5, 7, 3, 2, "swish", True),
    (7, 19, 1, 1, 7, 1, None, False),
    (1, 130, 17, 3, 5, 1, "hswish", True),
]
# (n, cin, cout, h, w, kernel, stride, act, residual, gate, pool, channels_last)
ODD_GEMM = [
    (1, 1, 1, 9, 9, 1, 1, None, False, False, False, False),
    (7, 33, 17, 7, 5, 1, 1, "relu", True, True, True, False),
    (1, 3, 16, 11, 13, 3, 2, "hswish", False, False, True, True),
    (7, 1, 16, 15, 15, 3, 2, "relu6", False, False, False, False),
    (7, 150, 37, 3, 3, 1, 1, "swish", True, True, False, True),
    (1, 40, 300, 1, 1, 1, 1, None, False, False, False, False),
    (7, 5, 7, 9, 9, 5, 1, "relu", True, False, True, True),
]
# (n, c, mid, h, w, residual)
ODD_SE = [(1, 17, 8, 3, 5, True), (7, 200, 56, 7, 7, False), (7, 1, 8, 1, 1, True)]


def check_odd_shapes(*, device: str = "cpu", seed: int = 0) -> list[CheckRecord]:
    """Each kernel against its reference on the awkward shapes above."""
    from hwnas.kernels.depthwise import depthwise_conv, depthwise_ref, prepare_depthwise_weight
    from hwnas.kernels.pointwise import conv_gemm, conv_gemm_ref, prepare_gemm_weight
    from hwnas.kernels.se import se_gate, se_gate_ref, se_scale, se_scale_ref

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(device)

    out: list[CheckRecord] = []
    for n, c, h, w, k, s, act, cl in ODD_DEPTHWISE:
        x = rnd(n, c, h, w)
        x = x.to(memory_format=torch.channels_last) if cl else x
        wt, b = rnd(c, 1, k, k, scale=1 / k), rnd(c)
        buf = torch.zeros(n, c, device=device)
        y = depthwise_conv(x, prepare_depthwise_weight(wt), b, k, s, act, buf)
        ref, ref_sum = depthwise_ref(x, wt, b, s, act, pool=True)
        what = f"n{n}_c{c}_{h}x{w}_k{k}_s{s}_{act}_{'nhwc' if cl else 'nchw'}"
        out.append(_rec("depthwise", what, y, ref))
        out.append(_rec("depthwise_pool", what, buf / ref[0, 0].numel(), ref_sum / ref[0, 0].numel()))
        if cl and not y.is_contiguous(memory_format=torch.channels_last):
            raise AssertionError(f"depthwise {what}: channels-last input gave a non-channels-last output")
    for n, cin, cout, h, w, k, s, act, has_res, has_gate, has_pool, cl in ODD_GEMM:
        x = rnd(n, cin, h, w)
        wt, b = rnd(cout, cin, k, k, scale=(1 / (cin * k * k)) ** 0.5), rnd(cout)
        oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
        res = rnd(n, cout, oh, ow) if has_res else None
        gate = torch.rand(n, cin, generator=g).to(device) if has_gate else None
        if cl:
            x = x.to(memory_format=torch.channels_last)
            res = res.to(memory_format=torch.channels_last) if res is not None else None
        buf = torch.zeros(n, cout, device=device) if has_pool else None
        y = conv_gemm(x, prepare_gemm_weight(wt), b, k, s, act, residual=res, gate=gate, pool=buf)
        ref, ref_sum = conv_gemm_ref(x, wt, b, s, act, residual=res, gate=gate, pool=has_pool)
        what = f"n{n}_{cin}->{cout}_{h}x{w}_k{k}_s{s}_{act}_res{int(has_res)}_gate{int(has_gate)}_{'nhwc' if cl else 'nchw'}"
        out.append(_rec("conv_gemm", what, y, ref))
        if has_pool:
            out.append(_rec("conv_gemm_pool", what, buf / (oh * ow), ref_sum / (oh * ow)))
    for n, c, mid, h, w, has_res in ODD_SE:
        y = rnd(n, c, h, w)
        w1, b1, w2, b2 = rnd(mid, c, scale=c**-0.5), rnd(mid), rnd(c, mid, scale=mid**-0.5), rnd(c)
        res = rnd(n, c, h, w) if has_res else None
        sums = y.sum((2, 3))
        gate = se_gate(sums, h * w, w1, b1, w2, b2)
        what = f"n{n}_c{c}_mid{mid}_{h}x{w}"
        out.append(_rec("se_gate", what, gate, se_gate_ref(sums, h * w, w1, b1, w2, b2)))
        out.append(_rec("se_scale", what, se_scale(y, gate, res), se_scale_ref(y, gate, res)))
    return out


@torch.no_grad()
def check_fuse_archs(space_name: str, *, n_archs: int = 20, batch: int = 1, seed: int = 0, device: str = "cpu",
                     channels_last: bool = False) -> list[CheckRecord]:
    """`fuse(supernet.extract(arch))` against `extract(arch)` on random archs (weights and BN stats randomised)."""
    from hwnas.kernels._fuse import fuse
    from hwnas.search_space import Space
    from hwnas.supernet import Supernet

    space = Space.preset(space_name)
    net = Supernet(space).eval()
    out: list[CheckRecord] = []
    for i in range(n_archs):
        arch = space.sample(seed + i)
        static = randomize_(net.extract(arch), seed + i).to(device)
        fused = fuse(static).to(device)
        g = torch.Generator().manual_seed(seed + i)
        x = torch.randn(batch, space.in_channels, arch.resolution, arch.resolution, generator=g).to(device)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        out.append(_rec("fuse", str(arch), fused(x), static(x)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwnas.kernels._check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="fmnist-mbv3", help="space preset whose block configs / archs to check")
    p.add_argument("--what", default="configs,odd,fuse", help="comma list of: configs, odd, fuse")
    p.add_argument("--batch", type=int, default=1, help="batch of the per-config checks")
    p.add_argument("--archs", type=int, default=20, help="random archs for the fuse check")
    p.add_argument("--limit", type=int, default=None, help="check only the first N block configs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs error counted as a pass")
    p.add_argument("--json", dest="json_out", default=None, help="write every record to this JSON file")
    a = p.parse_args(argv)
    # references in true fp32: PyTorch lets cuDNN round conv operands to TF32 by default
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    recs: list[CheckRecord] = []
    for what in a.what.split(","):
        if what == "configs":
            recs += check_space_configs(a.space, batch=a.batch, device=a.device, limit=a.limit)
        elif what == "odd":
            recs += check_odd_shapes(device=a.device)
        elif what == "fuse":
            recs += check_fuse_archs(a.space, n_archs=a.archs, device=a.device)
        else:
            p.error(f"unknown check {what!r}; allowed: configs, odd, fuse")
    bad = [r for r in recs if not r.err <= a.tol]
    if a.json_out:
        from pathlib import Path

        from hwnas._io import atomic_write_json

        atomic_write_json(Path(a.json_out), {"records": [asdict(r) for r in recs], "seconds": time.time() - t0, "tol": a.tol})
    worst = max(recs, key=lambda r: r.err) if recs else None
    print(f"{len(recs)} checks, {len(bad)} over tol {a.tol:g}, worst {worst.err:.3g} ({worst.check} {worst.what}) in {time.time() - t0:.1f}s"
          if worst else "no checks run", file=sys.stderr)
    for r in bad[:20]:
        print(f"  FAIL {r.check} {r.what}: err {r.err:.3g} (|ref| max {r.ref_max:.3g})", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
