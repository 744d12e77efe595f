"""Where the time of a fused subnet goes: each layer of each block, fused kernel vs eager, on a CUDA GPU.

For every MBConv block of a whole `ofa-mbv3` subnet (default: the largest, at 224 px, batch 1) the
block's real input is captured, then each part is timed as a CUDA-graph replay (no launch
overhead; `triton.testing.do_bench_cudagraph`, median): the 1x1 expand, the depthwise conv (with
the SE pool in its epilogue when the block has SE), the SE gate, the 1x1 project (with the SE gate
and the residual fused), against the eager modules that do the same work. The table says which
layer kinds the fused kernels lose on; the JSON keeps every row.

    python benchmarks/kernels_breakdown.py --out results/benchmarks
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _bench(fn) -> float:  # noqa: ANN001
    from triton.testing import do_bench_cudagraph

    return float(do_bench_cudagraph(fn, rep=30, return_mode="median"))


def _parts(i: int, blk, fblk, xin: torch.Tensor) -> tuple[str, dict[str, tuple]]:  # noqa: ANN001
    """Label of one MBConv block and {part: (eager callable, fused callable)} on its real input."""
    pre, main, se, post = blk.body
    has_pre, has_se = not isinstance(pre, torch.nn.Identity), not isinstance(se, torch.nn.Identity)
    h = pre(xin) if has_pre else xin
    d = main(h)
    tag = f"b{i} {xin.shape[1]}->{d.shape[1]}x{main[0].kernel_size[0]} s{main[0].stride[0]} @{xin.shape[2]}"
    res = xin if blk.residual else None
    parts: dict[str, tuple] = {}
    if has_pre:
        parts["expand1x1"] = (lambda: pre(xin), lambda: fblk.pre.run(xin))
    if has_se:
        sums = d.sum((2, 3))
        hw = d.shape[2] * d.shape[3]
        gate = fblk.se.gate(sums, hw)
        parts["depthwise+pool"] = (lambda: main(h).mean((2, 3)), lambda: fblk.main.run(h, pool=True))
        parts["se_gate"] = (lambda: se.expand(se.act(se.reduce(d.mean((2, 3), keepdim=True)))), lambda: fblk.se.gate(sums, hw))
        parts["project1x1(+gate,+res)"] = (
            lambda: post(d * gate[:, :, None, None]) + (xin if res is not None else 0),
            lambda: fblk.post.run(d, gate=gate, residual=res),
        )
    else:
        parts["depthwise"] = (lambda: main(h), lambda: fblk.main.run(h))
        parts["project1x1(+res)"] = (lambda: post(d) + (xin if res is not None else 0), lambda: fblk.post.run(d, residual=res))
    return tag, parts


def breakdown(arch_name: str, batch: int, seed: int) -> list[dict[str, Any]]:
    from hwnas.kernels import fuse
    from hwnas.kernels._check import randomize_
    from hwnas.search_space import Space
    from hwnas.supernet import build_static
    from hwnas.supernet.static import MBConv

    space = Space.preset("ofa-mbv3")
    arch = {"max": space.max_arch(), "min": space.min_arch()}.get(arch_name) or space.parse(arch_name)
    arch = space.validate(dataclasses.replace(arch, resolution=224))
    static = randomize_(build_static(space, arch), seed).cuda().eval()
    fused = fuse(static, tf32=True)
    inputs: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda m, a: inputs.append(a[0].clone())) for b in static.blocks]
    x = torch.randn(batch, space.in_channels, 224, 224, device="cuda")
    with torch.inference_mode():
        static(x)
    for h in hooks:
        h.remove()
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for i, (blk, fblk, xin) in enumerate(zip(static.blocks, fused.blocks, inputs)):
            if not isinstance(blk, MBConv):
                continue
            tag, parts = _parts(i, blk, fblk, xin)
            for name, (eager, fz) in parts.items():
                e, f = _bench(eager), _bench(fz)
                rows.append({"block": tag, "part": name, "eager_ms": e, "fused_ms": f, "speedup": e / f})
                print(f"{tag:32s} {name:24s} eager {e * 1e3:8.1f} us  fused {f * 1e3:8.1f} us  x{e / f:5.2f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="max", help="'max', 'min' or an ofa-mbv3 arch string (run at 224 px)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/benchmarks")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/kernels_breakdown.py needs a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    from hwnas._io import atomic_write_json

    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    t0 = time.time()
    rows = breakdown(a.arch, a.batch, a.seed)
    by_part: dict[str, list[float]] = {}
    for r in rows:
        key = r["part"].split("(")[0].split("+")[0]
        by_part.setdefault(key, [0.0, 0.0])
        by_part[key][0] += r["eager_ms"]
        by_part[key][1] += r["fused_ms"]
    summary = {k: {"eager_ms": e, "fused_ms": f, "speedup": e / f} for k, (e, f) in by_part.items()}
    for k, v in summary.items():
        print(f"total {k:12s} eager {v['eager_ms']:.3f} ms fused {v['fused_ms']:.3f} ms x{v['speedup']:.2f}")
    gpu = torch.cuda.get_device_name()
    stem = "kernels_breakdown_" + gpu.lower().replace("nvidia", "").strip().split()[0]
    Path(a.out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(a.out) / f"{stem}_{a.arch if len(a.arch) < 8 else 'arch'}_b{a.batch}.json", {
        "device": gpu, "torch": torch.__version__, "arch": a.arch, "batch": a.batch,
        "timing": "triton.testing.do_bench_cudagraph median (rep 30 ms): device time, no launch overhead; fp32 with TF32 in cuDNN and fused GEMMs",
        "rows": rows, "summary_by_part": summary, "seconds": time.time() - t0,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
