"""Few-shot latency prediction: a predictor for a new device from k whole-network measurements.

No lookup table is needed: the user times k networks on the device (a phone, an accelerator) and
we fit, in log space,

    log t(arch) = c + sum_d a_d * log prior_d(arch) + w . encode(arch)

- `prior_d` are latency predictors of *other* devices (their own LUT predictors, or models fitted on
  their many measurements): they carry the structure "which archs are slow", the k target samples
  only have to say how this device weighs it (HELP's idea of transferring across devices, done with
  a linear map instead of meta-learning);
- `w` is a ridge correction on the arch encoding for what no prior device shows;
- the two penalties (on `a` and on `w`) are picked by exact leave-one-out error on the k samples, so
  k = 10 leans on the priors and k = 100 trusts the encoding more. Without priors it is plain ridge on
  the encoding (what you get with no other device).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_json, read_json
from hwnas.errors import ProfileError

__all__ = ["fit_fewshot", "FewShotModel", "FewShotLatencyPredictor", "AdditiveLatencyModel"]

_LAMBDA_A = (0.01, 0.1, 1.0, 10.0)
_LAMBDA_W = (0.1, 1.0, 10.0, 100.0, 1000.0, math.inf)


class FewShotModel:
    """Coefficients of the log-linear few-shot model (pure numpy; see module docstring)."""

    def __init__(self, c: float, a: np.ndarray, w: np.ndarray, lam: tuple[float, float], loo_mse: float):
        self.c, self.a, self.w, self.lam, self.loo_mse = float(c), np.asarray(a, float), np.asarray(w, float), lam, loo_mse

    def predict_log(self, X: np.ndarray | None, P: np.ndarray | None) -> np.ndarray:
        n = len(X) if X is not None else len(P)
        out = np.full(n, self.c)
        if P is not None and self.a.size:
            out += np.log(P) @ self.a
        if X is not None and self.w.size:
            out += X @ self.w
        return out

    def predict(self, X: np.ndarray | None, P: np.ndarray | None) -> np.ndarray:
        return np.exp(self.predict_log(X, P))

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.c, "a": self.a.tolist(), "w": self.w.tolist(), "lambda": list(self.lam), "loo_mse": self.loo_mse}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FewShotModel:
        return cls(d["c"], np.asarray(d["a"]), np.asarray(d["w"]), tuple(d["lambda"]), d["loo_mse"])


def _ridge_scaled(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Ridge (lambda 1 on pre-scaled columns) with unpenalised intercept; returns coef, intercept, LOO MSE."""
    n = len(y)
    mz, my = Z.mean(0), y.mean()
    Zc, yc = Z - mz, y - my
    if Z.shape[1] == 0:
        return np.zeros(0), float(my), float(np.mean((yc * n / (n - 1)) ** 2))
    U, s, Vt = np.linalg.svd(Zc, full_matrices=False)
    d = s / (s**2 + 1.0)
    coef = Vt.T @ (d * (U.T @ yc))
    h = np.einsum("ij,j,ij->i", U, s * d, U) + 1.0 / n
    r = (yc - Zc @ coef) / np.clip(1 - h, 1e-6, None)
    return coef, float(my - mz @ coef), float(np.mean(r**2))


