"""Supernet recipe ablation: which training switches make inherited subnets as good as trained alone?

Each `--variant` is the `default` schedule of configs/fmnist.yaml with a few trainer switches
changed (the table `VARIANTS` below), trained for the same number of steps (`--steps`, default
1,000 x 128 images) so the variants see the same data; each run's wall clock is recorded beside it.
After training, 25 subnets are scored through the supernet with BN recalibrated: 5 fixed ones
(min, max, and 3 spread evenly by MACs between them) on the test set and on search-val, and 20
fixed random ones on search-val.

`--scratch` instead trains those subnets alone (policy `single`, the same trainer and recipe a
single net gets: SGD + Nesterov, cosine LR, label smoothing, weight decay, zero-init residual BN,
the same steps and batches) and records their accuracies; `--table` joins the two into the
ablation table (inherited vs from scratch for the 5 fixed subnets, Spearman / Kendall of inherited
vs from-scratch over every subnet with both, wall clock) in JSON and Markdown.

    python benchmarks/supernet_ablation.py --variant bignas --seed 0
    python benchmarks/supernet_ablation.py --scratch --subnets fixed        # the 5 fixed subnets
    python benchmarks/supernet_ablation.py --scratch --subnets random       # the 20 random ones
    python benchmarks/supernet_ablation.py --table

Results accumulate in `results/benchmarks/supernet_ablation.json` (one record per run, so the set
can be run piece by piece); runs are written under `results/runs/ablation/` (not committed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "results" / "benchmarks" / "supernet_ablation.json"
RUNS = REPO / "results" / "runs" / "ablation"

_BIGNAS = {"policy": "sandwich", "zero_init_residual_bn": True, "regularize_max_only": True, "min_lr_ratio": 0.05}
VARIANTS: dict[str, dict[str, Any]] = {
    "deps": {"policy": "deps"},  # the default before this ablation
    "sandwich": {"policy": "sandwich"},  # sandwich rule + in-place KL distillation
    "bignas": dict(_BIGNAS),  # + zero-init residual BN, max-only regularisation, LR floor 5%
    "bignas-alpha": {**_BIGNAS, "kd": "alpha"},  # + AlphaNet's alpha-divergence
    "bignas-worst": {**_BIGNAS, "attentive": "worst", "attentive_pool": 3},  # + AttentiveNAS WorstUp
    "bignas-ema": {**_BIGNAS, "ema_decay": 0.998},  # + an EMA of the weights
    "bignas-r2": {**_BIGNAS, "num_random": 2},  # + a second random subnet per step
    "bignas-r3": {**_BIGNAS, "num_random": 3},  # + three random subnets per step (the middle of the space)
    "bignas-r2-alpha": {**_BIGNAS, "num_random": 2, "kd": "alpha"},  # bignas-r2 with AlphaNet's alpha-divergence
    "bignas-r2-sepk": {**_BIGNAS, "num_random": 2, "kernel_sharing": "separate"},  # bignas-r2, one weight per kernel size
    "progressive": {"policy": "progressive"},  # Once-for-All progressive shrinking with KD
}
# What a single net gets when trained alone: the same optimiser, schedule and regularisation.
SCRATCH = {"policy": "single", "zero_init_residual_bn": True, "min_lr_ratio": 0.0}


def fixed_subnets(space: Any) -> dict[str, Any]:
    """min, max and the 3 archs at 25/50/75% of the MAC range: the bundles' 5 fixed subnets."""
    from hwnas.estimators.bundle import fixed_subnets as bundle_fixed

    return bundle_fixed(space)


def random_subnets(space: Any, n: int = 20, seed: int = 777) -> dict[str, Any]:
    return {f"rand{i:02d}": a for i, a in enumerate(space.sample_many(n, seed, unique=True))}


