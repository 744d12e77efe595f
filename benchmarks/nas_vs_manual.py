"""NAS front vs a hand-designed family: test accuracy against measured latency, one panel per device.

The manual family, on the same macro-structure as `fmnist-mbv3` (stem, five stages, strides, head):
- MobileNetV2-style nets (every block an inverted residual, kernel 3, expand 6, ReLU6, no SE) at
  width multipliers 0.35 / 0.5 / 0.75 / 1.0;
- a MobileNetV3-Small-like net (`MBV3_SMALL`: kernels 3/5, SE, hard-swish).
Each is trained alone with the from-scratch recipe of `benchmarks/supernet_ablation.py` (the same
trainer, augmentation, optimiser, LR schedule and regularisation as the from-scratch baselines of
the supernet's own subnets) for as many steps as the shipped supernet was trained (4,719 for
`fmnist-mbv3`). Trained nets are recorded in `results/benchmarks/nas_vs_manual_nets.json` and not
trained again; a stopped training resumes from its last epoch.

The NAS side comes from a finished main-job run on this machine (default: `bash scripts/main.sh`'s): the
subnets it exported, and on each device, for each manual net, the most accurate front member
whose predicted latency is not above the manual net's measured one, and the slowest such member
(the most capacity under that latency: fine-tuning lifts it the most). Each is extracted from the
shipped supernet, BN-recalibrated, scored on the test set, and (`--finetune-steps`, default 300;
`--finetune-lr`) fine-tuned with KD from the supernet and scored again: the exported ones, every
one (`--finetune-all`) or those picked against one device's nets (`--finetune-for DEVICE`). A
fine-tuning is recorded in `results/benchmarks/nas_vs_manual_finetuned.json` (arch, the supernet
weights' SHA-256, steps, lr) and not run again. Both sides are timed together in the same
interleaved passes on every device of the run (the held-out check's protocol, batch 1, the
predictors' statistic), so a slow phase of a shared machine hits both alike.

    python benchmarks/nas_vs_manual.py --train-only     # train the manual nets (resumable, ~1 h on 2 cores)
    bash scripts/main.sh                                # the run whose front is compared
    python benchmarks/nas_vs_manual.py                  # then compare (and train what is missing)
    python benchmarks/nas_vs_manual.py --finetune-steps 4000 --finetune-lr 0.05 --finetune-for ort-cpu \
        --out results/benchmarks/nas_vs_manual_ft4000.json   # the README's headline (~1 h of fine-tuning)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hwnas._io import atomic_write_json
from hwnas.search_space import Space, make_divisible

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "results" / "runs" / "nas_vs_manual"
NETS_JSON = REPO / "results" / "benchmarks" / "nas_vs_manual_nets.json"
# Fine-tuned NAS subnets, keyed by (arch, supernet weights' SHA-256, steps, lr): not fine-tuned again.
FINETUNED_JSON = REPO / "results" / "benchmarks" / "nas_vs_manual_finetuned.json"
WIDTHS = (0.35, 0.5, 0.75, 1.0)
BASE = {"stem": 16, "stages": (16, 24, 40, 80, 96), "depths": (1, 2, 3, 3, 2), "head": 384}
# MobileNetV3-Small (Howard et al. 2019, table 2) folded onto the template's five stages: widths
# 16/24/40/48/96, depths 1/2/3/2/3, kernels 3/3/5/5/5, SE where the paper has it, hard-swish
# from the third stage on, a 576-channel head and a 1,024-wide feature layer. One expand ratio per
# stage (the paper's 4.5 / 3.67 in stage 2 become 4, its 4 / 6 / 6 in stage 3 become 6).
MBV3_SMALL = {"stem": 16, "widths": (16, 24, 40, 48, 96), "depths": (1, 2, 3, 2, 3), "kernels": (3, 3, 5, 5, 5),
              "expands": (1, 4, 6, 3, 6), "se": (True, False, True, True, True),
              "acts": ("relu", "relu", "hswish", "hswish", "hswish"), "head": 576, "features": 1024}


def _one_arch_space(name: str, template: Space, stem: int, stem_act: str, widths: Any, depths: Any, kernels: Any,
                    expands: Any, se: Any, acts: Any, head: dict[str, Any]) -> tuple[Space, str]:
    stages, blocks = [], []
    for i, st in enumerate(template.stages):
        w, d, k, e = widths[i], depths[i], kernels[i], expands[i]
        stages.append({"kinds": ["mb"], "depths": [d], "kernels": [k], "expands": [e], "widths": [w],
                       "stride": st.stride, "se": se[i], "act": acts[i]})
        blocks.append(f"s{i + 1}w{w}:mb_k{k}_e{e}" + (f"x{d}" if d > 1 else ""))
    r = max(template.resolutions)
    space = Space.from_dict({
        "name": name, "in_channels": template.in_channels, "num_classes": template.num_classes,
        "resolutions": [r], "normalization": {"mean": list(template.mean), "std": list(template.std)},
        "stem": {"channels": stem, "kernel": 3, "stride": template.stem.stride, "act": stem_act},
        "stages": stages, "head": head,
    })
    return space, f"r{r}|" + "|".join(blocks)


def manual_space(w: float, template: Space) -> tuple[Space, str]:
    """A one-arch space: MobileNetV2-style blocks at width multiplier w on the template's macro-structure."""
    n = len(template.stages)
    return _one_arch_space(f"mbv2-{w}", template, make_divisible(BASE["stem"] * w), "relu6",
                           [make_divisible(c * w) for c in BASE["stages"]], BASE["depths"], [3] * n,
                           [1] + [6] * (n - 1), [False] * n, ["relu6"] * n,
                           {"expand_channels": make_divisible(BASE["head"] * max(1.0, w)), "act": "relu6", "dropout": 0.1})