def fit_fewshot(X: np.ndarray | None, y: Any, P: np.ndarray | None = None, *,
                lambdas_a: Sequence[float] = _LAMBDA_A, lambdas_w: Sequence[float] = _LAMBDA_W) -> FewShotModel:
    """Fit on k samples: `X` (k, F) encodings, `y` (k,) ms, `P` (k, D) prior devices' predicted ms."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3 or not np.all(y > 0):
        raise ValueError(f"need >= 3 positive latencies, got {len(y)}")
    ly = np.log(y)
    LP = np.log(np.asarray(P, float)) if P is not None and np.size(P) else np.zeros((len(y), 0))
    Xf = np.asarray(X, float) if X is not None else np.zeros((len(y), 0))
    best: tuple[float, Any] = (math.inf, None)
    for la, lw in itertools.product(lambdas_a if LP.shape[1] else (1.0,), lambdas_w):
        if (Xf.shape[1] == 0 and not math.isinf(lw)) or (LP.shape[1] == 0 and math.isinf(lw)):
            continue  # nothing to fit with, or an intercept-only model (constant predictions)
        blocks, scales = [LP / math.sqrt(la)], [1 / math.sqrt(la)] * LP.shape[1]
        if not math.isinf(lw):
            blocks.append(Xf / math.sqrt(lw))
            scales += [1 / math.sqrt(lw)] * Xf.shape[1]
        Z = np.concatenate(blocks, axis=1)
        coef, c, mse = _ridge_scaled(Z, ly)
        if mse < best[0]:
            coef = coef * np.asarray(scales)
            a = coef[: LP.shape[1]]
            w = coef[LP.shape[1]:] if not math.isinf(lw) else np.zeros(Xf.shape[1])
            best = (mse, FewShotModel(c, a, w, (la, lw), mse))
    if best[1] is None:
        raise ValueError("few-shot fit needs an encoding (X) or priors (P)")
    return best[1]


class AdditiveLatencyModel:
    """A many-sample predictor for a prior device: ridge on the encoding in log space (LOO-chosen alpha).

    Used where a device has many whole-network measurements but no lookup table (the HELP tables).
    """

    def __init__(self, coef: np.ndarray, intercept: float):
        self.coef, self.intercept = np.asarray(coef, float), float(intercept)

    @classmethod
    def fit(cls, X: np.ndarray, y: Any, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0)) -> AdditiveLatencyModel:
        from hwnas.estimators.latency import ridge_loo

        _, coef, _, _ = ridge_loo(np.asarray(X, float), np.log(np.asarray(y, float)), tuple(alphas))
        return cls(coef[:-1], coef[-1])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.exp(np.asarray(X, float) @ self.coef + self.intercept)


class FewShotLatencyPredictor:
    """Latency predictor for a device known only through k measured networks (+ optional prior predictors).

    `priors` are objects with `predict_many(archs) -> ms` (e.g. `LatencyPredictor`s of other devices
    of the same space). Save/load keeps the coefficients in JSON; priors are saved by the caller and
    passed again to `load` in the same order (their names are checked).
    """

    def __init__(self, space: Any, *, device_name: str, priors: Sequence[Any] = (), prior_names: Sequence[str] = (),
                 encoder: Callable[[list], np.ndarray] | None = None):
        self.space = space
        self.device_name = device_name
        self.priors = list(priors)
        self.prior_names = list(prior_names) or [getattr(p, "name", f"prior{i}") for i, p in enumerate(self.priors)]
        self.encoder = encoder or (lambda archs: space.encode_many(archs).astype(np.float64))
        self.model: FewShotModel | None = None

    @property
    def name(self) -> str:
        return f"latency_ms@{self.device_name}"

    def _P(self, archs: list) -> np.ndarray | None:
        if not self.priors:
            return None
        return np.column_stack([np.maximum(p.predict_many(archs), 1e-9) for p in self.priors])

    def fit(self, archs: list, latency_ms: Any) -> FewShotLatencyPredictor:
        archs = [self.space.parse(a) if isinstance(a, str) else a for a in archs]
        self.model = fit_fewshot(self.encoder(archs), latency_ms, self._P(archs))
        return self

    def predict_many(self, archs: list) -> np.ndarray:
        if self.model is None:
            raise ValueError("call fit(archs, latency_ms) first")
        archs = [self.space.parse(a) if isinstance(a, str) else a for a in archs]
        return self.model.predict(self.encoder(archs), self._P(archs))

    def predict(self, arch: Any) -> float:
        return float(self.predict_many([arch])[0])

    def save(self, path: str | Path) -> Path:
        if self.model is None:
            raise ValueError("nothing to save: fit first")
        return atomic_write_json(path, {"format": "hwnas-fewshot-latency", "device": self.device_name,
                                        "space": self.space.to_dict(), "priors": self.prior_names,
                                        "model": self.model.to_dict()})

    @classmethod
    def load(cls, path: str | Path, *, priors: Sequence[Any] = ()) -> FewShotLatencyPredictor:
        from hwnas.search_space import Space

        try:
            d = read_json(path)
            space = Space.from_dict(d["space"])
            model = FewShotModel.from_dict(d["model"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProfileError(f"{path}: cannot read few-shot predictor ({e})") from None
        names = [getattr(p, "name", f"prior{i}") for i, p in enumerate(priors)]
        if len(priors) != len(d["priors"]) or (names != d["priors"] and not all(n.startswith("prior") for n in names)):
            raise ProfileError(f"{path} was fitted with priors {d['priors']}, got {names}")
        out = cls(space, device_name=d["device"], priors=priors, prior_names=d["priors"])
        out.model = model
        return out
