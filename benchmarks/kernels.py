"""Fused Triton blocks vs PyTorch eager (cuDNN) vs torch.compile, on a CUDA GPU.

Per block configuration (MBConv) of `ofa-mbv3` at 224 px and of `fmnist-mbv3` at 28 px, at batch
1 and 64, and whole `ofa-mbv3` subnets at batch 1. Two timings per variant:
- `ms`: median of `triton.testing.do_bench` (CUDA events around each call, L2 flushed between
  calls). The flush gives the host a head start, so this is close to device time.
- `wall_ms`: back-to-back calls timed on the host clock until the GPU is done, divided by the
  count: launch overhead included, what a batch-1 caller sees.
Whole nets are also timed as CUDA-graph replays (eager and fused), which removes launch overhead.

All variants run fp32 with TF32 allowed (cuDNN's default for convs; `tf32=True` for the fused
GEMMs; `set_float32_matmul_precision('high')` for torch.compile). Block configs are a seeded
sample (`--configs`, spread over stages); the JSON lists exactly which ran.

    python benchmarks/kernels.py --out results/benchmarks
Goals (issue 5): fused MBConv >= 1.3x eager at batch 1 and no slower than torch.compile at
batch 64; whole ofa-mbv3 subnets >= 1.2x eager at batch 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _wall_ms(fn: Callable[[], Any], n: int = 50) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3 / n


def _graphed(fn: Callable[[], Any]) -> Callable[[], Any]:
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def _time(fn: Callable[[], Any]) -> dict[str, float]:
    from triton.testing import do_bench

    return {"ms": do_bench(fn, warmup=25, rep=100, return_mode="median"), "wall_ms": _wall_ms(fn)}


def _sample_configs(space, resolution: int, k: int, seed: int, kind: str = "mb") -> list:  # noqa: ANN001
    """Up to k configs of block kind `kind` (MBConv) that occur at `resolution`, spread over input sizes/strides (k <= 0: all)."""
    sizes = set(space.feature_sizes(resolution))
    cfgs = [c for c in space.distinct_block_configs() if c.kind == kind and c.in_size in sizes]
    if k <= 0 or k >= len(cfgs):
        return cfgs
    groups: dict[tuple, list] = {}
    for c in cfgs:
        groups.setdefault((c.in_size, c.stride, c.cin), []).append(c)
    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    out: list = []
    while len(out) < k:  # round-robin over (size, stride, cin) groups so every stage shows up
        for g in order:
            if groups[g] and len(out) < k:
                out.append(groups[g].pop(rng.randrange(len(groups[g]))))
    return sorted(out, key=lambda c: (-c.in_size, c.cin, c.key))


def bench_block(space, cfg, batch: int, *, use_compile: bool, seed: int = 0) -> dict[str, Any]:  # noqa: ANN001
    from hwnas.kernels import fused_block
    from hwnas.kernels._check import block_for_config, randomize_

    mod = randomize_(block_for_config(space, cfg), seed).cuda()
    fused = fused_block(mod, tf32=True)
    x = torch.randn(batch, cfg.cin, cfg.in_size, cfg.in_size, device="cuda")
    row: dict[str, Any] = {"space": space.name, "config": cfg.key, "batch": batch}
    with torch.inference_mode():
        ref = mod(x)
        row["max_abs_err"] = (fused(x) - ref).abs().max().item()
        row["ref_max"] = ref.abs().max().item()
        row["eager"] = _time(lambda: mod(x))
        row["fused"] = _time(lambda: fused(x))
        row["eager_graph"] = _time(_graphed(lambda: mod(x)))
        row["fused_graph"] = _time(_graphed(lambda: fused(x)))
        if use_compile:
            comp = torch.compile(mod, dynamic=False)
            t = time.perf_counter()
            comp(x)
            row["compile_s"] = time.perf_counter() - t
            row["compile"] = _time(lambda: comp(x))
    return row


def bench_net(space, arch, *, use_compile: bool, seed: int = 0) -> dict[str, Any]:  # noqa: ANN001
    from hwnas.kernels import fuse
    from hwnas.kernels._check import randomize_
    from hwnas.supernet import build_static

    static = randomize_(build_static(space, arch), seed).cuda()
    fused = fuse(static, tf32=True)
    fused_g = fuse(static, tf32=True, cuda_graph=True)
    x = torch.randn(1, space.in_channels, arch.resolution, arch.resolution, device="cuda")
    row: dict[str, Any] = {"arch": str(arch), "batch": 1, "blocks": len(static.blocks)}
    with torch.inference_mode():
        ref = static(x)
        row["max_abs_err"] = (fused(x) - ref).abs().max().item()
        row["ref_max"] = ref.abs().max().item()
        row["eager"] = _time(lambda: static(x))
        row["fused"] = _time(lambda: fused(x))
        row["eager_graph"] = _time(_graphed(lambda: static(x)))
        # through the public API: fuse(..., cuda_graph=True) copies the input in, replays, clones out
        row["fused_graph"] = _time(lambda: fused_g(x))
        if use_compile:
            comp = torch.compile(static, dynamic=False)
            t = time.perf_counter()
            comp(x)
            row["compile_s"] = time.perf_counter() - t
            row["compile"] = _time(lambda: comp(x))
    return row


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(rows: list[dict], nets: list[dict]) -> dict[str, Any]:
    """Speedups (eager / fused, compile / fused) and how many rows meet the issue's goals."""
    out: dict[str, Any] = {}
    for space in sorted({r["space"] for r in rows}):
        for b in sorted({r["batch"] for r in rows}):
            rs = [r for r in rows if r["space"] == space and r["batch"] == b]
            d: dict[str, Any] = {"n": len(rs)}
            for t in ("ms", "wall_ms"):
                sp_e = [r["eager"][t] / r["fused"][t] for r in rs]
                d[f"speedup_vs_eager_{t}_geomean"] = _geomean(sp_e)
                d[f"rows_fused_ge_1.3x_eager_{t}"] = sum(s >= 1.3 for s in sp_e)
                if all("compile" in r for r in rs) and rs:
                    sp_c = [r["compile"][t] / r["fused"][t] for r in rs]
                    d[f"speedup_vs_compile_{t}_geomean"] = _geomean(sp_c)
                    d[f"rows_fused_not_slower_than_compile_{t}"] = sum(s >= 1.0 for s in sp_c)
            if rs:
                d["fused_graph_vs_eager_graph_ms_geomean"] = _geomean([r["eager_graph"]["ms"] / r["fused_graph"]["ms"] for r in rs])
                d["fused_graph_vs_eager_wall_ms_geomean"] = _geomean([r["eager"]["wall_ms"] / r["fused_graph"]["wall_ms"] for r in rs])
            out[f"{space}/b{b}"] = d
    if nets:
        d = {"n": len(nets)}
        for t in ("ms", "wall_ms"):
            sp = [r["eager"][t] / r["fused"][t] for r in nets]
            d[f"speedup_vs_eager_{t}_geomean"] = _geomean(sp)
            d[f"nets_fused_ge_1.2x_eager_{t}"] = sum(s >= 1.2 for s in sp)
        d["fused_graph_vs_eager_graph_ms_geomean"] = _geomean([r["eager_graph"]["ms"] / r["fused_graph"]["ms"] for r in nets])
        d["fused_graph_vs_eager_wall_ms_geomean"] = _geomean([r["eager"]["wall_ms"] / r["fused_graph"]["wall_ms"] for r in nets])
        out["ofa-mbv3/nets_b1"] = d
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """Bar chart: speedup over eager (do_bench median) per block config, per batch; and whole nets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, nets = result["blocks"], result["nets"]
    panels = sorted({(r["space"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(14, 3.2 * (len(panels) + 1)), squeeze=False)
    for ax, (space, b) in zip(axes[:, 0], panels):
        rs = [r for r in rows if r["space"] == space and r["batch"] == b]
        xs = range(len(rs))
        kinds = [k for k in ("fused", "compile", "eager_graph", "fused_graph") if rs and all(k in r for r in rs)]
        w = 0.8 / max(1, len(kinds))
        for j, k in enumerate(kinds):
            ax.bar([x - 0.4 + w * (j + 0.5) for x in xs], [r["eager"]["ms"] / r[k]["ms"] for r in rs], w, label=k)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.3, color="r", lw=0.8, ls="--", label="goal 1.3x (batch 1)")
        ax.set_xticks(list(xs), [r["config"].replace("_se", "\nse") for r in rs], fontsize=6, rotation=60)
        ax.set_ylabel("speedup vs eager")
        ax.set_title(f"{space} MBConv blocks, batch {b} (do_bench median)")
        ax.legend(fontsize=7)
    ax = axes[-1, 0]
    if nets:
        labels = [f"net{i} ({r['blocks']} blocks)" for i, r in enumerate(nets)]
        kinds = [k for k in ("fused", "compile", "eager_graph", "fused_graph") if all(k in r for r in nets)]
        w = 0.8 / len(kinds)
        for j, k in enumerate(kinds):
            ax.bar([i - 0.4 + w * (j + 0.5) for i in range(len(nets))], [r["eager"]["ms"] / r[k]["ms"] for r in nets], w, label=k)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.2, color="r", lw=0.8, ls="--", label="goal 1.2x")
        ax.set_xticks(range(len(nets)), labels)
        ax.set_ylabel("speedup vs eager")
        ax.set_title("whole ofa-mbv3 subnets at 224 px, batch 1")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="ofa-mbv3:224,fmnist-mbv3:28", help="space:resolution list")
    p.add_argument("--configs", default="10,6", help="block configs sampled per space (0 = all), comma list matching --spaces")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--nets", type=int, default=3, help="whole ofa-mbv3 subnets at 224 px (min, max, random)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    p.add_argument("--no-net-compile", action="store_true", help="skip torch.compile of whole nets only (about 20 s each)")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting new configs after this many seconds")
    p.add_argument("--out", default="results/benchmarks", help="output folder")
    p.add_argument("--name", default=None, help="file stem; default kernels_<gpu>")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    import triton
    from hwnas._io import atomic_write_json
    from hwnas.search_space import Space

    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name()
    stem = a.name or "kernels_" + gpu.lower().replace("nvidia", "").strip().split()[0].replace(" ", "_")
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result: dict[str, Any] = {
        "device": gpu, "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
        "precision": "fp32, TF32 allowed in cuDNN, fused GEMMs and torch.compile",
        "timing": "ms = triton.testing.do_bench median (warmup 25 ms, rep 100 ms); wall_ms = host-clock mean of 50 back-to-back calls",
        "args": vars(a), "blocks": [], "nets": [], "skipped": [],
    }
    ks = [int(k) for k in a.configs.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    use_compile = not a.no_compile

    def save() -> None:
        result["summary"] = summarize(result["blocks"], result["nets"])
        result["seconds"] = time.time() - t0
        atomic_write_json(out_dir / f"{stem}.json", result)
        plot(result, out_dir / f"{stem}.png")

    # whole nets first: they are the headline goal, and the block sweep is cut by --budget-s
    if a.nets:
        space = Space.preset("ofa-mbv3")
        archs = [space.min_arch(), space.max_arch()] + [space.sample(a.seed + j) for j in range(max(0, a.nets - 2))]
        for arch in archs[: a.nets]:
            arch = space.validate(dataclasses.replace(arch, resolution=224))
            try:
                r = bench_net(space, arch, use_compile=use_compile and not a.no_net_compile, seed=a.seed)
            except Exception as e:
                traceback.print_exc()
                result["skipped"].append(f"net {arch}: {type(e).__name__}: {e}"[:500])
                continue
            result["nets"].append(r)
            comp = f" compile {r['compile']['ms']:.3f}" if "compile" in r else ""
            print(f"[{time.time() - t0:5.0f}s] net {r['blocks']} blocks: eager {r['eager']['ms']:.3f} fused {r['fused']['ms']:.3f}{comp}"
                  f" graphs {r['eager_graph']['ms']:.3f}/{r['fused_graph']['ms']:.3f} ms (wall {r['eager']['wall_ms']:.3f}/{r['fused']['wall_ms']:.3f})"
                  f" err {r['max_abs_err']:.2g}", flush=True)
            save()
    for i, spec in enumerate(a.spaces.split(",")):
        name, res = spec.split(":")
        space = Space.preset(name)
        cfgs = _sample_configs(space, int(res), ks[i] if i < len(ks) else ks[-1], a.seed)
        result.setdefault("sampled", {})[name] = [c.key for c in cfgs]
        for c in cfgs:
            for b in batches:
                if time.time() - t0 > a.budget_s:
                    result["skipped"].append(f"{c.key}/b{b} (time budget)")
                    continue
                try:
                    row = bench_block(space, c, b, use_compile=use_compile, seed=a.seed)
                except Exception as e:  # one broken config must not lose the rest of the run
                    traceback.print_exc()
                    result["skipped"].append(f"{c.key}/b{b}: {type(e).__name__}: {e}"[:500])
                    continue
                result["blocks"].append(row)
                r = row
                comp = f" compile {r['compile']['ms']:.4f}" if "compile" in r else ""
                print(f"[{time.time() - t0:5.0f}s] {c.key} b{b}: eager {r['eager']['ms']:.4f} fused {r['fused']['ms']:.4f}{comp} ms"
                      f" (wall {r['eager']['wall_ms']:.4f}/{r['fused']['wall_ms']:.4f}) err {r['max_abs_err']:.2g}", flush=True)
            save()
    save()
    for k, v in result["summary"].items():
        print(k, {kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
