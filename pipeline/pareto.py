"""Stage 5, pareto: the search re-measured. Up to `search.refine` distinct archs of the study by
Pareto rank are scored on search-val through the supernet (like the accuracy pairs); the final
front (`pareto.csv`, `pareto.png`) is taken over those and the pairs (`candidates.csv`).

The study keeps what was measured too (study user attributes `hwnas.remeasured`, the candidates
table, and `hwnas.metric_sources`, what each recorded metric is), so `hwnas pareto` / `hwnas export`
on `study.db` show and pick from the same front the run exported from, with predicted and
measured accuracy named apart, not from the predicted values the trials hold."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_text
from hwnas.pipeline._stages import say
from hwnas.pipeline.accuracy import FirstImages
from hwnas.pipeline.config import RunConfig
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.plots import plot_pareto
from hwnas.pipeline.search import search_objective

__all__ = ["stage_pareto", "study_front", "final_front", "front_from_table", "refine_candidates", "label_study"]


def study_front(search_summary: Mapping[str, Any]) -> Any:
    """Every trial of the search (the search stage's summary names the study): accuracy is the
    predictor's (labelled `accuracy_predicted` once the pareto stage has labelled the study)."""
    from hwnas.searchers import ParetoFront

    return ParetoFront.load(search_summary["study"], search_summary["storage"], measured=False)


def metric_sources(cfg: RunConfig) -> dict[str, str]:
    """What each metric the run's search records is (stored in the study, shown by `hwnas pareto --format json`)."""
    out = {"accuracy": "predicted: the accuracy predictor (accuracy_predictor.json), what the search optimised",
           "params": "counted: parameters of the static subnet", "macs": "counted: multiply-accumulates, batch 1",
           "flops": "counted: 2 x MACs"}
    for d in cfg.devices:
        out[f"latency_ms@{d}"] = f"predicted: the LUT latency predictor of {d} (batch 1; min of repeated runs)"
        out[f"peak_mem_mb@{d}"] = "estimated: the memory model (weights + peak live activations, batch 1)"
        out[f"energy_mj@{d}"] = "estimated: predicted latency x a stated power model, never measured"
    return out


def measured_source(cfg: RunConfig) -> str:
    return (f"measured: search-val split ({cfg.val_images} images) through the supernet after BN recalibration "
            f"({cfg.calib_images} training images)")


def label_study(search_summary: Mapping[str, Any], cfg: RunConfig, cand: Any = None, trials: Any = None) -> None:
    """Store in the study what its metrics are and (with `cand`, the candidates table, and `trials`, the
    study's front) the re-measured candidates, one row per arch with every trial number of the arch."""
    from hwnas.searchers import load_study
    from hwnas.searchers.pareto import REMEASURED_ATTR, SOURCES_ATTR

    study = load_study(search_summary["study"], search_summary["storage"])
    study.set_user_attr(SOURCES_ATTR, metric_sources(cfg))
    doc: dict[str, Any] = {"metric": "accuracy", "predicted_as": "predicted_accuracy", "source": measured_source(cfg)}
    if cand is not None:
        of_arch: dict[str, list[int]] = {}
        for a, t in zip(trials.archs, trials.trials.tolist()):
            of_arch.setdefault(a, []).append(int(t))
        skip = {"trial", "arch", "source", "feasible", "front", "rank", "trials"}
        doc["archs"] = [str(a) for a in cand["arch"]]
        doc["trials"] = [sorted(of_arch.get(a, [])) for a in cand["arch"]]
        doc["metrics"] = {k: [None if not np.isfinite(v) else float(v) for v in cand[k].to_numpy(dtype=float)]
                          for k in cand.columns if k not in skip}
    study.set_user_attr(REMEASURED_ATTR, doc)


def final_front(cfg: RunConfig, run_dir: Path) -> Any:
    """The final front: the measured candidates of the pareto stage (candidates.csv), accuracy
    measured on the search-val split through the supernet, the other metrics predicted."""
    import pandas as pd

    return front_from_table(cfg, pd.read_csv(run_dir / "candidates.csv"))


def front_from_table(cfg: RunConfig, df: Any) -> Any:
    """A ParetoFront over a candidates table (its metric columns; bookkeeping columns skipped)."""
    from hwnas.searchers import ParetoFront

    skip = {"trial", "trials", "arch", "feasible", "front", "rank", "source"}
    return ParetoFront.build(objectives=list(cfg.objectives), archs=list(df["arch"]),
                             metrics={k: df[k].to_numpy() for k in df.columns if k not in skip},
                             trials=df["trial"].to_numpy(), budgets=list(cfg.budgets))


def refine_candidates(trials: Any, n: int, latency_key: str) -> list[tuple[str, int]]:
    """Up to n distinct feasible archs of the study, by Pareto rank: the whole predicted front
    first, then the next ranks, the last rank that does not fit spread evenly over `latency_key`.
    (A poor accuracy predictor can leave a front of a handful of archs; the next ranks fill in.)"""
    ranks = trials.ranks()
    lat = trials.column(latency_key)
    chosen: dict[str, int] = {}
    for r in sorted({int(x) for x in ranks if x >= 1}):
        idx = np.flatnonzero(ranks == r)
        layer: dict[str, int] = {}
        for i in idx[np.argsort(lat[idx], kind="stable")]:
            a = trials.archs[i]
            if a not in chosen:
                layer.setdefault(a, int(trials.trials[i]))
        items = list(layer.items())
        room = n - len(chosen)
        if len(items) > room:
            keep = np.unique(np.round(np.linspace(0, len(items) - 1, room)).astype(int)) if room > 0 else []
            items = [items[i] for i in keep]
        chosen.update(items)
        if len(chosen) >= n:
            break
    return list(chosen.items())


def stage_pareto(ctx: RunContext) -> dict[str, Any]:
    """Re-measure the best of the search, then take the front of what was measured.

    The accuracy predictor is fitted on a few dozen pairs and can rank poorly; the latency
    predictors are checked against measurements in the profile stage. So the final front uses
    measured search-val accuracy (same images and BN recalibration as the accuracy pairs) for up
    to `refine_archs` distinct archs of the search taken by Pareto rank (`refine_candidates`),
    plus every arch of the accuracy pairs (already measured), with their predicted latency,
    memory and energy.
    """
    import pandas as pd
    import torch
    from hwnas.supernet import evaluate
    from tqdm import tqdm

    cfg, run_dir, space = ctx.cfg, ctx.run_dir, ctx.space
    label_study(ctx.summaries["search"], cfg)  # before reading: trials.csv then names its accuracy as predicted
    trials_front = study_front(ctx.summaries["search"])
    atomic_write_text(run_dir / "trials.csv", trials_front.to_frame(all_trials=True).to_csv(index=False))
    fn = search_objective(space, run_dir, cfg.devices)
    lat_key = f"latency_ms@{cfg.primary_device}"
    picked = refine_candidates(trials_front, cfg.refine_archs, lat_key)
    pairs = pd.read_csv(run_dir / "accuracy_samples.csv")
    measured = dict(zip(pairs["arch"], pairs["val_accuracy"]))
    cache = run_dir / "refine_samples.csv"
    if cache.is_file():  # resume: keep what a crashed run already measured
        prev = pd.read_csv(cache)
        measured.update(zip(prev["arch"], prev["val_accuracy"]))
    todo = [a for a, _ in picked if a not in measured]
    if todo:
        net, loaders = ctx.supernet(), ctx.loaders()
        val = FirstImages(loaders.val, cfg.val_images)
        calib = loaders.calib_images(cfg.calib_images)
        new: dict[str, float] = {}
        with torch.no_grad():
            for k, a in enumerate(tqdm(todo, desc="re-measuring the front", disable=not ctx.progress, unit="arch")):
                new[a] = evaluate(net, space.parse(a), val, calib=calib, num_calib=len(calib))
                if k % 10 == 9 or k == len(todo) - 1:
                    atomic_write_text(cache, pd.DataFrame({"arch": list(new), "val_accuracy": list(new.values())}).to_csv(index=False))
        measured.update(new)
    rows = []
    searched = dict(picked)
    sources = [(a, t, "search") for a, t in picked] + [(a, -1, "pairs") for a in pairs["arch"] if a not in searched]
    for a, t, src in sources:
        m = fn(space.parse(a))
        rows.append({"trial": t, "arch": a, "source": src, **m, "predicted_accuracy": m["accuracy"],
                     "accuracy": float(measured[a])})
    cand = pd.DataFrame(rows)
    label_study(ctx.summaries["search"], cfg, cand, trials_front)
    front = front_from_table(cfg, cand)
    full = front.to_frame(all_trials=True).assign(source=cand["source"].to_numpy())
    atomic_write_text(run_dir / "candidates.csv", full.to_csv(index=False))
    df = front.to_frame()
    atomic_write_text(run_dir / "pareto.csv", df.to_csv(index=False))
    plot_pareto(front, cfg, run_dir / "pareto.png", exported=None, study_front=trials_front)
    acc = df["accuracy"].to_numpy()
    fr = full[full["source"] == "search"]
    rho = float(pd.Series(fr["predicted_accuracy"]).corr(pd.Series(fr["accuracy"]), method="spearman")) if len(fr) > 2 else float("nan")
    say(f"    re-measured: {len(picked)} archs of the search by Pareto rank ({len(todo)} new), {len(cand) - len(picked)} "
        f"accuracy pairs; final front {len(df)}; predicted vs measured accuracy on those {len(picked)}: Spearman {rho:.2f}")
    return {"front_size": len(df), "candidates": len(cand), "remeasured": len(todo), "predicted_front_spearman": rho,
            "accuracy_range": [float(acc.min()), float(acc.max())],
            "latency_range": {d: [float(df[f"latency_ms@{d}"].min()), float(df[f"latency_ms@{d}"].max())]
                              for d in cfg.devices if f"latency_ms@{d}" in df}}

