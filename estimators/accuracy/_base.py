"""What every accuracy predictor shares: input checks, features, the held-out report, JSON + npz files.

A predictor maps an arch to its accuracy (the unit of its training targets). Each kind implements
three things: `_fit_xy(X, y)` on a feature matrix, `_predict_x(X)`, and `_state()` /
`_from_state()` for its file (a JSON record plus named numpy arrays; never a pickle). The rest is
here, once: turning archs into features, refusing bad pairs, the optional held-out report, and
reading / writing the two files atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_bytes, atomic_write_json, read_json
from hwnas.errors import ProfileError

__all__ = ["FEATURES", "MIN_PAIRS", "BasePredictor", "features", "check_pairs", "rank_metrics"]

FORMAT = "hwnas-accuracy-predictor"
# "encoding": the space's one-hot encoding alone; "encoding+derived": plus log MACs, log params and
# total depth, each scaled to [0, 1] between the space's min and max subnets (so nothing about the
# training data needs saving to recompute them).
FEATURES = ("encoding", "encoding+derived")
# Below this many pairs no predictor's held-out figure means anything; the pipeline asks >= 10 too.
MIN_PAIRS = 10


def _derived(space: Any, archs: list) -> np.ndarray:
    from hwnas.estimators.flops import arch_macs_many

    def scale(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)

    lo_a, hi_a = space.min_arch(), space.max_arch()
    macs = np.log(arch_macs_many(space, list(archs) + [lo_a, hi_a]))
    # params need the static net (a few ms an arch); cached per arch string on the space's name
    params = np.log(np.array([_params_cached(space, a) for a in list(archs) + [lo_a, hi_a]], dtype=np.float64))
    depth = np.array([sum(st.depth for st in a.stages) for a in list(archs) + [lo_a, hi_a]], dtype=np.float64)
    cols = [scale(v[:-2], v[-2], v[-1]) for v in (macs, params, depth)]
    return np.stack(cols, axis=1).astype(np.float32)


_PARAMS: dict[tuple[str, str], int] = {}


def _params_cached(space: Any, arch: Any) -> int:
    from hwnas.estimators.flops import arch_params

    key = (space.name, str(arch))
    if key not in _PARAMS:
        _PARAMS[key] = arch_params(space, arch)
    return _PARAMS[key]


def features(space: Any, archs: list, kind: str = "encoding") -> np.ndarray:
    """The feature matrix of `archs` (parsed and checked against `space`; an ArchError is a ValueError)."""
    if kind not in FEATURES:
        raise ValueError(f"features={kind!r} is not one of {list(FEATURES)}")
    archs = [space.parse(a) for a in archs]
    X = space.encode_many(archs)
    if kind == "encoding+derived":
        X = np.concatenate([X, _derived(space, archs)], axis=1)
    return X


def check_pairs(space: Any, archs: list, accuracies: Any) -> tuple[list, np.ndarray]:
    """Parse the archs against `space` and check the targets; ValueError naming what is wrong."""
    archs = list(archs)
    y = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    if len(y) != len(archs):
        raise ValueError(f"got {len(y)} accuracies for {len(archs)} archs: the two must have the same length")
    if len(y) < MIN_PAIRS:
        raise ValueError(f"need >= {MIN_PAIRS} (arch, accuracy) pairs to fit an accuracy predictor, got {len(y)}")
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise ValueError(f"accuracies must be finite: {len(bad)} are NaN/inf (first at row {int(bad[0])})")
    parsed = []
    for i, a in enumerate(archs):
        try:
            parsed.append(space.parse(a))
        except ValueError as e:
            raise type(e)(f"arch at row {i} is not in space {space.name!r}: {e}") from None
    return parsed, y


def rank_metrics(pred: Any, true: Any) -> dict[str, float]:
    """Spearman and Kendall tau of a score against the truth (NaN when either is constant)."""
    from scipy.stats import kendalltau, spearmanr

    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return {"spearman": math.nan, "kendall": math.nan}
    return {"spearman": float(spearmanr(p, t).statistic), "kendall": float(kendalltau(p, t).statistic)}


class BasePredictor:
    """Common surface of every accuracy predictor kind (see the module docstring)."""

    kind = ""
    name = "accuracy"

    def __init__(self, space: Any, *, features: str = "encoding", report: dict[str, Any] | None = None):
        if features not in FEATURES:
            raise ValueError(f"features={features!r} is not one of {list(FEATURES)}")
        self.space, self.features = space, features
        self.report = dict(report or {})

    # ---- what a kind implements -------------------------------------------------------------------
    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> BasePredictor:
        raise NotImplementedError

    def _predict_x(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> BasePredictor:
        raise NotImplementedError

    def _clone(self) -> BasePredictor:
        """An unfitted predictor with the same settings (for the held-out fit)."""
        raise NotImplementedError

    # ---- shared -------------------------------------------------------------------------------------
    def fit_pairs(self, archs: list, accuracies: Any, *, holdout: float = 0.2, seed: int = 0) -> BasePredictor:
        """Fit on (arch, accuracy) pairs. A `holdout` share is first kept out to report held-out
        Spearman / Kendall / RMSE in `report`, then the predictor is refitted on all pairs."""
        if not 0.0 <= holdout < 0.9:
            raise ValueError(f"holdout={holdout} must be in [0, 0.9)")
        archs, y = check_pairs(self.space, archs, accuracies)
        X = features(self.space, archs, self.features)
        report: dict[str, Any] = {"n": len(y), "kind": self.kind, "features": self.features}
        if holdout > 0:
            idx = np.random.default_rng(seed).permutation(len(y))
            n_test = max(2, int(round(holdout * len(y))))
            te, tr = idx[:n_test], idx[n_test:]
            p = self._clone()._fit_xy(X[tr], y[tr], seed)._predict_x(X[te])
            m = rank_metrics(p, y[te])
            report.update({"holdout_n": int(n_test), "holdout_spearman": m["spearman"],
                           "holdout_kendall": m["kendall"],
                           "holdout_rmse": float(np.sqrt(np.mean((p - y[te]) ** 2)))})
        self._fit_xy(X, y, seed)
        self.report = report
        return self

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        """Predictions for a feature matrix (as `features(space, archs, self.features)` builds it)."""
        return self._predict_x(np.asarray(X, dtype=np.float32))

    def predict_many(self, archs: list) -> np.ndarray:
        return self.predict_encoded(features(self.space, list(archs), self.features))

    def predict(self, arch: Any) -> float:
        return float(self.predict_many([arch])[0])

    def save(self, path: str | Path) -> Path:
        """Write `path` (JSON: kind, space, settings, report) and `path.npz` (the arrays, no pickle)."""
        path = Path(path)
        meta, arrays = self._state()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        return atomic_write_json(path, {"format": FORMAT, "kind": self.kind, "space": self.space.to_dict(),
                                        "features": self.features, **meta,
                                        "arrays": path.with_suffix(".npz").name, "report": self.report})

    @classmethod
    def load(cls, path: str | Path) -> BasePredictor:
        pred = load_file(path)
        if not isinstance(pred, cls):
            raise ProfileError(f"{path}: holds a {pred.kind!r} accuracy predictor, not a {cls.kind!r} one")
        return pred


KINDS: dict[str, type[BasePredictor]] = {}


def register(cls: type[BasePredictor]) -> type[BasePredictor]:
    KINDS[cls.kind] = cls
    return cls


def load_file(path: str | Path) -> BasePredictor:
    """Load an accuracy predictor of any kind (files without a `kind` are the original MLP)."""
    from hwnas.search_space import Space

    path = Path(path)
    try:
        d = read_json(path)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not an accuracy predictor file")
        kind = d.get("kind", "mlp")
        if kind not in KINDS:
            raise ValueError(f"unknown predictor kind {kind!r}; known: {sorted(KINDS)}")
        with np.load(path.parent / d["arrays"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        pred = KINDS[kind]._from_state(Space.from_dict(d["space"]), d, arrays)
        pred.report = dict(d.get("report") or {})
        return pred
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProfileError(f"{path}: cannot read accuracy predictor ({e})") from None
