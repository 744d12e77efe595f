"""NAS front vs a hand-designed family: accuracy against measured CPU latency on one plot.

The manual family is MobileNetV2-style (every block an inverted residual, kernel 3, expand 6,
ReLU6, no SE) on the same macro-structure as `fmnist-mbv3`, at width multipliers 0.35 / 0.5 /
0.75 / 1.0. Each is trained from scratch with the optimiser settings of the supernet's train
config and the same number of training steps as the supernet got (so the same total epochs).

The NAS side comes from a finished main-job run (`hwnas run`): for each manual net, the most
accurate front member whose predicted latency is not above the manual net's measured latency is
extracted from the supernet, BN-recalibrated and measured the same way. Both sides: Fashion-MNIST
test accuracy, and batch-1 latency on the `cpu` device (min of repeated runs, as the predictors).

    python benchmarks/nas_vs_manual.py --run results/runs/fashion-mnist-cpu
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hwnas._io import atomic_write_json
from hwnas.search_space import Space, make_divisible

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (0.35, 0.5, 0.75, 1.0)
BASE = {"stem": 16, "stages": (16, 24, 40, 80, 96), "depths": (1, 2, 3, 3, 2), "head": 384}


def manual_space(w: float, template: Space) -> tuple[Space, str]:
    """A one-arch space: MobileNetV2-style blocks at width multiplier w on the template's macro-structure."""
    stages = []
    blocks = []
    for i, (st, c, d) in enumerate(zip(template.stages, BASE["stages"], BASE["depths"])):
        width = make_divisible(c * w)
        e = 1 if i == 0 else 6
        stages.append({"kinds": ["mb"], "depths": [d], "kernels": [3], "expands": [e], "widths": [width],
                       "stride": st.stride, "se": False, "act": "relu6"})
        blocks.append(f"s{i + 1}w{width}:mb_k3_e{e}" + (f"x{d}" if d > 1 else ""))
    r = max(template.resolutions)
    space = Space.from_dict({
        "name": f"mbv2-{w}", "in_channels": template.in_channels, "num_classes": template.num_classes,
        "resolutions": [r], "normalization": {"mean": list(template.mean), "std": list(template.std)},
        "stem": {"channels": make_divisible(BASE["stem"] * w), "kernel": 3, "stride": template.stem.stride, "act": "relu6"},
        "stages": stages,
        "head": {"expand_channels": make_divisible(BASE["head"] * max(1.0, w)), "act": "relu6", "dropout": 0.1},
    })
    return space, f"r{r}|" + "|".join(blocks)


