"""Plots of fronts (matplotlib, Agg; PNG or SVG by the path's suffix).

Compute once, draw twice: each `*_record` function builds a plain frozen record of what to draw
(tests check it); each `draw_*` function renders a record and writes the file atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_bytes
from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers.pareto import ParetoFront

__all__ = [
    "FrontRecord", "PairRecord", "HVCurveRecord",
    "front_record", "pair_record", "hv_curve_record",
    "draw_front", "draw_pairs", "draw_hv_curves",
]


@dataclass(frozen=True)
class FrontRecord:
    """A 2-D front plot: every trial (faded when dominated or infeasible), the front, budget lines, labels."""

    x: str
    y: str
    points: np.ndarray  # (n, 2) every complete trial (trials of one arch are one point, drawn over each other)
    feasible: np.ndarray  # (n,) bool
    front: np.ndarray  # (k, 2) front members sorted by x (the step line), one per arch
    budget_lines: tuple[tuple[str, float, str], ...]  # (axis 'x'|'y', value, label)
    labels: tuple[tuple[float, float, str], ...]  # chosen points: (x, y, text)
    title: str = ""
    xlabel: str = ""  # axis names that say predicted or measured where the front knows (else x / y)
    ylabel: str = ""


def front_record(front: ParetoFront, *, x: str | None = None, y: str | None = None,
                 budgets: str | Sequence[str | Budget] | None = (), chosen: Sequence[Any] = (),
                 title: str | None = None) -> FrontRecord:
    """What a 2-D front plot shows; `chosen` are Picks (or arch strings) to label."""
    names = front.names
    x = x or names[0]
    y = y or (names[1] if len(names) > 1 else names[0])
    buds = parse_budgets(budgets)
    X, Y = front.column(x), front.column(y)
    mask = front.front_mask(buds)
    fx, fy = X[mask], Y[mask]
    order = np.argsort(fx, kind="stable")
    lines = []
    for b in tuple(front.budgets) + tuple(buds):
        if b.metric == x:
            lines.append(("x", b.bound, str(b)))
        elif b.metric == y:
            lines.append(("y", b.bound, str(b)))
    labels = []
    for c in chosen:
        arch = c if isinstance(c, str) else c.arch
        idx = [i for i, a in enumerate(front.archs) if a == arch]
        if idx:
            i = idx[0]
            text = getattr(c, "label", None) or (f"trial {int(front.trials[i])}")
            labels.append((float(X[i]), float(Y[i]), text))
    n_archs = len(set(front.archs))
    what = f"{len(front)}" if n_archs == len(front) else f"{n_archs} archs ({len(front)} trials)"
    return FrontRecord(
        x=x, y=y, points=np.stack([X, Y], axis=1) if len(X) else np.zeros((0, 2)),
        feasible=front.feasible(buds), front=np.stack([fx[order], fy[order]], axis=1) if len(fx) else np.zeros((0, 2)),
        budget_lines=tuple(lines), labels=tuple(labels),
        title=title if title is not None else f"{front.study_name or 'front'}: {int(mask.sum())} on the front of {what}",
        xlabel=front.label(x), ylabel=front.label(y),
    )


@dataclass(frozen=True)
class PairRecord:
    """Pair-plot of 3+ objectives: every pair of columns, front members highlighted."""

    names: tuple[str, ...]
    values: np.ndarray  # (n, m)
    front: np.ndarray  # (n,) bool
    feasible: np.ndarray


def pair_record(front: ParetoFront, budgets: str | Sequence[str | Budget] | None = ()) -> PairRecord:
    names = tuple(front.label(n) for n in front.names)
    vals = np.stack([front.column(n) for n in front.names], axis=1) if len(front) else np.zeros((0, len(names)))
    return PairRecord(names=names, values=vals, front=front.front_mask(budgets), feasible=front.feasible(budgets))


@dataclass(frozen=True)
class HVCurveRecord:
    """Hypervolume vs trials, one curve per sampler (mean and spread over seeds)."""

    trials: tuple[int, ...]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # sampler -> (mean, std) per trial count
    reference: float | None = None  # e.g. the reference front's hypervolume (drawn as a line)
    ylabel: str = "hypervolume"


def hv_curve_record(results: Mapping[str, Mapping[int, Sequence[float]]], *, reference: float | None = None,
                    relative: bool = False, ylabel: str | None = None) -> HVCurveRecord:
    """From {sampler: {n_trials: [hv per seed]}}; `relative` divides by `reference`."""
    trials = sorted({int(n) for r in results.values() for n in r})
    curves = {}
    for s, r in results.items():
        mean = np.array([np.mean(r[n]) if n in r else np.nan for n in trials], dtype=float)
        std = np.array([np.std(r[n]) if n in r else np.nan for n in trials], dtype=float)
        if relative:
            if not reference:
                raise ValueError("relative=True needs a non-zero reference")
            mean, std = mean / reference, std / reference
        curves[s] = (mean, std)
    return HVCurveRecord(trials=tuple(trials), curves=curves,
                         reference=1.0 if relative else reference,
                         ylabel=ylabel or ("hypervolume / reference" if relative else "hypervolume"))


# ---- drawing -------------------------------------------------------------------------------------
def _figure(*a: Any, **k: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*a, **k)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"plot path {str(path)!r}: suffix .{fmt} not supported; use .png or .svg")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def draw_front(rec: FrontRecord, path: str | Path) -> Path:
    fig, ax = _figure(figsize=(6.4, 4.8))
    P = rec.points
    if len(P):
        ax.scatter(P[~rec.feasible, 0], P[~rec.feasible, 1], s=6, c="lightgray", alpha=0.5, label="infeasible")
        ax.scatter(P[rec.feasible, 0], P[rec.feasible, 1], s=8, c="tab:blue", alpha=0.2, label="dominated")
    if len(rec.front):
        ax.plot(rec.front[:, 0], rec.front[:, 1], "o-", c="tab:red", ms=4, lw=1, label="Pareto front")
    for axis, v, label in rec.budget_lines:
        (ax.axvline if axis == "x" else ax.axhline)(v, ls="--", c="k", lw=0.8)
        if axis == "x":
            ax.annotate(label, (v, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7)
        else:
            ax.annotate(label, (1.0, v), xycoords=("axes fraction", "data"), va="bottom", ha="right", fontsize=7)
    for x, y, text in rec.labels:
        ax.scatter([x], [y], s=60, facecolors="none", edgecolors="k")
        ax.annotate(text, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8)
    ax.set_xlabel(rec.xlabel or rec.x)
    ax.set_ylabel(rec.ylabel or rec.y)
    ax.set_title(rec.title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def draw_pairs(rec: PairRecord, path: str | Path) -> Path:
    m = len(rec.names)
    fig, axes = _figure(m, m, figsize=(2.4 * m, 2.4 * m), squeeze=False)
    V = rec.values
    for i in range(m):
        for j in range(m):
            ax = axes[i][j]
            if i == j:
                ax.hist(V[rec.feasible, i], bins=30, color="tab:blue", alpha=0.6)
            else:
                ax.scatter(V[rec.feasible, j], V[rec.feasible, i], s=4, c="tab:blue", alpha=0.15)
                ax.scatter(V[rec.front, j], V[rec.front, i], s=8, c="tab:red")
            if i == m - 1:
                ax.set_xlabel(rec.names[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(rec.names[i], fontsize=8)
            ax.tick_params(labelsize=6)
    return _save(fig, path)


def draw_hv_curves(rec: HVCurveRecord, path: str | Path, *, title: str = "") -> Path:
    fig, ax = _figure(figsize=(6.4, 4.4))
    t = np.array(rec.trials)
    for s, (mean, std) in rec.curves.items():
        ax.plot(t, mean, "o-", label=s)
        ax.fill_between(t, mean - std, mean + std, alpha=0.2)
    if rec.reference is not None:
        ax.axhline(rec.reference, ls="--", c="k", lw=0.8, label="reference")
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel(rec.ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)
