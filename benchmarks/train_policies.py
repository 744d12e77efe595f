"""Benchmark the supernet training policies on Fashion-MNIST (2 CPU cores).

Trains one supernet with `--policy` and `--schedule` (from configs/fmnist.yaml), then measures the
BN-recalibrated test accuracy of the min, the max and 10 fixed random subnets, their FLOPs
(fvcore, on the extracted static net), and training images/s. Each finished run is appended to
`results/benchmarks/train_policies.json`, so the set can be run piece by piece; a plot of
accuracy vs. FLOPs per policy is redrawn beside it (`train_policies.png`).

    python benchmarks/train_policies.py --policy deps --schedule demo
    python benchmarks/train_policies.py --policy sandwich --schedule compare
    python benchmarks/train_policies.py --from-run results/runs/demo-deps   # measure a finished run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "results" / "benchmarks" / "train_policies.json"


def flops_of(static: Any, resolution: int, in_channels: int) -> int:
    """Multiply-accumulates of one image through the static net (fvcore's count)."""
    import logging

    import torch
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    static = static.eval()
    fca = FlopCountAnalysis(static, torch.zeros(1, in_channels, resolution, resolution))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(fca.total())


def measure(run_dir: Path, n_random: int, test_images: int | None, calib: int) -> dict[str, Any]:
    import torch
    from hwnas.data import make_loaders
    from hwnas.supernet.bn import evaluate
    from hwnas.supernet.train import load_supernet, report_archs

    net = load_supernet(run_dir)
    meta = json.loads((run_dir / "supernet.json").read_text())
    cfg = meta["config"] or {}
    space = net.space
    ld = make_loaders(cfg.get("dataset", "fashion-mnist"), cfg.get("data_dir"), space=space,
                      search_val=cfg.get("search_val", 5000), seed=cfg.get("seed", 0))
    test = ld.test
    if test_images:
        test.x, test.y = test.x[:test_images], test.y[:test_images]
    calib_x = ld.calib_images(calib)
    rows = []
    t0 = time.perf_counter()
    for name, arch in report_archs(space, n_random).items():
        static = net.extract(arch)
        acc = evaluate(static, None, test, calib=calib_x, num_calib=calib)
        rows.append({"name": name, "arch": str(arch), "test_acc": acc, "flops": flops_of(static, arch.resolution, space.in_channels),
                     "params": sum(p.numel() for p in static.parameters())})
        print(f"  {name:9s} acc {acc:.4f}  {rows[-1]['flops'] / 1e6:7.2f} MFLOPs  {arch}", flush=True)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    epochs = [m for m in metrics if m.get("kind") == "epoch"]
    report = json.loads((run_dir / "report.json").read_text())
    imgs = sum(m["img_s"] * m["seconds"] for m in epochs)
    return {
        "policy": cfg.get("policy"),
        "schedule": cfg.get("schedule"),
        "config": cfg,
        "train_seconds": report.get("train_seconds"),
        "train_images_per_s": imgs / max(sum(m["seconds"] for m in epochs), 1e-9),
        "epochs": [{k: m[k] for k in m if k != "kind"} for m in epochs],
        "subnets": rows,
        "max_acc": next(r["test_acc"] for r in rows if r["name"] == "max"),
        "min_acc": next(r["test_acc"] for r in rows if r["name"] == "min"),
        "random_mean_acc": sum(r["test_acc"] for r in rows if r["name"].startswith("random")) / max(1, n_random),
        "test_images": len(test.y),
        "calib_images": calib,
        "eval_seconds": time.perf_counter() - t0,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "run_dir": str(run_dir),
    }


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rec in records:
        xs = [r["flops"] / 1e6 for r in rec["subnets"]]
        ys = [100 * r["test_acc"] for r in rec["subnets"]]
        ax.scatter(xs, ys, label=f"{rec['policy']} / {rec['schedule']} ({rec['train_seconds'] / 60:.0f} min)", alpha=0.8)
    ax.set_xlabel("subnet MFLOPs (fvcore, one image)")
    ax.set_ylabel("test accuracy, BN recalibrated (%)")
    ax.set_title("Fashion-MNIST fmnist-mbv3 supernet: accuracy vs FLOPs per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", choices=["sandwich", "progressive", "deps"], default="deps")
    ap.add_argument("--schedule", default="demo", help="schedule name in configs/fmnist.yaml (demo, compare, default)")
    ap.add_argument("--config", default=None, help="training YAML (default configs/fmnist.yaml)")
    ap.add_argument("--from-run", default=None, help="measure an already finished run directory instead of training")
    ap.add_argument("--runs-dir", default=str(REPO / "results" / "runs"), help="where training runs are written")
    ap.add_argument("--random", type=int, default=10, help="number of fixed random subnets to evaluate")
    ap.add_argument("--test-images", type=int, default=None, help="evaluate on the first N test images (default all 10k)")
    ap.add_argument("--calib", type=int, default=2000, help="BN recalibration images")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", default=str(OUT_JSON), help="JSON file the record is appended to")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_run:
        run_dir = Path(args.from_run).resolve()
    else:
        from hwnas.supernet.train import load_config, train

        cfg = load_config(args.config, schedule=args.schedule, overrides={"policy": args.policy, "threads": args.threads})
        run_dir = Path(args.runs_dir) / f"bench-{args.policy}-{args.schedule}-{time.strftime('%Y%m%d-%H%M%S')}"
        train(cfg, run_dir)
    rec = measure(run_dir, args.random, args.test_images, args.calib)
    rec["command"] = "python " + " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    records.append(rec)
    from hwnas._io import atomic_write_json

    atomic_write_json(out, records)
    plot(records, out.with_suffix(".png"))
    print(json.dumps({k: rec[k] for k in ("policy", "schedule", "max_acc", "min_acc", "random_mean_acc", "train_seconds",
                                           "train_images_per_s")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
