"""Which archs to measure, how the kinds compare on held-out pairs, and fitting the chosen kind.

`stratified_archs` chooses the archs whose accuracy is worth measuring: a uniform sample of a
MobileNet-like space piles up in the middle of its MACs range (every choice drawn independently,
so sums concentrate), which leaves a predictor blind at the small and large ends where the Pareto
front lives. `compare_kinds` fits every kind on the same train / held-out splits and scores the
held-out ranking (Spearman, Kendall tau) next to the MACs proxy; `best_kind` reads its result, so
the predictor that ships is the one that ranked best on data, not the one we liked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.estimators.accuracy._base import (
    FEATURES,
    KINDS,
    BasePredictor,
    check_pairs,
    features,
    load_file,
    rank_metrics,
)

__all__ = ["stratified_archs", "compare_kinds", "best_kind", "fit_accuracy_predictor", "fit_best",
           "load_accuracy_predictor"]


def load_accuracy_predictor(path: str | Path) -> BasePredictor:
    """Load a saved accuracy predictor of any kind (the JSON's `kind` says which)."""
    return load_file(path)


def stratified_archs(space: Any, n: int, seed: int = 0, *, bins: int = 10, pool: int | None = None) -> list:
    """`n` distinct archs covering the space: the min and max subnets, the rest spread evenly over
    `bins` equal-width bins of log MACs between theirs, and within a bin over total depths in turn.

    Candidates are uniform samples plus mutations of the min and max subnets at several rates (the
    ends of the MACs range are rare under uniform sampling). Deterministic for a `seed`.
    """
    from hwnas.estimators.flops import arch_macs_many
    from hwnas.search_space import as_random

    if not 2 <= n <= space.size():
        raise ValueError(f"n={n} must be in 2..{space.size()} (the size of space {space.name!r})")
    if not 1 <= bins <= n:
        raise ValueError(f"bins={bins} must be in 1..n={n}")
    pool = pool or max(20 * n, 2000)
    rng = as_random(int(seed))
    lo, hi = space.min_arch(), space.max_arch()
    cands: dict[Any, None] = dict.fromkeys(space.sample_many(pool // 2, rng))
    rates = (0.05, 0.1, 0.2, 0.3, 0.5)
    for i in range(pool // 2):
        cands.setdefault(space.mutate(lo if i % 2 == 0 else hi, rng, prob=rates[(i // 2) % len(rates)]), None)
    cands.pop(lo, None)
    cands.pop(hi, None)
    archs = list(cands)
    if len(archs) < n - 2:
        raise ValueError(f"space {space.name!r} yielded {len(archs)} distinct candidates for n={n}; ask for fewer")
    macs = np.log(arch_macs_many(space, archs + [lo, hi]))
    m_lo, m_hi = macs[-2], macs[-1]
    width = (m_hi - m_lo) / bins or 1.0
    which = np.clip(((macs[:-2] - m_lo) / width).astype(int), 0, bins - 1)
    depth = [sum(st.depth for st in a.stages) for a in archs]
    # per bin: candidates queued round-robin over their total depths (each depth's list shuffled)
    queues: list[list[int]] = []
    for b in range(bins):
        by_depth: dict[int, list[int]] = {}
        for i in np.flatnonzero(which == b):
            by_depth.setdefault(depth[i], []).append(int(i))
        groups = [by_depth[d] for d in sorted(by_depth)]
        for g in groups:
            rng.shuffle(g)
        q = [g[k] for k in range(max(map(len, groups), default=0)) for g in groups if k < len(g)]
        queues.append(q)
    # equal quotas; a bin short of candidates passes its share on to the others, one at a time
    picked: list[int] = []
    quota = [(n - 2) // bins + (1 if b < (n - 2) % bins else 0) for b in range(bins)]
    taken = [0] * bins
    for b in range(bins):
        k = min(quota[b], len(queues[b]))
        picked += queues[b][:k]
        taken[b] = k
    order = sorted(range(bins), key=lambda b: (-(len(queues[b]) - taken[b]), b))
    while len(picked) < n - 2:
        for b in order:
            if len(picked) < n - 2 and taken[b] < len(queues[b]):
                picked.append(queues[b][taken[b]])
                taken[b] += 1
    return [lo, hi] + [archs[i] for i in picked]


def _split(n: int, n_hold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return idx[n_hold:], idx[:n_hold]


def _summary(vals: list[float]) -> dict[str, float]:
    v = np.asarray(vals, dtype=np.float64)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if len(ok) else math.nan, "std": float(ok.std()) if len(ok) else math.nan,
            "min": float(ok.min()) if len(ok) else math.nan}


def compare_kinds(space: Any, archs: list, accuracies: Any, *, kinds: tuple[str, ...] | None = None,
                  feature_sets: tuple[str, ...] = ("encoding",), holdout: int = 100, seeds: int = 5,
                  settings: dict[str, dict[str, Any]] | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit each kind (x each feature set) on every split and score its held-out ranking.

    Split s (s = 0..seeds-1) holds out `holdout` pairs drawn with seed s (at most 40% of the pairs,
    so a small file still leaves most of it to fit on: `holdout_used` says what was used), the same
    split for every kind and for the MACs proxy. Returns a plain record: per candidate (`kind` or
    `kind+derived`) the per-split Spearman / Kendall / RMSE / fit seconds with their mean and
    spread, and the held-out predictions of split 0 for plotting.
    """
    from hwnas.estimators.flops import arch_macs_many

    kinds = tuple(kinds or KINDS)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown predictor kind {k!r}; known: {sorted(KINDS)}")
    for f in feature_sets:
        if f not in FEATURES:
            raise ValueError(f"feature set {f!r} is not one of {list(FEATURES)}")
    if not 1 <= seeds <= 100:
        raise ValueError(f"seeds={seeds} must be in 1..100")
    archs, y = check_pairs(space, archs, accuracies)
    n_hold = min(int(holdout), int(0.4 * len(y)))
    if n_hold < 5:
        raise ValueError(f"holdout={holdout} leaves {n_hold} held-out pairs of {len(y)}; need >= 5")
    Xs = {f: features(space, archs, f) for f in feature_sets}
    macs = arch_macs_many(space, archs)
    settings = settings or {}
    out: dict[str, Any] = {"n_pairs": len(y), "holdout_requested": int(holdout), "holdout_used": n_hold,
                           "seeds": seeds, "candidates": {}, "plot": {}}
    splits = [_split(len(y), n_hold, s) for s in range(seeds)]
    proxy = [rank_metrics(macs[te], y[te]) for _, te in splits]
    out["macs_proxy"] = {"spearman": [m["spearman"] for m in proxy], "kendall": [m["kendall"] for m in proxy]}
    out["plot"]["MACs proxy"] = {"measured": y[splits[0][1]].tolist(), "predicted": macs[splits[0][1]].tolist()}
    for f in feature_sets:
        for kind in kinds:
            name = kind if f == "encoding" else f"{kind}+derived"
            rec: dict[str, Any] = {"kind": kind, "features": f, "settings": settings.get(kind, {}),
                                   "spearman": [], "kendall": [], "rmse": [], "fit_s": []}
            for s, (tr, te) in enumerate(splits):
                t0 = time.perf_counter()
                pred = KINDS[kind](space, features=f, **settings.get(kind, {}))._fit_xy(Xs[f][tr], y[tr], s)
                rec["fit_s"].append(time.perf_counter() - t0)
                p = pred.predict_encoded(Xs[f][te])
                m = rank_metrics(p, y[te])
                rec["spearman"].append(m["spearman"])
                rec["kendall"].append(m["kendall"])
                rec["rmse"].append(float(np.sqrt(np.mean((p - y[te]) ** 2))))
                if s == 0:
                    out["plot"][name] = {"measured": y[te].tolist(), "predicted": p.tolist()}
            out["candidates"][name] = rec
            if progress:
                progress(f"{name}: spearman {_summary(rec['spearman'])['mean']:.3f} "
                         f"kendall {_summary(rec['kendall'])['mean']:.3f} fit {np.mean(rec['fit_s']):.1f}s")
    for rec in [*out["candidates"].values(), out["macs_proxy"]]:
        for key in ("spearman", "kendall", "rmse", "fit_s"):
            if key in rec:
                rec[f"{key}_summary"] = _summary(rec[key])
    return out


def best_kind(results: dict[str, Any]) -> str:
    """The candidate of `compare_kinds` results with the best mean held-out Spearman (then Kendall)."""
    cands = results.get("candidates") or {}

    def key(name: str) -> tuple[float, float]:
        r = cands[name]
        s, k = _summary(r["spearman"])["mean"], _summary(r["kendall"])["mean"]
        return (s if math.isfinite(s) else -math.inf, k if math.isfinite(k) else -math.inf)

    ranked = sorted(cands, key=lambda n: (key(n), n), reverse=True)
    if not ranked or key(ranked[0])[0] == -math.inf:
        raise ValueError("no candidate in these results has a held-out Spearman to choose by")
    return ranked[0]


def fit_accuracy_predictor(space: Any, archs: list, accuracies: Any, *, kind: str = "mlp",
                           features: str = "encoding", path: str | Path | None = None, holdout: float = 0.2,
                           seed: int = 0, **settings: Any) -> BasePredictor:
    """Fit one kind on all pairs (reporting a `holdout` share first) and save it to `path` if given."""
    if kind not in KINDS:
        raise ValueError(f"unknown predictor kind {kind!r}; known: {sorted(KINDS)}")
    pred = KINDS[kind](space, features=features, **settings).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)
    if path is not None:
        pred.save(path)
    return pred


def fit_best(results: dict[str, Any], space: Any, archs: list, accuracies: Any, *, path: str | Path | None = None,
             holdout: float = 0.2, seed: int = 0) -> BasePredictor:
    """Fit (and save) the candidate `best_kind(results)` chose, with the settings it was compared with."""
    rec = results["candidates"][best_kind(results)]
    return fit_accuracy_predictor(space, archs, accuracies, kind=rec["kind"], features=rec["features"], path=path,
                                  holdout=holdout, seed=seed, **rec.get("settings", {}))