def mbv3_small_space(template: Space) -> tuple[Space, str]:
    """A one-arch space: a MobileNetV3-Small-like net on the template's macro-structure (`MBV3_SMALL`)."""
    m = MBV3_SMALL
    return _one_arch_space("mbv3-small", template, m["stem"], "hswish", m["widths"], m["depths"], m["kernels"],
                           m["expands"], m["se"], m["acts"],
                           {"expand_channels": m["head"], "feature_channels": m["features"], "act": "hswish",
                            "dropout": 0.1})


def manual_nets(template: Space, widths: Any = WIDTHS, small: bool = True) -> dict[str, tuple[Space, str]]:
    """The hand-designed family by name: MBv2-<w> for each width, and MBv3-Small-like."""
    nets = {f"MBv2-{w}": manual_space(w, template) for w in widths}
    if small:
        nets["MBv3-Small"] = mbv3_small_space(template)
    return nets


def _rel(p: Path) -> str:
    """`p` relative to the repository when inside it (records stay valid in another clone)."""
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def _net_records() -> list[dict[str, Any]]:
    return json.loads(NETS_JSON.read_text())["nets"] if NETS_JSON.is_file() else []


def train_manual(name: str, space: Space, arch: str, *, steps: int, seed: int, threads: int) -> dict[str, Any]:
    """Train one manual net alone with the from-scratch recipe of the supernet ablation (the same
    trainer, augmentation, optimiser, LR schedule and regularisation a single net gets, for
    `steps`), resuming a stopped run; record its test accuracy in `NETS_JSON`. A net already
    recorded for these steps and seed is not trained again."""
    import yaml
    from hwnas.supernet.train import Trainer
    from supernet_ablation import scratch_config

    for r in _net_records():
        if (r["name"], r["arch"], r["steps"], r["seed"]) == (name, arch, steps, seed):
            print(f"{name}: already trained ({r['steps']} steps, test {100 * r['test_acc']:.2f}%)", flush=True)
            return r
    out = RUNS / f"{name}-s{seed}-{steps}"
    out.mkdir(parents=True, exist_ok=True)
    space_yaml = out / "space.yaml"
    space_yaml.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    cfg = scratch_config(arch, steps, seed, threads, space=str(space_yaml))
    print(f"{name}: training {arch} alone for {steps} steps -> {out}", flush=True)
    res = Trainer(cfg, out, resume=(out / "checkpoint.pt").is_file(), progress=True).fit()
    rec = {"name": name, "arch": arch, "space": space.to_dict(), "steps": res.global_step, "seed": seed,
           "train_seconds": res.train_seconds, "test_acc": res.report["test_acc"]["single"], "run": _rel(out),
           "recipe": cfg.to_dict(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    doc = {"benchmark": "nas_vs_manual_nets", "nets": [r for r in _net_records() if (r["name"], r["steps"], r["seed"])
                                                        != (name, steps, seed)] + [rec]}
    atomic_write_json(NETS_JSON, doc)
    print(f"{name}: {rec['steps']} steps in {rec['train_seconds']:.0f} s, test {100 * rec['test_acc']:.2f}%", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=REPO / "results/runs/fashion-mnist-cpu",
                    help="finished `hwnas run` directory on this machine whose front is compared (default: the main "
                         "job's, `bash scripts/main.sh`); its latency predictors must be this machine's")
    ap.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS), help="MobileNetV2 width multipliers")
    ap.add_argument("--no-small", action="store_true", help="leave out the MobileNetV3-Small-like net")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps of each manual net (default: the shipped supernet's, from its bundle manifest)")
    ap.add_argument("--supernet", default="fmnist-mbv3", help="shipped bundle the run's front is extracted from")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2)")
    ap.add_argument("--train-only", action="store_true", help="train (or resume) the manual nets and stop")
    ap.add_argument("--finetune-steps", type=int, default=300,
                    help="also fine-tune each NAS subnet this many steps (KD from the supernet) and plot both; 0: off")
    ap.add_argument("--finetune-lr", type=float, default=0.01,
                    help="peak learning rate of that fine-tuning, cosine to 0 (default 0.01, `hwnas finetune`'s)")
    ap.add_argument("--finetune-all", action="store_true",
                    help="fine-tune every NAS subnet compared, not only those the run exported (5-8 min each on 2 cores)")
    ap.add_argument("--finetune-for", metavar="DEVICE", default=None,
                    help="fine-tune (only) the NAS subnets picked against the manual nets on DEVICE, instead of the "
                         "exported ones; the others count with their inherited accuracy")
    ap.add_argument("--out", type=Path, default=REPO / "results/benchmarks/nas_vs_manual.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1 <= args.threads <= 256:
        ap.error(f"--threads {args.threads}: choose 1..256")
    if args.steps is not None and not 1 <= args.steps <= 1_000_000:
        ap.error(f"--steps {args.steps}: choose 1..1000000")
    if not 0 <= args.finetune_steps <= 100_000:
        ap.error(f"--finetune-steps {args.finetune_steps}: choose 0..100000")
    if args.finetune_all and args.finetune_for:
        ap.error("--finetune-all and --finetune-for: choose one")
    if not 0 < args.finetune_lr <= 1:
        ap.error(f"--finetune-lr {args.finetune_lr}: choose a learning rate in (0, 1]")
    if any(not 0.1 <= w <= 2.0 for w in args.widths):
        ap.error(f"--widths {args.widths}: each width multiplier must be in 0.1..2.0")
    if not args.train_only and not (args.run / "candidates.csv").is_file():
        ap.error(f"--run {args.run}: no finished main-job run there (candidates.csv missing); run `bash scripts/main.sh` "
                 "first, or pass --train-only")
    if args.finetune_for is not None and not args.train_only:
        run_devices = list(json.loads((args.run / "config.json").read_text()).get("devices") or [])
        if args.finetune_for not in run_devices:
            ap.error(f"--finetune-for {args.finetune_for}: not a device of the run {args.run} "
                     f"(one of {', '.join(run_devices) or 'none'})")

    from hwnas.estimators import load_bundle

    bundle = load_bundle(args.supernet)
    steps = args.steps or int(bundle.manifest["train_report"]["steps"])
    template = Space.preset(bundle.manifest["space"]["name"] if isinstance(bundle.manifest["space"], dict)
                            else bundle.manifest["space"])
    recs = {n: train_manual(n, sp, a, steps=steps, seed=args.seed, threads=args.threads)
            for n, (sp, a) in manual_nets(template, args.widths, not args.no_small).items()}
    if args.train_only:
        return 0
    compare(args, bundle, template, recs, steps)
    return 0


def _load_manual(rec: dict[str, Any]) -> Any:
    """The trained manual net of `rec` as a static module (eval mode) carrying `.resolution`."""
    from hwnas.supernet import load_supernet

    space = Space.from_dict(rec["space"])
    net = load_supernet(REPO / rec["run"], space=space)
    return net.extract(space.parse(rec["arch"])).eval()


def _picks(front: Any, devices: list[str], manual_ms: dict[str, dict[str, float]],
           exported: list[str]) -> tuple[list[str], dict[str, set[str]]]:
    """The NAS side: the run's exported subnets, and on each device, for each manual net, the most
    accurate front member whose *predicted* latency is not above that net's measured one, and the
    slowest such member (the most capacity under that latency; distinct). The second one is there for
    fine-tuning: the inherited-accuracy predictor under-rates the members whose inherited weights
    trail training alone the most. Also returns, per device, the members picked against that device's
    manual nets."""
    archs = list(dict.fromkeys(exported))
    picked: dict[str, set[str]] = {dev: set() for dev in devices}
    for dev in devices:
        lat = [float(x) for x in front.column(f"latency_ms@{dev}")]
        for name, per in manual_ms.items():
            try:
                best = front.pick(f"latency_ms@{dev}<={per[dev]}").arch
            except ValueError:
                print(f"no front member predicted at or under {name}'s {per[dev]:.3f} ms on {dev}", flush=True)
                continue
            # `pick` found a member at or under this latency, so this set is not empty
            slowest = front.archs[max((i for i, x in enumerate(lat) if x <= per[dev]), key=lambda i: lat[i])]
            for a in (best, slowest):
                picked[dev].add(a)
                if a not in archs:
                    archs.append(a)
    return archs, picked


def _finetune_key(r: dict[str, Any]) -> tuple[str, str, int, float]:
    return r["arch"], r["supernet_sha256"], r["steps"], r["lr"]


def _finetuned_records() -> list[dict[str, Any]]:
    return json.loads(FINETUNED_JSON.read_text())["subnets"] if FINETUNED_JSON.is_file() else []


def _finetune_cached(ckpt: Path, arch: str, *, weights_sha: str, steps: int, lr: float, supernet: str, loaders: Any,
                     calib_images: int) -> dict[str, Any]:
    """Fine-tune the exported subnet in `ckpt` (KD from `supernet`) unless a fine-tuning of the same
    arch from the same supernet weights with the same steps and lr is recorded in `FINETUNED_JSON`."""
    from hwnas.supernet.finetune import finetune

    key = (arch, weights_sha, steps, lr)
    for r in _finetuned_records():
        if _finetune_key(r) == key:
            print(f"fine-tuned before ({steps} steps, lr {lr}): {100 * r['accuracy_after']:.2f}%", flush=True)
            return r
    print(f"fine-tuning {arch} {steps} steps (lr {lr})", flush=True)
    ft = finetune(ckpt, steps=steps, lr=lr, supernet=supernet, loaders=loaders, calib_images=calib_images,
                  progress=True, say=lambda m: None)
    rec = {"arch": arch, "supernet": supernet, "supernet_sha256": weights_sha, "steps": ft.steps, "lr": lr, "seed": 0,
           "accuracy_before": ft.accuracy_before, "accuracy_after": ft.accuracy_after, "seconds": ft.seconds,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(FINETUNED_JSON, {"benchmark": "nas_vs_manual_finetuned", "subnets": [
        r for r in _finetuned_records() if _finetune_key(r) != key] + [rec]})
    return rec


def _timings(row: dict[str, Any], devices: list[str]) -> dict[str, dict[str, float]]:
    """A `measure_exports` row as {"latency_ms": {device: statistic}, "latency_median_ms": {...}}."""
    return {"latency_ms": {d: row["devices"][d]["measured_ms"] for d in devices},
            "latency_median_ms": {d: row["devices"][d]["measured_median_ms"] for d in devices}}


def dominance(manual: list[dict[str, Any]], nas: list[dict[str, Any]], devices: list[str],
              finetuned: bool = False) -> list[dict[str, Any]]:
    """Per device and manual net: the best NAS test accuracy among NAS nets measured at or under the
    manual net's latency, and whether it is at least the manual net's accuracy. `finetuned`: a NAS
    net counts with its fine-tuned accuracy where it was fine-tuned (else its inherited one)."""
    def acc(n: dict[str, Any]) -> float:
        ft = n.get("finetuned_test_acc")
        return ft if finetuned and ft is not None else n["test_acc"]

    out = []
    for dev in devices:
        for m in manual:
            ms = m["latency_ms"][dev]
            cands = [acc(n) for n in nas if n["latency_ms"][dev] <= ms]
            best = max(cands, default=None)
            out.append({"device": dev, "manual": m["name"], "manual_acc": m["test_acc"], "manual_ms": ms,
                        "best_nas_acc_at_or_below": best, "nas_dominates": best is not None and best >= m["test_acc"]})
    return out


def compare(args: Any, bundle: Any, template: Space, recs: dict[str, dict[str, Any]], steps: int) -> dict[str, Any]:
    """Time the manual nets, pick the NAS side from the run's front, time both sides together
    (one interleaved protocol, both devices), measure test accuracy (and after fine-tuning), write
    the JSON and the plot."""
    import pandas as pd
    import torch
    from hwnas.data import make_loaders
    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL, measure_exports
    from hwnas.pipeline import final_front, load_run_config
    from hwnas.pipeline.export import export_pick
    from hwnas.supernet import load_supernet

    cfg = load_run_config(None, **json.loads((args.run / "config.json").read_text()))
    devices = list(cfg.devices)
    torch.set_num_threads(args.threads)
    manual_nets_ = {n: _load_manual(r) for n, r in recs.items()}
    print(f"timing the {len(recs)} manual nets on {', '.join(devices)}", flush=True)
    rows = measure_exports([(m, n) for n, m in manual_nets_.items()], devices, protocol=DEFAULT_PROTOCOL, progress=True)
    manual_ms = {n: _timings(r, devices)["latency_ms"] for n, r in zip(manual_nets_, rows)}

    front = final_front(cfg, args.run)
    exported = list(pd.read_csv(args.run / "exported.csv")["arch"]) if (args.run / "exported.csv").is_file() else []
    archs, picked = _picks(front, devices, manual_ms, exported)
    to_finetune = (set(archs) if args.finetune_all else picked[args.finetune_for] if args.finetune_for
                   else set(exported)) if args.finetune_steps else set()
    net = load_supernet(args.supernet)
    with torch.no_grad():
        statics = [net.extract(template.parse(a)).eval() for a in archs]
    print(f"timing {len(recs)} manual nets and {len(archs)} NAS subnets together", flush=True)
    rows = measure_exports([*((m, n) for n, m in manual_nets_.items()), *((s, a) for s, a in zip(statics, archs))],
                           devices, protocol=DEFAULT_PROTOCOL, progress=True)
    man_rows, nas_rows = rows[:len(recs)], rows[len(recs):]

    raw = bundle.manifest["config"]
    loaders = make_loaders(raw["dataset"], raw.get("data_dir"), space=template, seed=int(raw["seed"]),
                           search_val=int(raw["search_val"]), batch_size=int(raw["batch_size"]))
    manual = []
    for (name, rec), row in zip(recs.items(), man_rows):
        manual.append({"name": name, "arch": rec["arch"], "test_acc": rec["test_acc"], "steps": rec["steps"],
                       "train_seconds": rec["train_seconds"], "params": sum(p.numel() for p in manual_nets_[name].parameters()),
                       **_timings(row, devices)})
    nas = []
    work = RUNS / "compare"
    row_of = {a: i for i, a in enumerate(front.archs)}
    pred_cols = {d: front.column(f"latency_ms@{d}") for d in devices}
    for i, (a, static, row) in enumerate(zip(archs, statics, nas_rows)):
        predicted = {d: float(pred_cols[d][row_of[a]]) for d in devices}
        t = _timings(row, devices)
        res = export_pick(supernet=net, space=template, arch=a, out_dir=work / f"nas{i}", devices=devices, loaders=loaders,
                          calib_images=int(raw["calib_images"]), overwrite=True, static=static,
                          latency={d: (t["latency_ms"][d], t["latency_median_ms"][d]) for d in devices})
        rec = {"arch": a, "exported_by_run": a in exported, "test_acc": res["measured"]["accuracy"], **t,
               "predicted_latency_ms": predicted,
               "latency_rel_error": {d: (predicted[d] - t["latency_ms"][d]) / t["latency_ms"][d] for d in devices},
               "params": res["params"], "macs": res["macs"], "finetuned_test_acc": None}
        if a in to_finetune:
            ft = _finetune_cached(work / f"nas{i}", a, weights_sha=bundle.manifest["files"]["supernet.safetensors"],
                                  steps=args.finetune_steps, lr=args.finetune_lr, supernet=args.supernet, loaders=loaders,
                                  calib_images=int(raw["calib_images"]))
            rec.update({"finetuned_test_acc": ft["accuracy_after"], "finetune_steps": ft["steps"],
                        "finetune_lr": ft["lr"], "finetune_seconds": ft["seconds"]})
        nas.append(rec)
        ft_txt = f", fine-tuned {100 * rec['finetuned_test_acc']:.2f}%" if rec["finetuned_test_acc"] is not None else ""
        print(f"NAS {a}: test {100 * rec['test_acc']:.2f}%{ft_txt}  "
              + "  ".join(f"{d} {rec['latency_ms'][d]:.3f} ms (pred {predicted[d]:.3f})" for d in devices), flush=True)
    for m in manual:
        print(f"{m['name']}: test {100 * m['test_acc']:.2f}%  "
              + "  ".join(f"{d} {m['latency_ms'][d]:.3f} ms" for d in devices), flush=True)

    checks = dominance(manual, nas, devices)
    checks_ft = dominance(manual, nas, devices, finetuned=True) if args.finetune_steps else []
    doc = {"benchmark": "nas_vs_manual", "run": _rel(args.run.resolve()),
           "supernet": args.supernet, "devices": devices, "steps_each": steps, "protocol": DEFAULT_PROTOCOL.to_dict(),
           "manual_recipe": next(iter(recs.values()))["recipe"] if recs else None,
           "finetune": {"steps": args.finetune_steps, "lr": args.finetune_lr,
                        "which": "all" if args.finetune_all else f"picked on {args.finetune_for}" if args.finetune_for
                        else "exported"} if args.finetune_steps else None,
           "manual": manual, "nas": nas, "checks": checks, "checks_finetuned": checks_ft,
           "nas_dominates_everywhere": all(c["nas_dominates"] for c in checks),
           "nas_finetuned_dominates_everywhere": all(c["nas_dominates"] for c in checks_ft) if checks_ft else None,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(args.out, doc)
    _plot(manual, nas, devices, args.out.with_suffix(".png"), steps)
    for c in checks + checks_ft:
        print(c)
    print("NAS front dominates the manual family at every latency on every device:", doc["nas_dominates_everywhere"],
          "(fine-tuned:", doc["nas_finetuned_dominates_everywhere"], ")")
    return doc


def _plot(manual: list[dict], nas: list[dict], devices: list[str], path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(devices), figsize=(6 * len(devices), 4.4), squeeze=False)
    for ax, dev in zip(axes[0], devices):
        v2 = sorted((m for m in manual if m["name"].startswith("MBv2")), key=lambda r: r["latency_ms"][dev])
        ax.plot([r["latency_ms"][dev] for r in v2], [100 * r["test_acc"] for r in v2], "s--", color="tab:gray",
                label="MobileNetV2 family, trained alone")
        for r in manual:
            ax.annotate(r["name"], (r["latency_ms"][dev], 100 * r["test_acc"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
        small = [m for m in manual if not m["name"].startswith("MBv2")]
        if small:
            ax.plot([r["latency_ms"][dev] for r in small], [100 * r["test_acc"] for r in small], "D", color="tab:brown",
                    label="MobileNetV3-Small-like, trained alone")
        n = sorted(nas, key=lambda r: r["latency_ms"][dev])
        ax.plot([r["latency_ms"][dev] for r in n], [100 * r["test_acc"] for r in n], "o-", color="tab:blue",
                label="hwnas front (inherited weights)")
        ft = [r for r in n if r.get("finetuned_test_acc") is not None]
        if ft:
            ax.plot([r["latency_ms"][dev] for r in ft], [100 * r["finetuned_test_acc"] for r in ft], "^-", color="tab:green",
                    label=f"hwnas front, fine-tuned {ft[0]['finetune_steps']} steps")
        ex = [r for r in n if r.get("exported_by_run")]
        ax.plot([r["latency_ms"][dev] for r in ex], [100 * r["test_acc"] for r in ex], "o", mfc="none", mec="k", ms=10,
                label="exported by the main job")
        ax.set_xlabel(f"measured latency on {dev}, batch 1 (ms)")
        ax.set_ylabel("Fashion-MNIST test accuracy (%)")
        ax.set_title(f"{dev}: NAS front vs hand-designed nets ({steps} training steps each)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
