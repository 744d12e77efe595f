"""The run's two figures: `pareto.png` (accuracy vs predicted latency per device, with the search's
trials, the re-measured candidates, their front, the budgets and the exported picks) and
`predicted_vs_measured.png` (latency per device and accuracy of the exported subnets)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.pipeline.config import RunConfig

__all__ = ["plot_pareto", "plot_predicted_vs_measured"]


def plot_pareto(front: Any, cfg: RunConfig, path: Path, exported: list[dict[str, Any]] | None,
                 study_front: Any = None) -> dict[str, Any]:
    """Accuracy vs predicted latency for each device: the search's trials (predicted accuracy) faded,
    the re-measured candidates (search-val accuracy), their 2-D front, budgets and exported picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hwnas.searchers.pareto import nondominated_mask

    all_df = front.to_frame(all_trials=True)
    feas = all_df[all_df["feasible"]]
    trials = study_front.to_frame(all_trials=True) if study_front is not None else None
    devs = [d for d in cfg.devices if f"latency_ms@{d}" in all_df]
    fig, axes = plt.subplots(1, len(devs), figsize=(5.2 * len(devs), 4.2), squeeze=False)
    record: dict[str, Any] = {}
    for ax, d in zip(axes[0], devs):
        if trials is not None:
            t = trials[trials["feasible"]]
            ax.scatter(t[study_front.label(f"latency_ms@{d}")], t[study_front.label("accuracy")] * 100, s=4,
                       c="lightgrey", alpha=0.5, label=f"search trials, predicted accuracy ({len(t)})")
        lat = feas[f"latency_ms@{d}"].to_numpy()
        acc = feas["accuracy"].to_numpy()
        mask = nondominated_mask(np.stack([lat, -acc], axis=1))
        order = np.argsort(lat[mask])
        ax.scatter(lat, acc * 100, s=9, alpha=0.6, c="tab:blue", label=f"re-measured candidates ({len(lat)})")
        ax.plot(lat[mask][order], acc[mask][order] * 100, "o-", ms=3, c="tab:orange", label=f"2-D front ({mask.sum()})")
        record[d] = {"front_latency": lat[mask][order].tolist(), "front_accuracy": acc[mask][order].tolist()}
        if exported:
            for e in exported:
                b = e["budget_ms"] if d == cfg.primary_device else None
                if b is not None:
                    ax.axvline(b, color="grey", ls="--", lw=0.8)
                ax.scatter([e["predicted"][f"latency_ms@{d}"]], [e["predicted"]["accuracy"] * 100], marker="*", s=160,
                           c="red", edgecolor="k", zorder=5)
                ax.annotate(e["label"], (e["predicted"][f"latency_ms@{d}"], e["predicted"]["accuracy"] * 100),
                            textcoords="offset points", xytext=(6, -10), fontsize=8)
        ax.set_xlabel(f"predicted latency on {d} (ms, batch 1)")
        ax.set_ylabel(f"accuracy, search-val split (%; {cfg.val_images} images)")
        ax.set_title(f"{cfg.space}: accuracy vs latency@{d}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return record


def plot_predicted_vs_measured(cfg: RunConfig, run_dir: Path, exported: Sequence[dict[str, Any]], path: Path) -> None:
    """Predicted vs measured latency on each device (the profile stage's held-out archs and the
    exported subnets), and search-time vs test accuracy of the exported subnets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    ex = list(exported)
    fig, axes = plt.subplots(1, len(cfg.devices) + 1, figsize=(4.6 * (len(cfg.devices) + 1), 4.2), squeeze=False)
    for ax, d in zip(axes[0], cfg.devices):
        v = pd.read_csv(run_dir / "profiles" / d / "validation.csv")
        ax.scatter(v["measured_ms"], v["predicted_ms"], s=14, label=f"held-out random archs ({len(v)})")
        ax.scatter([e["measured"][f"latency_ms@{d}"] for e in ex], [e["predicted"][f"latency_ms@{d}"] for e in ex],
                   marker="*", s=150, c="red", edgecolor="k", label="exported subnets")
        lo = min(v["measured_ms"].min(), v["predicted_ms"].min()) * 0.9
        hi = max(v["measured_ms"].max(), v["predicted_ms"].max()) * 1.1
        xs = np.linspace(lo, hi, 10)
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="±10%")
        ax.set_xlabel(f"measured latency on {d} (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(f"latency@{d}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    ax.scatter([100 * e["measured"]["accuracy"] for e in ex], [100 * e["predicted"]["accuracy"] for e in ex], marker="*",
               s=150, c="red", edgecolor="k")
    for e in ex:
        ax.annotate(e["label"], (100 * e["measured"]["accuracy"], 100 * e["predicted"]["accuracy"]),
                    textcoords="offset points", xytext=(5, 3), fontsize=8)
    vals = [100 * e["measured"]["accuracy"] for e in ex] + [100 * e["predicted"]["accuracy"] for e in ex]
    xs = np.linspace(min(vals) - 1, max(vals) + 1, 10)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.set_xlabel("test accuracy, measured (%)")
    ax.set_ylabel("search-val accuracy at search time (%)")
    ax.set_title("accuracy of exported subnets")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