def train_from_scratch(model: torch.nn.Module, loaders: Any, *, steps: int, tcfg: Any, seed: int,
                       resolution: int | None = None) -> float:
    """Train `model` alone for `steps` with the supernet's optimiser settings (SGD, cosine LR, label
    smoothing, clipping), inputs resized to `resolution` when given. Returns the seconds taken."""
    from hwnas.supernet._supernet import resize_input

    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=tcfg.lr, momentum=tcfg.momentum, nesterov=tcfg.nesterov)
    model.train()
    step = 0
    t0 = time.perf_counter()
    epoch = 0
    while step < steps:
        loaders.train.set_epoch(epoch)
        for x, y in loaders.train:
            lr = 0.5 * tcfg.lr * (1 + math.cos(math.pi * step / steps))
            for g in opt.param_groups:
                g["lr"] = lr
            if resolution is not None:
                x = resize_input(x, resolution)
            loss = F.cross_entropy(model(x), y, label_smoothing=tcfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            step += 1
            if step >= steps:
                break
        epoch += 1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=REPO / "results/runs/fashion-mnist-cpu", help="finished `hwnas run` directory")
    ap.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS))
    ap.add_argument("--device", default="cpu", help="latency device (default cpu, as the main job)")
    ap.add_argument("--out", type=Path, default=REPO / "results/benchmarks/nas_vs_manual.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hwnas.data import make_loaders
    from hwnas.estimators import Device, measure
    from hwnas.pipeline import final_front, load_run_config
    from hwnas.supernet import build_static, load_config, load_supernet
    from hwnas.supernet.bn import evaluate, recalibrate_bn

    cfg = load_run_config(None, **json.loads((args.run / "config.json").read_text()))
    tcfg = load_config(REPO / cfg.train_config, schedule=cfg.schedule, overrides={"space": cfg.space})
    template = Space.preset(cfg.space)
    loaders = make_loaders(cfg.dataset, cfg.data_dir, space=template, seed=cfg.seed, batch_size=tcfg.batch_size,
                           steps_per_epoch=tcfg.steps_per_epoch)
    steps = tcfg.epochs * (tcfg.steps_per_epoch or len(loaders.train))
    dev = Device.from_name(args.device)
    torch.set_num_threads(2)

    manual = []
    for w in args.widths:
        space, arch = manual_space(w, template)
        model = build_static(space, arch)
        secs = train_from_scratch(model, loaders, steps=steps, tcfg=tcfg, seed=args.seed)
        model.eval()
        acc = evaluate(model, None, loaders.test, recalibrate=False)
        torch.set_num_threads(dev.threads)
        lat = measure(model, dev, resolution=space.resolutions[0], repeats=41).min_ms
        torch.set_num_threads(2)
        params = sum(p.numel() for p in model.parameters())
        manual.append({"width": w, "arch": arch, "test_acc": acc, "latency_ms": lat, "params": params, "train_s": secs})
        print(f"manual MBv2-{w}: acc {100 * acc:.2f}%  {lat:.3f} ms  {params} params  ({secs:.0f} s training)", flush=True)

    # NAS: the best front member under each manual net's latency, measured the same way.
    front = final_front(cfg, args.run)
    net = load_supernet(args.run / "supernet").eval()
    calib = loaders.calib_images(cfg.calib_images)
    key = f"latency_ms@{dev.name}"
    nas = []
    seen = set()
    for m in manual:
        try:
            pick = front.pick(f"{key}<={m['latency_ms']}")
        except ValueError as e:
            print(f"no front member under {m['latency_ms']:.3f} ms: {e}")
            continue
        if pick.arch in seen:
            continue
        seen.add(pick.arch)
        arch = template.parse(pick.arch)
        with torch.no_grad():
            static = net.extract(arch).eval()
            recalibrate_bn(static, None, calib, len(calib))
            acc = evaluate(static, None, loaders.test, recalibrate=False)
        torch.set_num_threads(dev.threads)
        lat = measure(static, dev, resolution=arch.resolution, repeats=41).min_ms
        torch.set_num_threads(2)
        nas.append({"arch": pick.arch, "test_acc": acc, "latency_ms": lat, "predicted_latency_ms": pick.metrics[key],
                    "budget_from": f"MBv2-{m['width']}"})
        print(f"NAS under {m['latency_ms']:.3f} ms: acc {100 * acc:.2f}%  {lat:.3f} ms  {pick.arch}", flush=True)

    # Domination: at each manual latency, some NAS point at <= that latency has >= accuracy.
    checks = []
    for m in manual:
        cands = [n for n in nas if n["latency_ms"] <= m["latency_ms"]]
        best = max((n["test_acc"] for n in cands), default=float("nan"))
        checks.append({"manual": f"MBv2-{m['width']}", "manual_acc": m["test_acc"], "manual_ms": m["latency_ms"],
                       "best_nas_acc_at_or_below": best, "nas_dominates": bool(cands) and best >= m["test_acc"]})
    doc = {"benchmark": "nas_vs_manual", "run": str(args.run), "device": dev.name, "steps_each": steps,
           "train_config": tcfg.to_dict(), "manual": manual, "nas": nas, "checks": checks,
           "nas_dominates_everywhere": all(c["nas_dominates"] for c in checks)}
    atomic_write_json(args.out, doc)
    _plot(manual, nas, args.out.with_suffix(".png"), dev.name)
    for c in checks:
        print(c)
    print("NAS front dominates the manual family at every latency:", doc["nas_dominates_everywhere"])


def _plot(manual: list[dict], nas: list[dict], path: Path, dev: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    m = sorted(manual, key=lambda r: r["latency_ms"])
    n = sorted(nas, key=lambda r: r["latency_ms"])
    ax.plot([r["latency_ms"] for r in m], [100 * r["test_acc"] for r in m], "s--", label="MobileNetV2-style, from scratch")
    for r in m:
        ax.annotate(f"x{r['width']}", (r["latency_ms"], 100 * r["test_acc"]), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.plot([r["latency_ms"] for r in n], [100 * r["test_acc"] for r in n], "o-", label="hwnas front (inherited weights)")
    ax.set_xlabel(f"measured latency on {dev}, batch 1 (ms)")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title("NAS front vs hand-designed family (same training steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