def scratch_config(arch: str, steps: int, seed: int, threads: int = 2, **overrides: Any) -> Any:
    """The train config of one net trained alone for `steps` (the `SCRATCH` recipe on the
    `default` schedule's data, augmentation and optimiser), `overrides` on top (e.g. `space`)."""
    return _config({**SCRATCH, "single_arch": arch, **overrides}, steps, seed, threads)


def _config(overrides: dict[str, Any], steps: int, seed: int, threads: int = 2) -> Any:
    from hwnas.supernet.train import load_config

    base = load_config(REPO / "configs" / "fmnist.yaml", schedule="default")
    # Each variant states its whole recipe: start from the trainer's plain switches, not from the
    # BigNAS recipe the `default` schedule now carries.
    base = base.replace(policy="deps", zero_init_residual_bn=False, regularize_max_only=False, min_lr_ratio=0.0)
    spe = 430  # one pass over the 55k training split holds 430 batches of 128
    epochs = max(1, -(-steps // spe))
    return base.replace(**overrides, epochs=epochs, steps_per_epoch=-(-steps // epochs), seed=seed,
                        schedule=f"ablation-{steps}", report_random=0, threads=threads,
                        deps_ramp_epochs=base.deps_ramp_epochs * epochs / base.epochs)


def _score(net: Any, archs: dict[str, Any], loaders: Any, calib: Any, *, test: bool) -> dict[str, dict[str, float]]:
    from hwnas.supernet.bn import evaluate

    out: dict[str, dict[str, float]] = {}
    for name, a in archs.items():
        rec = {"val": evaluate(net, a, loaders.val, calib=calib, num_calib=len(calib))}
        if test:
            rec["test"] = evaluate(net, a, loaders.test, calib=calib, num_calib=len(calib))
        out[name] = rec
    return out


def _append(rec: dict[str, Any]) -> None:
    from hwnas._io import atomic_write_json

    doc = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {"benchmark": "supernet_ablation", "runs": []}
    doc["runs"].append(rec)
    atomic_write_json(OUT_JSON, doc)


def _score_supernet(net: Any, dataset: str, data_dir: Any, seed: int, search_val: int,
                    calib_images: int) -> tuple[dict[str, dict[str, Any]], float, str]:
    """The ablation's 25 subnets scored through `net` with BN recalibrated on `calib_images` of the
    split `seed` makes: the 5 fixed ones on test and search-val, the 20 random ones on search-val.
    Returns (a record's `subnets`, the seconds it took, the fixed subnets' test accuracies as text)."""
    from hwnas.data import make_loaders
    from hwnas.estimators import arch_macs

    space = net.space
    loaders = make_loaders(dataset, data_dir, space=space, seed=seed, search_val=search_val)
    calib = loaders.calib_images(calib_images)
    t0 = time.perf_counter()
    fixed, rand = fixed_subnets(space), random_subnets(space)
    scores = {**_score(net, fixed, loaders, calib, test=True), **_score(net, rand, loaders, calib, test=False)}
    subnets = {k: {"arch": str(a), "macs": arch_macs(space, a), **scores[k]} for k, a in {**fixed, **rand}.items()}
    return subnets, time.perf_counter() - t0, " ".join(f"{k} {100 * scores[k]['test']:.2f}" for k in fixed)


def run_variant(name: str, steps: int, seed: int, threads: int = 2) -> dict[str, Any]:
    from hwnas.supernet import load_supernet
    from hwnas.supernet.train import train

    cfg = _config(VARIANTS[name], steps, seed, threads)
    out = RUNS / f"{name}-s{seed}-{steps}"
    res = train(cfg, out, resume=(out / "checkpoint.pt").is_file(), progress=True)
    subnets, eval_s, fx = _score_supernet(load_supernet(out), cfg.dataset, cfg.data_dir, cfg.seed, cfg.search_val,
                                          cfg.calib_images)
    rec = {"kind": "variant", "variant": name, "overrides": VARIANTS[name], "seed": seed, "steps": res.global_step,
           "train_seconds": res.train_seconds, "eval_seconds": eval_s, "subnets": subnets,
           "config": cfg.to_dict(), "machine": platform.processor() or platform.machine(),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _append(rec)
    print(f"{name} seed {seed}: {res.global_step} steps in {res.train_seconds:.0f} s; test: {fx}", flush=True)
    return rec


def score_bundle(name: str) -> dict[str, Any]:
    """The shipped supernet of `name` (a bundle, hashes verified) scored like a variant: the 5 fixed
    subnets on test and search-val, the 20 random ones on search-val (BN recalibrated), recorded
    with its training steps so `--table` joins it with the scratch runs of as many steps."""
    from hwnas.estimators import load_bundle
    from hwnas.supernet import load_supernet

    b = load_bundle(name)
    raw, rep = b.manifest["config"], b.manifest["train_report"]
    steps = int(rep["steps"])
    subnets, eval_s, fx = _score_supernet(load_supernet(name), raw["dataset"], raw.get("data_dir"), int(raw["seed"]),
                                          int(raw["search_val"]), int(raw["calib_images"]))
    rec = {"kind": "variant", "variant": f"shipped:{name}", "overrides": {}, "seed": int(raw["seed"]), "steps": steps,
           "train_seconds": float(rep["train_seconds"]), "eval_seconds": eval_s, "subnets": subnets,
           "config": raw, "bundle_sha256": b.manifest.get("files"), "machine": platform.processor() or platform.machine(),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _append(rec)
    print(f"shipped {name}: {steps} steps; test: {fx}", flush=True)
    return rec


def run_scratch(which: str, steps: int, seed: int, threads: int = 2, only: list[str] | None = None) -> list[dict[str, Any]]:
    from hwnas.data import make_loaders
    from hwnas.search_space import Space
    from hwnas.supernet.bn import evaluate
    from hwnas.supernet.train import Trainer

    space = Space.preset("fmnist-mbv3")
    archs = fixed_subnets(space) if which == "fixed" else random_subnets(space)
    if only:
        unknown = [n for n in only if n not in archs]
        if unknown:
            raise SystemExit(f"--only {','.join(unknown)}: not among the {which} subnets; allowed: {', '.join(archs)}")
        archs = {n: archs[n] for n in only}  # in the order given
    done = {(r["arch"], r["steps"], r["seed"]) for r in _records("scratch")}
    recs = []
    for name, a in archs.items():
        if (str(a), steps, seed) in done:
            print(f"scratch {name}: already measured", flush=True)
            continue
        cfg = scratch_config(str(a), steps, seed, threads)
        out = RUNS / f"scratch-{name}-s{seed}-{steps}"
        res = Trainer(cfg, out, resume=(out / "checkpoint.pt").is_file(), progress=False).fit()
        net = res.model
        loaders = make_loaders(cfg.dataset, cfg.data_dir, space=space, seed=cfg.seed, search_val=cfg.search_val)
        calib = loaders.calib_images(cfg.calib_images)
        val = evaluate(net, a, loaders.val, calib=calib, num_calib=len(calib))
        rec = {"kind": "scratch", "name": name, "arch": str(a), "seed": seed, "steps": res.global_step,
               "train_seconds": res.train_seconds, "val": val, "test": res.report["test_acc"]["single"],
               "overrides": SCRATCH, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _append(rec)
        recs.append(rec)
        print(f"scratch {name}: {res.global_step} steps {res.train_seconds:.0f} s  test {100 * rec['test']:.2f}%  "
              f"val {100 * val:.2f}%  {a}", flush=True)
    return recs


def _records(kind: str, path: Path | None = None) -> list[dict[str, Any]]:
    path = OUT_JSON if path is None else path
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text())["runs"] if r["kind"] == kind]


FIXED = ("min", "macs25", "macs50", "macs75", "max")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _row(variant: str, seeds: list[int], steps: int, train_seconds: float, subnets: dict[str, dict[str, Any]],
         scratch_of: Any) -> dict[str, Any]:
    """One table row: `subnets` name -> {arch, val, test?} (inherited); `scratch_of(arch, field)` the
    from-scratch figure the row compares with (None when that subnet was not trained alone)."""
    from scipy.stats import kendalltau, spearmanr

    fixed, pairs = {}, []
    for name, s in subnets.items():
        sc_val = scratch_of(s["arch"], "val")
        if sc_val is not None:
            pairs.append((s["val"], sc_val))
        if s.get("test") is not None:
            sc_test = scratch_of(s["arch"], "test")
            fixed[name] = {"inherited": s["test"], "scratch": sc_test,
                           "gap": None if sc_test is None else 100 * (s["test"] - sc_test)}
    rho = tau = None
    if len(pairs) >= 5:  # a rank correlation over fewer subnets says little
        rho = float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs])[0])
        tau = float(kendalltau([p[0] for p in pairs], [p[1] for p in pairs])[0])
    return {"variant": variant, "seed": seeds[0] if len(seeds) == 1 else seeds, "steps": steps,
            "train_seconds": train_seconds, "fixed": fixed, "spearman": rho, "kendall": tau,
            "ranked_subnets": len(pairs)}


# Config fields that name or place a run without changing what it trains.
_RUN_ONLY = ("schedule", "report_random", "report_test_images", "steps_per_epoch", "threads", "seed", "data_dir")


def _recipe(v: dict[str, Any]) -> str:
    """What a variant record trains, as a key: its config without the run-only fields (so the shipped
    bundle's row and the same recipe's ablation run of another seed average together); records
    without a config (older ones) fall back to the variant's name."""
    cfg = v.get("config")
    if not isinstance(cfg, dict):
        return f"name:{v['variant']}"
    return json.dumps({k: val for k, val in cfg.items() if k not in _RUN_ONLY}, sort_keys=True, default=str)


def table(path: Path | None = None, *, write: bool = True) -> dict[str, Any]:
    """Join variants and scratch runs of the same steps: the ablation table (JSON + Markdown).

    A variant row compares with the scratch runs of its own seed (the same data split and batches),
    or, where a subnet has none of that seed, with the mean over the seeds it has. A recipe trained
    with several seeds at the same steps (the same config but for run-only fields, whatever the rows
    are called: the shipped bundle is `bignas` at seed 0) also gets a `mean of N seeds` row: inherited
    and scratch each averaged over the seeds that have both, the gap of the two means (the issue's
    goal is on it).
    """
    scratch: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for r in _records("scratch", path):
        scratch.setdefault((r["arch"], r["steps"]), {})[r["seed"]] = r  # the latest run of a seed counts

    def of_seed(steps: int, seed: int) -> Any:
        def get(arch: str, field: str) -> float | None:
            runs = scratch.get((arch, steps), {})
            if seed in runs:
                return runs[seed][field]
            return _mean([r[field] for r in runs.values()])
        return get

    variants = _records("variant", path)
    rows = [_row(v["variant"], [v["seed"]], v["steps"], v["train_seconds"], v["subnets"], of_seed(v["steps"], v["seed"]))
            for v in variants]
    groups: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    names: dict[tuple[str, int], list[str]] = {}
    for v in variants:
        key = (_recipe(v), v["steps"])
        groups.setdefault(key, {})[v["seed"]] = v
        if v["variant"] not in names.setdefault(key, []):
            names[key].append(v["variant"])
    for (recipe, steps), by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        name = " = ".join(names[(recipe, steps)])
        seeds = sorted(by_seed)
        both = [sd for sd in seeds if all(scratch.get((by_seed[sd]["subnets"][k]["arch"], steps), {}).get(sd)
                                          for k in FIXED if k in by_seed[sd]["subnets"])]
        use = both if len(both) >= 2 else seeds
        ref = by_seed[use[0]]["subnets"]
        subnets = {}
        for k, s in ref.items():
            per = [by_seed[sd]["subnets"].get(k) for sd in use]
            if any(p is None or p["arch"] != s["arch"] for p in per):
                continue
            rec = {"arch": s["arch"], "val": _mean([p["val"] for p in per])}
            if all(p.get("test") is not None for p in per):
                rec["test"] = _mean([p["test"] for p in per])
            subnets[k] = rec

        def mean_scratch(arch: str, field: str, _use: list[int] = use, _steps: int = steps) -> float | None:
            runs = scratch.get((arch, _steps), {})
            vals = [runs[sd][field] for sd in _use if sd in runs]
            return _mean(vals) if len(vals) == len(_use) else None

        rows.append(_row(f"{name} (mean of {len(use)} seeds)", use, steps,
                         _mean([by_seed[sd]["train_seconds"] for sd in use]), subnets, mean_scratch))
    doc = {"rows": rows}
    lines = ["| variant | seed | steps | train s | " + " | ".join(FIXED) + " | Spearman (n) | Kendall |",
             "|---" * 11 + "|"]
    for r in rows:
        cells = []
        for k in FIXED:
            f = r["fixed"].get(k)
            if f is None:
                cells.append("")
            elif f["scratch"] is None:
                cells.append(f"{100 * f['inherited']:.2f}")
            else:
                cells.append(f"{100 * f['inherited']:.2f} / {100 * f['scratch']:.2f} ({f['gap']:+.2f})")
        rho = "" if r["spearman"] is None else f"{r['spearman']:.2f} ({r['ranked_subnets']})"
        tau = "" if r["kendall"] is None else f"{r['kendall']:.2f}"
        seed = r["seed"] if isinstance(r["seed"], int) else ",".join(map(str, r["seed"]))
        lines.append(f"| {r['variant']} | {seed} | {r['steps']} | {r['train_seconds']:.0f} | " + " | ".join(cells)
                     + f" | {rho} | {tau} |")
    md = "\n".join(lines) + "\n"
    doc["markdown"] = md
    if write:
        from hwnas._io import atomic_write_json, atomic_write_text

        atomic_write_json(OUT_JSON.with_name("supernet_ablation_table.json"), {"rows": rows})
        atomic_write_text(OUT_JSON.with_name("supernet_ablation_table.md"), md)
        print(md)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), action="append", default=None,
                    help="trainer switches to train with (repeat for several, run one after the other)")
    ap.add_argument("--scratch", action="store_true", help="train the fixed or random subnets alone instead")
    ap.add_argument("--subnets", choices=("fixed", "random"), default="fixed", help="with --scratch: which subnets")
    ap.add_argument("--only", default=None, metavar="NAME,NAME",
                    help="with --scratch: train only these subnets, in this order (e.g. macs25,min)")
    ap.add_argument("--steps", type=int, default=1000, help="training steps of 128 images (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (default 2; 1 is faster when another job shares the cores; "
                         "accuracies do not depend on it)")
    ap.add_argument("--score-bundle", default=None, metavar="NAME",
                    help="score a shipped bundle's supernet (e.g. fmnist-mbv3) on the 25 subnets, as a variant row "
                         "with its training steps (joined with the scratch runs of as many steps)")
    ap.add_argument("--table", action="store_true", help="write the ablation table from the runs so far")
    args = ap.parse_args(argv)
    if not 1 <= args.threads <= 256:
        ap.error(f"--threads {args.threads}: choose 1..256")
    if not 1 <= args.steps <= 1_000_000:
        ap.error(f"--steps {args.steps}: choose 1..1000000")
    if args.score_bundle:
        score_bundle(args.score_bundle)
    if args.scratch:
        run_scratch(args.subnets, args.steps, args.seed, args.threads,
                    [n for n in args.only.split(",") if n] if args.only else None)
    for v in args.variant or []:
        run_variant(v, args.steps, args.seed, args.threads)
    if args.table or not (args.scratch or args.variant or args.score_bundle):
        table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
