"""Search quality: hypervolume vs trials for NSGA-II, TPE and random on a space, against a reference front.

The reference front comes from a large random sweep of the same objective; hypervolumes are
computed on objectives scaled by the sweep's min/max (reference point 1.1 in every scaled
minimisation axis), and reported as a fraction of the sweep's hypervolume (a search can exceed 1.0:
the sweep is not the true front).

The objectives come from any registered objective provider. Without trained latency / accuracy
predictors the default is the analytic `flops` provider with objectives `flops` (min) and
`params:max` (capacity as an honest stand-in for accuracy); say so when quoting the figures.

    python benchmarks/search_quality.py                          # full run (several minutes)
    python benchmarks/search_quality.py --seeds 2 --trials 100,300 --sweep 20000   # quick
    python benchmarks/search_quality.py --run results/runs/fashion-mnist-cpu \
        --objectives accuracy,latency_ms@cpu --out results/benchmarks/search_quality_predictors
        # the main job's trained predictors (accuracy predictor, cpu latency predictor) as objectives
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--provider", default="flops", help="objective provider(s) (default flops)")
    ap.add_argument("--objectives", default="flops,params:max")
    ap.add_argument("--budget", action="append", default=[])
    ap.add_argument("--samplers", default="nsga2,tpe,random")
    ap.add_argument("--trials", default="100,300,1000,3000", help="checkpoints (hypervolume of the first N trials)")
    ap.add_argument("--tpe-max", type=int, default=1000, help="TPE's cost grows with the trial count: cap it (default 1000)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sweep", type=int, default=100_000, help="random archs in the reference sweep")
    ap.add_argument("--out", default="results/benchmarks/search_quality")
    ap.add_argument("--run", default=None, help="a main-job run directory: its trained predictors (accuracy, latency "
                    "per device, memory, energy) are the objectives, as `hwnas run` searches them (overrides --provider)")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON at --out")
    args = ap.parse_args(argv)
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
    else:
        space = Space.preset(args.space)
        fn = make_objective(space, args.provider)
    objs = parse_objectives(args.objectives)
    checkpoints = sorted(int(x) for x in args.trials.split(","))

    # ---- reference sweep -----------------------------------------------------------------------
    t0 = time.perf_counter()
    rng = np.random.default_rng(12345)
    archs = space.sample_many(args.sweep, rng)
    rows = [fn(a) for a in archs]
    sweep_s = time.perf_counter() - t0
    ref_front = ParetoFront.build(objectives=objs, archs=[str(a) for a in archs],
                                  metrics={k: [r[k] for r in rows] for k in rows[0]}, budgets=args.budget)
    Fs = ref_front.F()[ref_front.feasible()]
    lo, hi = Fs.min(axis=0), Fs.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref_point = np.full(len(objs), 1.1)

    def hv_of(F: np.ndarray) -> float:
        return hypervolume((F - lo) / span, ref_point)

    hv_ref = hv_of(Fs[nondominated_mask(Fs)])
    print(f"reference: {args.sweep} random archs in {sweep_s:.1f}s, front {int(nondominated_mask(Fs).sum())}, "
          f"hv {hv_ref:.4f}", flush=True)

    # ---- searches ----------------------------------------------------------------------------------
    results: dict[str, dict[int, list[float]]] = {}
    timings: dict[str, list[float]] = {}
    for sampler in args.samplers.split(","):
        n_max = max(checkpoints) if sampler != "tpe" else min(max(checkpoints), args.tpe_max)
        results[sampler] = {n: [] for n in checkpoints if n <= n_max}
        timings[sampler] = []
        for seed in range(args.seeds):
            t = time.perf_counter()
            study = search(space, fn, objectives=objs, budgets=args.budget, n_trials=n_max, sampler=sampler, seed=seed)
            timings[sampler].append(time.perf_counter() - t)
            front = ParetoFront.from_study(study)
            order = np.argsort(front.trials)
            F = front.F()[order]
            feas = front.feasible()[order]
            for n in results[sampler]:
                Fn = F[:n][feas[:n]]
                results[sampler][n].append(hv_of(Fn[nondominated_mask(Fn)]) / hv_ref if len(Fn) else 0.0)
            print(f"{sampler} seed {seed}: {n_max} trials in {timings[sampler][-1]:.1f}s, "
                  + ", ".join(f"{n}: {results[sampler][n][-1]:.4f}" for n in results[sampler]), flush=True)

    summary = {
        s: {str(n): {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)), "per_seed": v}
            for n, v in r.items()} for s, r in results.items()
    }
    best_1000 = max((summary[s]["1000"]["mean"], s) for s in summary if "1000" in summary[s]) if any(
        "1000" in summary[s] for s in summary) else None
    doc = {
        "benchmark": "search_quality",
        "space": space.name, "provider": args.provider, "objectives": [o.spec() for o in objs],
        "budgets": args.budget, "seeds": args.seeds, "checkpoints": checkpoints, "tpe_max": args.tpe_max,
        "reference": {"sweep": args.sweep, "hv": hv_ref, "front_size": int(nondominated_mask(Fs).sum()),
                      "scaling": {"lo": lo.tolist(), "hi": hi.tolist()}, "ref_point_scaled": ref_point.tolist()},
        "hv_fraction_of_reference": summary,
        "search_seconds_per_run": {s: float(np.mean(v)) for s, v in timings.items()},
        "goal": ">= 0.98 of the reference hypervolume at 1000 trials with the best sampler",
        "best_at_1000": None if best_1000 is None else {"sampler": best_1000[1], "mean": best_1000[0],
                                                        "goal_met": best_1000[0] >= 0.98},
        "note": "objectives from the analytic flops provider (params:max stands in for accuracy) unless "
                "--provider names trained predictors",
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    from hwnas._io import atomic_write_json

    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), doc)
    _plot(doc, out)
    print(json.dumps(doc["best_at_1000"]), "->", out.with_suffix(".json"))
    return 0


def _plot(doc: dict, out: Path) -> None:
    from hwnas.searchers.plots import draw_hv_curves, hv_curve_record

    results = {s: {int(n): v["per_seed"] for n, v in r.items()} for s, r in doc["hv_fraction_of_reference"].items()}
    rec = hv_curve_record(results, reference=1.0, ylabel="hypervolume / reference-sweep hypervolume")
    title = (f"{doc['space']}: {', '.join(doc['objectives'])} ({doc['seeds']} seeds, mean ± std); "
             f"reference = {doc['reference']['sweep']:,} random archs")
    draw_hv_curves(rec, out.with_suffix(".png"), title=title)


if __name__ == "__main__":
    sys.exit(main())
