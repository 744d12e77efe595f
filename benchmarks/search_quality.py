"""Search quality: hypervolume vs trials for evo, NSGA-II, TPE and random, against the best known front.

The reference front is the best known one: the union of a large random sweep of the same objective
and every point any sampler found over all seeds at its largest budget. Every search's first N
trials are a subset of that union, so no sampler scores above 1.0 (a sweep alone is not the true
front: TPE once scored 1.036 of a 50,000-arch sweep). Hypervolumes are computed on objectives
scaled by the union's feasible min/max (reference point 1.1 in every scaled minimisation axis) and
reported as a fraction of the reference front's. Each run also reports its share of distinct archs.

The objectives come from any registered objective provider. Without trained latency / accuracy
predictors the default is the analytic `flops` provider with objectives `flops` (min) and
`params:max` (capacity as an honest stand-in for accuracy); say so when quoting the figures.
The summary's `best_by_budget` is what `--sampler auto` (searchers/_auto.py) should pick.

    python benchmarks/search_quality.py                          # full run (long: 5 seeds to 3,000 trials)
    python benchmarks/search_quality.py --quick                  # a check that it runs (~1 min)
    python benchmarks/search_quality.py --run results/runs/fashion-mnist-cpu \
        --objectives accuracy,latency_ms@cpu --out results/benchmarks/search_quality_predictors
        # the main job's trained predictors (accuracy predictor, cpu latency predictor) as objectives
    python benchmarks/search_quality.py --space ofa-mbv3 --help-latency titan_rtx_64_ms \
        --objectives macs:max,latency_ms@titan_rtx_64 --out results/benchmarks/search_quality_ofa
        # Once-for-All's space: MACs against a GPU's latency, predicted by a log-ridge model fitted on
        # the subnets HELP measured on that GPU (../shared/datasets/help-latency/)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

# --quick: small enough to check the script end to end, too small to quote.
QUICK = {"seeds": 2, "trials": "50,100,200", "sweep": 3000, "tpe_max": 200}
MODEL_BASED = ("tpe", "gp", "evo-gp", "evo-hvi")  # run to --model-max trials only
GOALS = {"300": 0.97, "1000": 0.99}  # best sampler's mean share of the reference hypervolume
DISTINCT_GOAL = 0.99  # distinct archs / trials of every run
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's HELP-table helpers
from fewshot_latency import HELP_DATA, ofa_table_archs, with_resolution  # noqa: E402


class HelpLatencyObjective:
    """`macs`, `params` (closed forms) and `latency_ms@<gpu>`: a GPU's latency of an
    `ofa-mbv3` subnet, predicted by a ridge model in log space (`AdditiveLatencyModel`) on the
    arch encoding and the encoding x (resolution / 224)^2, fitted on `fit_rows` of the subnets HELP
    measured on that GPU (`ofa_mbv3_gpu_latency.csv`); the other rows are held out and their rank
    correlation and share within +-10% are kept in `holdout` (reported with the figures).
    """

    def __init__(self, space, csv: Path, column: str, fit_rows: int = 4000):
        import pandas as pd
        from hwnas.estimators.fewshot import AdditiveLatencyModel
        from hwnas.estimators.latency import spearman, within
        from hwnas.searchers import make_objective

        if space.name != "ofa-mbv3":
            raise SystemExit(f"--help-latency: HELP measured subnets of ofa-mbv3, not of {space.name!r} (use --space ofa-mbv3)")
        if not csv.is_file():
            raise SystemExit(f"--help-latency: {csv} not found (pass --help-data DIR, the folder of ofa_mbv3_gpu_latency.csv)")
        df = pd.read_csv(csv)
        cols = [c for c in df.columns if c.endswith("_ms")]
        if column not in cols:
            raise SystemExit(f"--help-latency {column!r}: not a column of {csv.name}; choose one of {cols}")
        if not 100 <= fit_rows < len(df):
            raise SystemExit(f"--help-fit-rows {fit_rows}: choose 100..{len(df) - 1} (the table has {len(df)} rows)")
        self.space, self.column = space, column
        self.metric = "latency_ms@" + column[: -len("_ms")]
        archs = ofa_table_archs(space, df)
        X, y = self.features(archs), df[column].to_numpy(float)
        perm = np.random.default_rng(0).permutation(len(df))
        fit, hold = perm[:fit_rows], perm[fit_rows:]
        self.model = AdditiveLatencyModel.fit(X[fit], y[fit])
        pred = self.model.predict(X[hold])
        self.holdout = {"rows": int(len(hold)), "fit_rows": int(fit_rows), "spearman": spearman(pred, y[hold]),
                        "within_10pct": within(pred, y[hold]),
                        "median_abs_rel_error": float(np.median(np.abs(pred / y[hold] - 1)))}
        self.cost = make_objective(space, "macs")

    def features(self, archs) -> np.ndarray:
        return with_resolution(self.space.encode_many(archs).astype(np.float64), archs)

    def predict_many(self, archs) -> list[dict[str, float]]:
        archs = list(archs)
        lat = self.model.predict(self.features(archs))
        return [{**c, self.metric: float(v)} for c, v in zip(self.cost.predict_many(archs), lat)]

    def __call__(self, arch) -> dict[str, float]:
        return self.predict_many([arch])[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--provider", default="flops", help="objective provider(s) (default flops)")
    ap.add_argument("--objectives", default="flops,params:max")
    ap.add_argument("--budget", action="append", default=[])
    ap.add_argument("--samplers", default="evo,evo-gp,evo-hvi,nsga2,tpe,random")
    ap.add_argument("--trials", default="100,300,1000,3000", help="checkpoints (hypervolume of the first N trials)")
    ap.add_argument("--model-max", "--tpe-max", dest="tpe_max", type=int, default=1000,
                    help=f"the model-based samplers ({', '.join(MODEL_BASED)}) cost more per trial as the study "
                         "grows: their largest checkpoint (default 1000)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sweep", type=int, default=100_000, help="random archs in the reference sweep")
    ap.add_argument("--out", default=None, help="output path without suffix (default results/benchmarks/search_quality"
                    ", or search_quality_quick with --quick)")
    ap.add_argument("--quick", action="store_true", help=f"a short check that the benchmark runs: {QUICK}")
    ap.add_argument("--run", default=None, help="a main-job run directory: its trained predictors (accuracy, latency "
                    "per device, memory, energy) are the objectives, as `hwnas run` searches them (overrides --provider)")
    ap.add_argument("--supernet", default=None, help="a bundle (path or shipped name, e.g. fmnist-mbv3) or run "
                    "directory: its accuracy predictor, with each --profile's latency predictor, as `hwnas search "
                    "--supernet ... --profile ...` searches them (overrides --provider)")
    ap.add_argument("--profile", action="append", default=[], help="with --supernet: a device's profile directory "
                    "(repeat per device)")
    ap.add_argument("--help-latency", default=None, metavar="COLUMN",
                    help="with --space ofa-mbv3: add latency_ms@<gpu> from a model fitted on that column of HELP's "
                         "measured table (e.g. titan_rtx_64_ms; overrides --provider, keeps macs and params)")
    ap.add_argument("--help-data", default=str(HELP_DATA), help="folder of ofa_mbv3_gpu_latency.csv (default %(default)s)")
    ap.add_argument("--help-fit-rows", type=int, default=4000, help="table rows the latency model is fitted on; the "
                    "rest are held out to report its quality (default 4000)")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON at --out")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.sweep, args.tpe_max = QUICK["seeds"], QUICK["trials"], QUICK["sweep"], QUICK["tpe_max"]
    args.out = args.out or ("results/benchmarks/search_quality_quick" if args.quick else "results/benchmarks/search_quality")
    if args.replot:
        doc = json.loads(Path(args.out).with_suffix(".json").read_text())
        _plot(doc, Path(args.out))
        return 0

    from hwnas.search_space import Space
    from hwnas.searchers import ParetoFront, make_objective, parse_objectives, search
    from hwnas.searchers.pareto import hypervolume, nondominated_mask
    if args.run:
        from hwnas._io import read_json
        from hwnas.pipeline import search_objective

        run_dir = Path(args.run)
        cfg = read_json(run_dir / "config.json")
        space = Space.preset(cfg["space"])
        fn = search_objective(space, run_dir, cfg["devices"])
        args.provider = f"predictors of {run_dir}"
    elif args.supernet:
        from hwnas.pipeline.search import predictors_objective

        space = Space.preset(args.space)
        fn = predictors_objective(space, args.supernet, args.profile)
        args.provider = f"predictors: accuracy of {args.supernet}, latency of {', '.join(args.profile)}"
    elif args.help_latency:
        space = Space.preset(args.space)
        fn = HelpLatencyObjective(space, Path(args.help_data) / "ofa_mbv3_gpu_latency.csv", args.help_latency,
                                  args.help_fit_rows)
        args.provider = (f"macs + {fn.metric}: log-ridge on HELP's {args.help_latency} "
                         f"(held-out Spearman {fn.holdout['spearman']:.3f})")
        print(f"latency model: {args.help_latency}, held-out {fn.holdout}", flush=True)
    else:
        space = Space.preset(args.space)
        fn = make_objective(space, args.provider)
    objs = parse_objectives(args.objectives)
    checkpoints = sorted(int(x) for x in args.trials.split(","))

    # ---- random sweep --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    rng = np.random.default_rng(12345)
    archs = space.sample_many(args.sweep, rng)
    from hwnas.searchers._objectives import evaluate_many

    rows = [r for i in range(0, len(archs), 5000) for r in evaluate_many(fn, archs[i:i + 5000])]
    sweep_s = time.perf_counter() - t0
    sweep = ParetoFront.build(objectives=objs, archs=[str(a) for a in archs],
                              metrics={k: [r[k] for r in rows] for k in rows[0]}, budgets=args.budget)
    F_sweep = sweep.F()[sweep.feasible()]
    F_sweep = F_sweep[nondominated_mask(F_sweep)]
    print(f"sweep: {args.sweep} random archs in {sweep_s:.1f}s, front {len(F_sweep)}", flush=True)

    # ---- searches: every run's feasible points in trial order, kept until the reference is known ----
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # sampler -> per seed (F in minimisation, feasible)
    timings: dict[str, list[float]] = {}
    distinct: dict[str, list[float]] = {}
    n_max_of: dict[str, int] = {}
    for sampler in args.samplers.split(","):
        n_max = max(checkpoints) if sampler not in MODEL_BASED else min(max(checkpoints), args.tpe_max)
        n_max_of[sampler] = n_max
        runs[sampler], timings[sampler], distinct[sampler] = [], [], []
        for seed in range(args.seeds):
            t = time.perf_counter()
            study = search(space, fn, objectives=objs, budgets=args.budget, n_trials=n_max, sampler=sampler, seed=seed)
            timings[sampler].append(time.perf_counter() - t)
            front = ParetoFront.from_study(study)
            order = np.argsort(front.trials)
            runs[sampler].append((front.F()[order], front.feasible()[order]))
            distinct[sampler].append(len(set(front.archs)) / max(len(front), 1))
            print(f"{sampler} seed {seed}: {n_max} trials in {timings[sampler][-1]:.1f}s, "
                  f"distinct {distinct[sampler][-1]:.3f}", flush=True)

    # ---- the reference: sweep front + every run's feasible points, non-dominated -----------------------
    found = [F[feas] for rs in runs.values() for F, feas in rs]
    union = np.concatenate([F_sweep, *found]) if found else F_sweep
    ref_F = union[nondominated_mask(union)]
    lo, hi = union.min(axis=0), union.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref_point = np.full(len(objs), 1.1)

    def hv_of(F: np.ndarray) -> float:
        return hypervolume((F - lo) / span, ref_point) if len(F) else 0.0

    hv_ref = hv_of(ref_F)
    hv_sweep = hv_of(F_sweep)
    in_sweep = {tuple(p) for p in F_sweep.tolist()}
    from_sweep = sum(tuple(p) in in_sweep for p in ref_F.tolist())
    print(f"reference: front {len(ref_F)} ({from_sweep} from the sweep), hv {hv_ref:.4f} "
          f"(sweep alone {hv_sweep / hv_ref:.4f})", flush=True)

    results: dict[str, dict[int, list[float]]] = {}
    for sampler, rs in runs.items():
        results[sampler] = {n: [] for n in checkpoints if n <= n_max_of[sampler]}
        for F, feas in rs:
            for n in results[sampler]:
                Fn = F[:n][feas[:n]]
                results[sampler][n].append(hv_of(Fn[nondominated_mask(Fn)]) / hv_ref if len(Fn) else 0.0)
        print(f"{sampler}: " + ", ".join(f"{n}: {np.mean(v):.4f}" for n, v in results[sampler].items()), flush=True)

    summary = {
        s: {str(n): {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)), "per_seed": v}
            for n, v in r.items()} for s, r in results.items()
    }
    best_by_budget = {}
    for n in checkpoints:
        cands = [(summary[s][str(n)]["mean"], s) for s in summary if str(n) in summary[s]]
        if cands:
            mean, s = max(cands)
            best_by_budget[str(n)] = {"sampler": s, "mean": mean}
    goals = {n: {"goal": g, **best_by_budget[n], "goal_met": best_by_budget[n]["mean"] >= g}
             for n, g in GOALS.items() if n in best_by_budget}
    doc = {
        "benchmark": "search_quality",
        "space": space.name, "provider": args.provider, "objectives": [o.spec() for o in objs],
        "budgets": args.budget, "seeds": args.seeds, "checkpoints": checkpoints, "tpe_max": args.tpe_max,
        "quick": args.quick,
        "latency_model": getattr(fn, "holdout", None),
        "reference": {"sweep": args.sweep, "hv": hv_ref, "front_size": int(len(ref_F)), "front_from_sweep": from_sweep,
                      "sweep_hv_fraction": hv_sweep / hv_ref,
                      "what": "non-dominated union of the random sweep and every run's feasible points",
                      "scaling": {"lo": lo.tolist(), "hi": hi.tolist()}, "ref_point_scaled": ref_point.tolist()},
        "hv_fraction_of_reference": summary,
        "distinct_arch_fraction": {s: {"mean": float(np.mean(v)), "min": float(np.min(v))} for s, v in distinct.items()},
        "search_seconds_per_run": {s: float(np.mean(v)) for s, v in timings.items()},
        "best_by_budget": best_by_budget,
        "goals": goals,
        "distinct_goal": {"goal": DISTINCT_GOAL, "met_by": sorted(s for s, v in distinct.items() if min(v) >= DISTINCT_GOAL)},
        "note": "objectives: " + args.provider + ("; params:max / macs:max stand in for accuracy"
                                                   if not args.run else ""),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    from hwnas._io import atomic_write_json

    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), doc)
    _plot(doc, out)
    print(json.dumps({"best_by_budget": best_by_budget, "goals": goals}), "->", out.with_suffix(".json"))
    return 0


def _plot(doc: dict, out: Path) -> None:
    from hwnas.searchers.plots import draw_hv_curves, hv_curve_record

    results = {s: {int(n): v["per_seed"] for n, v in r.items()} for s, r in doc["hv_fraction_of_reference"].items()}
    rec = hv_curve_record(results, reference=1.0, ylabel="hypervolume / best-known-front hypervolume")
    title = (f"{doc['space']}: {', '.join(doc['objectives'])} ({doc['seeds']} seeds, mean ± std); "
             f"reference = {doc['reference']['sweep']:,} random archs + every front found")
    draw_hv_curves(rec, out.with_suffix(".png"), title=title)


if __name__ == "__main__":
    sys.exit(main())
