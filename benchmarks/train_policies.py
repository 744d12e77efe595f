"""Benchmark the supernet training policies on Fashion-MNIST (2 CPU cores).

Trains one supernet with `--policy` and `--schedule` (from configs/fmnist.yaml), then measures the
BN-recalibrated test accuracy of the min, the max and 10 fixed random subnets, their FLOPs
(fvcore, on the extracted static net), and training images/s. Each finished run is appended to
`results/benchmarks/train_policies.json`, so the set can be run piece by piece; a plot of
accuracy vs. FLOPs per policy is redrawn beside it (`train_policies.png`).

    python benchmarks/train_policies.py --policy deps --schedule demo
    python benchmarks/train_policies.py --policy sandwich --schedule compare
    python benchmarks/train_policies.py --policy sandwich --schedule compare --budget-minutes 10
    python benchmarks/train_policies.py --from-run results/runs/demo-deps   # measure a finished run

`--budget-minutes M` sizes the run to a wall-clock budget instead of the schedule's step count: a
short probe run of the same schedule (same phase fractions, so the same mix of full-net and
multi-subnet steps) measures this policy's seconds per step on this machine now, and the real run
gets M minutes' worth of steps (over the schedule's epochs, or more epochs when one
pass over the data holds too few batches). Policies that do more work per
step so get fewer steps: that is the equal wall-clock comparison.
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


def steps_for_budget(cfg: Any, budget_s: float, runs_dir: Path, probe_steps: int = 64, warmup: int = 6
                     ) -> tuple[int, dict[str, Any]]:
    """Steps of `cfg`'s schedule that fit in `budget_s` seconds of training, from a timed probe run.

    The probe trains `probe_steps` steps with the same epochs and phase fractions as the real run
    and logs every step. Each phase's seconds per step is its mean after the probe's first
    `warmup` steps (allocator growth, first touch of the weights), and the phases are weighted by
    their share of the schedule: a deps step on the full net alone costs about half a shrinking
    step, a progressive kernel-phase step less than a depth-phase one. Returns (steps, probe facts).
    """
    import shutil

    from hwnas.supernet.train import train

    epochs = cfg.epochs
    spe = max(1, probe_steps // epochs)
    probe_dir = runs_dir / f"probe-{cfg.policy}-{time.strftime('%Y%m%d-%H%M%S')}"
    probe = cfg.replace(steps_per_epoch=spe, val_every=0, report_random=0, log_every=1)
    train(probe, probe_dir, progress=False)
    recs = [json.loads(x) for x in (probe_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    shutil.rmtree(probe_dir, ignore_errors=True)
    steps_rec = [m for m in recs if m.get("kind") == "step"]
    share: dict[str, int] = {}
    for m in steps_rec:
        share[m["phase"]] = share.get(m["phase"], 0) + 1
    timed = steps_rec[warmup:] if len(steps_rec) > 2 * warmup else steps_rec
    per_phase = {}
    for ph in share:
        secs = [cfg.batch_size / m["img_s"] for m in timed if m["phase"] == ph]
        if not secs:  # the phase fell entirely in the warm-up: take its steps anyway
            secs = [cfg.batch_size / m["img_s"] for m in steps_rec if m["phase"] == ph]
        per_phase[ph] = sum(secs) / len(secs)
    sec_per_step = sum(per_phase[ph] * n for ph, n in share.items()) / len(steps_rec)
    steps = max(epochs, int(budget_s / sec_per_step))
    return steps, {"probe_steps": len(steps_rec), "probe_seconds_per_step": sec_per_step,
                   "probe_seconds_per_step_by_phase": per_phase, "budget_seconds": budget_s}


def fit_schedule(cfg: Any, steps: int) -> Any:
    """`cfg` with about `steps` training steps: the schedule's epochs, or more of them when an epoch
    of the data holds fewer batches than `steps / epochs`. The schedule keeps its shape: phase
    fractions, and the deps ramp as the same share of training."""
    from hwnas.data import make_loaders
    from hwnas.search_space import Space

    space = Space.preset(str(cfg.space))  # a preset name or a space YAML path
    full = len(make_loaders(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, search_val=cfg.search_val,
                            seed=cfg.seed, subset=cfg.subset, space=space).train)
    epochs = max(cfg.epochs, -(-steps // full))
    spe = min(full, max(1, steps // epochs))
    return cfg.replace(epochs=epochs, steps_per_epoch=spe, deps_ramp_epochs=cfg.deps_ramp_epochs * epochs / cfg.epochs)


def measure(run_dir: Path, n_random: int, test_images: int | None, calib: int) -> dict[str, Any]:
    import torch
    from hwnas.data import make_loaders
    from hwnas.supernet import load_supernet
    from hwnas.supernet.bn import evaluate
    from hwnas.supernet.train import report_archs

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

    latest: dict[tuple[Any, ...], dict[str, Any]] = {}  # a re-run replaces its older record in the plot
    for rec in records:
        latest[(rec["policy"], rec["schedule"], (rec.get("budget") or {}).get("budget_seconds"))] = rec
    colors = {"deps": "tab:blue", "sandwich": "tab:orange", "progressive": "tab:green"}  # one colour a policy
    markers = {"demo": "s", "default": "*", "compare": "o"}  # one marker a schedule; a budget run: triangles
    fig, ax = plt.subplots(figsize=(8, 5))
    for rec in latest.values():
        xs = [r["flops"] / 1e6 for r in rec["subnets"]]
        ys = [100 * r["test_acc"] for r in rec["subnets"]]
        style = {"color": colors.get(rec["policy"]), "marker": "^" if rec.get("budget") else markers.get(rec["schedule"], "D"),
                 "s": 70 if rec["schedule"] == "default" else 30}
        if rec["schedule"] == "compare" and not rec.get("budget"):
            style["facecolors"] = "none"
            style["edgecolors"] = style.pop("color")
        budget = f", {rec['budget']['budget_seconds'] / 60:g}-min budget" if rec.get("budget") else ""
        ax.scatter(xs, ys, label=f"{rec['policy']} / {rec['schedule']}{budget} ({rec['train_seconds'] / 60:.1f} min)", alpha=0.8, **style)
    ax.set_xlabel("subnet MFLOPs (fvcore, one image)")
    ax.set_ylabel("test accuracy, BN recalibrated (%)")
    ax.set_title("Fashion-MNIST fmnist-mbv3 supernet: accuracy vs FLOPs per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", choices=["sandwich", "progressive", "deps"], default="deps")
    ap.add_argument("--schedule", default="demo", help="schedule name in configs/fmnist.yaml (demo, compare, default)")
    ap.add_argument("--config", default=None, help="training YAML (default configs/fmnist.yaml)")
    ap.add_argument("--budget-minutes", type=float, default=None,
                    help="size the run to this many minutes of training (timed probe run first); default: the schedule's steps")
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
        budget = None
        if args.budget_minutes is not None:
            if args.budget_minutes <= 0:
                ap.error(f"--budget-minutes must be > 0, got {args.budget_minutes}")
            steps, budget = steps_for_budget(cfg, 60 * args.budget_minutes, Path(args.runs_dir))
            cfg = fit_schedule(cfg, steps)
            print(f"{args.policy}: {budget['probe_seconds_per_step']:.3f} s/step in the probe -> "
                  f"{cfg.steps_per_epoch * cfg.epochs} steps for {args.budget_minutes:g} min", flush=True)
        tag = f"{args.schedule}-{args.budget_minutes:g}min" if budget else args.schedule
        run_dir = Path(args.runs_dir) / f"bench-{args.policy}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
        train(cfg, run_dir)
    rec = measure(run_dir, args.random, args.test_images, args.calib)
    if not args.from_run and budget:
        rec["budget"] = {**budget, "steps": cfg.steps_per_epoch * cfg.epochs}
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
