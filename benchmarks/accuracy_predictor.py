"""Benchmark: accuracy predictor kinds ranked by held-out rank correlation, next to the MACs proxy.

Reads (arch, accuracy) pairs (CSV columns `arch,val_accuracy`; several files are concatenated, a
repeated arch keeps its first row), then for each of `--seeds` splits holds out `--holdout` pairs
(at most 40% of a small file: the JSON's `holdout_used` and the printout say so), fits every kind
on the rest, with the one-hot encoding and with derived features added (log MACs, log params,
total depth), and reports Spearman and Kendall tau on the held-out pairs (mean and spread over the
splits) and fit time. `best` is `best_kind(results)`; `--save` fits it on all pairs and saves it.
Writes JSON + PNG (predicted vs measured on split 0, one panel per candidate) under --out.

    .venv/bin/python benchmarks/accuracy_predictor.py --pairs results/supernets/fmnist-mbv3/pairs.csv \
        --space fmnist-mbv3 --holdout 100 --seeds 5 [--save results/supernets/fmnist-mbv3/accuracy_predictor.json]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

import numpy as np


def read_pairs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    frames = []
    for p in paths:
        df = pd.read_csv(p)
        missing = {"arch", "val_accuracy"} - set(df.columns)
        if missing:
            raise SystemExit(f"{p}: missing column(s) {sorted(missing)}; expected 'arch,val_accuracy'")
        frames.append(df[["arch", "val_accuracy"]])
    df = pd.concat(frames).drop_duplicates("arch", keep="first")
    return df["arch"].tolist(), df["val_accuracy"].to_numpy(dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", action="append", required=True, help="CSV of arch,val_accuracy (repeatable)")
    ap.add_argument("--space", default="fmnist-mbv3", help="preset name or space YAML (default fmnist-mbv3)")
    ap.add_argument("--holdout", type=int, default=100, help="held-out pairs per split (default 100)")
    ap.add_argument("--seeds", type=int, default=5, help="train/held-out splits (default 5)")
    ap.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    ap.add_argument("--no-derived", action="store_true", help="skip the encoding+derived feature set")
    ap.add_argument("--save", default=None, help="fit the best candidate on all pairs and save it here (JSON)")
    ap.add_argument("--out", default="results/benchmarks", help="where JSON and PNG go")
    args = ap.parse_args(argv)

    from hwnas._io import atomic_write_json
    from hwnas.estimators.accuracy import best_kind, compare_kinds, fit_best
    from hwnas.search_space import Space

    space = Space.preset(args.space)
    archs, y = read_pairs(args.pairs)
    kinds = tuple(args.kinds.split(",")) if args.kinds else None
    feature_sets = ("encoding",) if args.no_derived else ("encoding", "encoding+derived")
    print(f"{len(y)} pairs from {len(args.pairs)} file(s); space {space.name}")
    r = compare_kinds(space, archs, y, kinds=kinds, feature_sets=feature_sets, holdout=args.holdout,
                      seeds=args.seeds, progress=lambda s: print("  " + s, flush=True))
    if r["holdout_used"] < args.holdout:
        print(f"note: only {len(y)} pairs, so {r['holdout_used']} held out per split instead of {args.holdout}")
    best = best_kind(r)
    report = {"benchmark": "accuracy_predictor", "space": space.name, "pairs_files": args.pairs,
              "machine": platform.node(), "best": best, **r}
    print(_table(r, best))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.save:
        pred = fit_best(r, space, archs, y, path=args.save)
        report["saved"] = {"path": args.save, "kind": pred.kind, "features": pred.features, "report": pred.report}
        print(f"saved {best} to {args.save}")
    atomic_write_json(out / "accuracy_predictor.json", report)
    _plot(out / "accuracy_predictor.png", plot_record(r, best))
    print(f"wrote {out / 'accuracy_predictor.json'} and {out / 'accuracy_predictor.png'}")
    return 0


def _table(r: dict[str, Any], best: str) -> str:
    rows = [f"{'candidate':<20} {'spearman':>15} {'kendall':>15} {'fit s':>7}"]
    for name, rec in [*r["candidates"].items(), ("MACs proxy", r["macs_proxy"])]:
        s, k = rec["spearman_summary"], rec["kendall_summary"]
        fit = f"{rec['fit_s_summary']['mean']:7.2f}" if "fit_s_summary" in rec else f"{'-':>7}"
        rows.append(f"{name + (' *' if name == best else ''):<20} {s['mean']:7.3f} ± {s['std']:5.3f} "
                    f"{k['mean']:7.3f} ± {k['std']:5.3f} {fit}")
    return "\n".join(rows)


def plot_record(r: dict[str, Any], best: str) -> list[dict[str, Any]]:
    """One panel per candidate (then the MACs proxy): held-out measured vs predicted of split 0."""
    panels = []
    for name, pts in r["plot"].items():
        rec = r["macs_proxy"] if name == "MACs proxy" else r["candidates"][name]
        s, k = rec["spearman_summary"], rec["kendall_summary"]
        panels.append({"name": name, "best": name == best, "measured": pts["measured"],
                       "predicted": pts["predicted"],
                       "title": f"{name}{' (best)' if name == best else ''}\nρ={s['mean']:.3f}±{s['std']:.3f} "
                                f"τ={k['mean']:.3f}±{k['std']:.3f}"})
    return panels


def _plot(path: Path, panels: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        ax.scatter(p["measured"], p["predicted"], s=9, alpha=0.7, color="C3" if p["best"] else "C0")
        if p["name"] != "MACs proxy":
            lo, hi = min(p["measured"]), max(p["measured"])
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_title(p["title"], fontsize=8)
        ax.set_xlabel("measured accuracy", fontsize=8)
        ax.set_ylabel("MACs" if p["name"] == "MACs proxy" else "predicted accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("held-out pairs of split 0 (ρ, τ: mean ± sd over splits)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
