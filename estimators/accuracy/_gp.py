"""A Gaussian-process accuracy predictor: RBF kernel with one length scale per feature (ARD) plus a
linear kernel, hyperparameters fitted by maximising the marginal likelihood (L-BFGS, exact gradients).

Why a linear term: on a supernet, accuracy is close to additive in the per-block choices (a wider
expand here, a larger kernel there), which a dot-product kernel expresses exactly with few pairs; the
ARD RBF term then models the interactions. A weak Gaussian prior on the log length scales keeps a
hundred of them from overfitting a few hundred pairs. About 40 lines of numpy, so the file holds
only arrays (training features, weights, hyperparameters): nothing to unpickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hwnas.estimators.accuracy._base import BasePredictor, register

__all__ = ["GPPredictor", "GaussianProcess"]

_PRIOR_SD = 1.5  # sd of the prior on each log length scale, around the median-distance heuristic


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _kernels(X: np.ndarray, Z: np.ndarray, ell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """exp(-0.5 |(x - z) / ell|^2) and x . z."""
    return np.exp(-0.5 * _sqdist(X / ell, Z / ell)), X @ Z.T


def _nll(theta: np.ndarray, X: np.ndarray, y: np.ndarray, ell0: float) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood (plus the length-scale prior) and its gradient in log space."""
    D = X.shape[1]
    sf2, ell, sl2, sn2 = np.exp(theta[0]), np.exp(theta[1:1 + D]), np.exp(theta[1 + D]), np.exp(theta[2 + D])
    R, Lin = _kernels(X, X, ell)
    K = sf2 * R + sl2 * Lin + (sn2 + 1e-8) * np.eye(len(y))
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    Kinv = np.linalg.solve(L.T, np.linalg.solve(L, np.eye(len(y))))
    W = np.outer(alpha, alpha) - Kinv
    z = (theta[1:1 + D] - np.log(ell0)) / _PRIOR_SD
    nll = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * (z * z).sum()
    M = W * (sf2 * R)
    g = np.empty_like(theta)
    g[0] = -0.5 * M.sum()
    # d K_ij / d log ell_d = K_ij * (x_id - x_jd)^2 / ell_d^2, summed against W without an n x n x D array
    Xs = X / ell
    g[1:1 + D] = -0.5 * (2.0 * (Xs * Xs).T @ M.sum(1) - 2.0 * (Xs * (M @ Xs)).sum(0)) + z / _PRIOR_SD
    g[1 + D] = -0.5 * (W * (sl2 * Lin)).sum()
    g[2 + D] = -0.5 * sn2 * np.trace(W)
    return float(nll), g


class GaussianProcess:
    """The regression model alone, on a feature matrix: `GaussianProcess(max_iter).fit(X, y).predict(Z)`.

    `sf2 * RBF_ARD + sl2 * linear + noise` on standardised targets, hyperparameters by maximum
    marginal likelihood (L-BFGS-B from the median-distance heuristic, so a fit is deterministic).
    `GPPredictor` wraps it for archs; the `evo` sampler's surrogate screening (searchers/_surrogate.py)
    fits one per objective on a study's trials.
    """

    def __init__(self, max_iter: int = 200):
        if not 1 <= max_iter <= 10_000:
            raise ValueError(f"max_iter={max_iter} must be in 1..10000")
        self.max_iter = max_iter
        self.X: np.ndarray | None = None
        self.alpha = self.theta = None
        self.y_mean, self.y_std = 0.0, 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianProcess:
        from scipy.optimize import minimize

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        yz = (y - self.y_mean) / self.y_std
        D = X.shape[1]
        # length scales start at the median pairwise distance (deterministic: no seed needed)
        S = X[:500]
        med = float(np.sqrt(np.median(_sqdist(S, S)[np.triu_indices(len(S), 1)])))
        ell0 = max(med, 0.5)
        lin = float(np.mean((X * X).sum(1))) or 1.0
        theta0 = np.concatenate([[0.0], np.full(D, np.log(ell0)), [np.log(0.5 / lin)], [np.log(0.1)]])
        bounds = [(-5.0, 3.0)] + [(np.log(0.05), np.log(100.0))] * D + [(-12.0, 3.0), (np.log(1e-4), np.log(2.0))]
        res = minimize(_nll, theta0, args=(X, yz, ell0), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": self.max_iter})
        self.theta = res.x
        sf2, ell, sl2, sn2 = self._hyper()
        R, Lin = _kernels(X, X, ell)
        K = sf2 * R + sl2 * Lin + (sn2 + 1e-8) * np.eye(len(y))
        self.alpha = np.linalg.solve(K, yz)
        self.X = X
        return self

    def _hyper(self) -> tuple[float, np.ndarray, float, float]:
        D = len(self.theta) - 3
        t = self.theta
        return float(np.exp(t[0])), np.exp(t[1:1 + D]), float(np.exp(t[1 + D])), float(np.exp(t[2 + D]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.X is None:
            raise ValueError("predictor is not trained")
        sf2, ell, sl2, _ = self._hyper()
        R, Lin = _kernels(np.asarray(X, dtype=np.float64), self.X, ell)
        return (sf2 * R + sl2 * Lin) @ self.alpha * self.y_std + self.y_mean


@register
class GPPredictor(BasePredictor):
    """Gaussian process on the features: `sf2 * RBF_ARD + sl2 * linear + noise`, targets standardised."""

    kind = "gp"

    def __init__(self, space: Any, *, features: str = "encoding", max_iter: int = 200,
                 report: dict[str, Any] | None = None):
        self.gp = GaussianProcess(max_iter)
        super().__init__(space, features=features, report=report)

    @property
    def max_iter(self) -> int:
        return self.gp.max_iter

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, seed: int = 0,
            **kw: Any) -> GPPredictor:
        return cls(space, **kw).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)

    def _clone(self) -> GPPredictor:
        return type(self)(self.space, features=self.features, max_iter=self.max_iter)

    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> GPPredictor:
        self.gp.fit(X, y)
        return self

    def _predict_x(self, X: np.ndarray) -> np.ndarray:
        return self.gp.predict(X)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        g = self.gp
        return ({"max_iter": self.max_iter, "y_mean": g.y_mean, "y_std": g.y_std},
                {"X": g.X, "alpha": g.alpha, "theta": g.theta})

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GPPredictor:
        out = cls(space, features=meta["features"], max_iter=meta["max_iter"])
        g = out.gp
        g.X, g.alpha, g.theta = arrays["X"], arrays["alpha"], arrays["theta"]
        g.y_mean, g.y_std = float(meta["y_mean"]), float(meta["y_std"])
        return out
