"""MLP accuracy predictors: the OFA-style MLP, an ensemble of MLPs, and an MLP with a ranking loss.

Once-for-All fits a 3-layer MLP (400 hidden units, ReLU) on the one-hot arch encoding to the
accuracies of a few thousand subnets measured with the supernet; the search then queries the MLP
instead of evaluating subnets. `AccuracyPredictor` is that MLP (its file format is unchanged since
the first runs, so their predictors still load). `EnsemblePredictor` averages K of them trained from
different seeds (less variance on a few hundred pairs). `RankMLPPredictor` trains the same network
on a RankNet loss over pairs of archs plus a small MSE term: a search only needs the order of archs,
and the MSE term keeps its outputs in accuracy units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hwnas.estimators.accuracy._base import BasePredictor, register

__all__ = ["AccuracyPredictor", "EnsemblePredictor", "RankMLPPredictor"]


def _check_shape(hidden: int, layers: int) -> None:
    if not 1 <= layers <= 8 or not 1 <= hidden <= 8192:
        raise ValueError(f"layers={layers} must be in 1..8 and hidden={hidden} in 1..8192")


def _forward(weights: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    # The MLP's forward in numpy (float32, as torch ran it): a search calls this once per trial,
    # and building the torch module each time cost more than the arithmetic.
    h = np.asarray(X, dtype=np.float32)
    ws = [np.asarray(w, dtype=np.float32) for w in weights]
    for i in range(0, len(ws), 2):  # parameters in order: weight, bias per Linear
        h = h @ ws[i].T + ws[i + 1]
        if i + 2 < len(ws):
            h = np.maximum(h, 0.0)
    return h[:, 0].astype(np.float64)


def _train_mlp(X: np.ndarray, yz: np.ndarray, *, hidden: int, layers: int, epochs: int, lr: float, wd: float,
               seed: int, rank_weight: float = 0.0, mse_weight: float = 1.0) -> list[np.ndarray]:
    """Adam on standardised targets `yz`; with `rank_weight` > 0 a RankNet term over every pair of the batch."""
    import torch

    # one thread: a 400-wide MLP on a few hundred rows gains nothing from two, and on a busy machine
    # the second thread's spin-waits made a fit several times slower; restored on the way out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_loop(X, yz, hidden=hidden, layers=layers, epochs=epochs, lr=lr, wd=wd, seed=seed,
                           rank_weight=rank_weight, mse_weight=mse_weight)
    finally:
        torch.set_num_threads(threads)


def _train_loop(X: np.ndarray, yz: np.ndarray, *, hidden: int, layers: int, epochs: int, lr: float, wd: float,
                seed: int, rank_weight: float, mse_weight: float) -> list[np.ndarray]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    d = X.shape[1]
    mods: list[nn.Module] = []
    for i in range(layers - 1):
        mods += [nn.Linear(d if i == 0 else hidden, hidden), nn.ReLU()]
    mods.append(nn.Linear(d if layers == 1 else hidden, 1))
    net = nn.Sequential(*mods)
    Xt = torch.from_numpy(X.astype(np.float32))
    yt = torch.from_numpy(yz.astype(np.float32))[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    bs = min(256, len(yz))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(yz), generator=g)
        for i in range(0, len(yz), bs):
            b = perm[i: i + bs]
            opt.zero_grad()
            p = net(Xt[b])
            loss = mse_weight * torch.nn.functional.mse_loss(p, yt[b]) if mse_weight > 0 else 0.0
            if rank_weight > 0:
                dp = p - p.T  # dp[i, j] = p_i - p_j
                sign = torch.sign(yt[b] - yt[b].T)  # ties (0) carry no ranking signal
                mask = sign != 0
                if mask.any():
                    # RankNet: -log sigmoid(sign * (p_i - p_j)), averaged over ordered pairs
                    loss = loss + rank_weight * torch.nn.functional.softplus(-sign[mask] * dp[mask]).mean()
            loss.backward()
            opt.step()
    return [p.detach().numpy().copy() for p in net.parameters()]


@register
class AccuracyPredictor(BasePredictor):
    """MLP (features -> hidden x layers -> 1) predicting accuracy (same unit as the training targets)."""

    kind = "mlp"

    def __init__(self, space: Any, *, hidden: int = 400, layers: int = 3, weights: list[np.ndarray] | None = None,
                 y_mean: float = 0.0, y_std: float = 1.0, report: dict[str, Any] | None = None,
                 features: str = "encoding", epochs: int = 300, lr: float = 1e-3, weight_decay: float = 1e-4):
        _check_shape(hidden, layers)
        super().__init__(space, features=features, report=report)
        self.hidden, self.layers = hidden, layers
        self.weights = weights
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, epochs: int = 300,
            lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0, hidden: int = 400, layers: int = 3,
            features: str = "encoding") -> AccuracyPredictor:
        """Train on (arch, accuracy) pairs; `holdout` share is kept out to report Spearman, then refit on all."""
        return cls(space, hidden=hidden, layers=layers, features=features, epochs=epochs, lr=lr,
                   weight_decay=weight_decay).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)

    def _settings(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "layers": self.layers, "features": self.features, "epochs": self.epochs,
                "lr": self.lr, "weight_decay": self.weight_decay}

    def _clone(self) -> AccuracyPredictor:
        return type(self)(self.space, **self._settings())

    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> AccuracyPredictor:
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        self.weights = _train_mlp(X, (y - self.y_mean) / self.y_std, hidden=self.hidden, layers=self.layers,
                                  epochs=self.epochs, lr=self.lr, wd=self.weight_decay, seed=seed)
        return self

    def _predict_x(self, X: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ValueError("predictor is not trained")
        return _forward(self.weights, X) * self.y_std + self.y_mean

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        # the keys of the first file format, kept so that old runs' predictors load and vice versa
        meta = {"hidden": self.hidden, "layers": self.layers, "y_mean": self.y_mean, "y_std": self.y_std,
                "n_arrays": len(self.weights or []), "train": {"epochs": self.epochs, "lr": self.lr,
                                                                "weight_decay": self.weight_decay}}
        return meta, {f"w{i}": w for i, w in enumerate(self.weights or [])}

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> AccuracyPredictor:
        weights = [arrays[f"w{i}"] for i in range(meta["n_arrays"])]
        return cls(space, hidden=meta["hidden"], layers=meta["layers"], weights=weights, y_mean=meta["y_mean"],
                   y_std=meta["y_std"], features=meta.get("features", "encoding"), **meta.get("train", {}))


@register
class RankMLPPredictor(AccuracyPredictor):
    """The same MLP trained on a pairwise RankNet loss plus `mse_weight` x MSE (outputs stay in accuracy units)."""

    kind = "rank_mlp"

    def __init__(self, space: Any, *, mse_weight: float = 0.3, **kw: Any):
        if not 0.0 <= mse_weight <= 100.0:
            raise ValueError(f"mse_weight={mse_weight} must be in [0, 100]")
        super().__init__(space, **kw)
        self.mse_weight = float(mse_weight)

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, seed: int = 0,
            mse_weight: float = 0.3, **kw: Any) -> RankMLPPredictor:
        return cls(space, mse_weight=mse_weight, **kw).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "mse_weight": self.mse_weight}

    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> RankMLPPredictor:
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        self.weights = _train_mlp(X, (y - self.y_mean) / self.y_std, hidden=self.hidden, layers=self.layers,
                                  epochs=self.epochs, lr=self.lr, wd=self.weight_decay, seed=seed,
                                  rank_weight=1.0, mse_weight=self.mse_weight)
        return self

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super()._state()
        return {**meta, "mse_weight": self.mse_weight}, arrays

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RankMLPPredictor:
        weights = [arrays[f"w{i}"] for i in range(meta["n_arrays"])]
        return cls(space, mse_weight=meta["mse_weight"], hidden=meta["hidden"], layers=meta["layers"],
                   weights=weights, y_mean=meta["y_mean"], y_std=meta["y_std"], features=meta["features"],
                   **meta.get("train", {}))


@register
class EnsemblePredictor(BasePredictor):
    """The mean of `members` MLPs, each trained from its own seed (seed, seed+1, ...)."""

    kind = "ensemble"

    def __init__(self, space: Any, *, members: int = 5, hidden: int = 400, layers: int = 3, epochs: int = 300,
                 lr: float = 1e-3, weight_decay: float = 1e-4, features: str = "encoding",
                 report: dict[str, Any] | None = None):
        if not 2 <= members <= 64:
            raise ValueError(f"members={members} must be in 2..64")
        _check_shape(hidden, layers)
        super().__init__(space, features=features, report=report)
        self.members = members
        self.settings = {"hidden": hidden, "layers": layers, "epochs": epochs, "lr": lr, "weight_decay": weight_decay}
        self.nets: list[AccuracyPredictor] = []

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, seed: int = 0,
            **kw: Any) -> EnsemblePredictor:
        return cls(space, **kw).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)

    def _clone(self) -> EnsemblePredictor:
        return type(self)(self.space, members=self.members, features=self.features, **self.settings)

    def _member(self) -> AccuracyPredictor:
        return AccuracyPredictor(self.space, features=self.features, **self.settings)

    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> EnsemblePredictor:
        self.nets = [self._member()._fit_xy(X, y, seed + k) for k in range(self.members)]
        return self

    def _predict_x(self, X: np.ndarray) -> np.ndarray:
        if not self.nets:
            raise ValueError("predictor is not trained")
        return np.mean([m._predict_x(X) for m in self.nets], axis=0)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"members": self.members, **self.settings, "y_mean": [m.y_mean for m in self.nets],
                "y_std": [m.y_std for m in self.nets], "n_arrays": len(self.nets[0].weights or []) if self.nets else 0}
        arrays = {f"m{k}_w{i}": w for k, m in enumerate(self.nets) for i, w in enumerate(m.weights or [])}
        return meta, arrays

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EnsemblePredictor:
        out = cls(space, members=meta["members"], hidden=meta["hidden"], layers=meta["layers"], epochs=meta["epochs"],
                  lr=meta["lr"], weight_decay=meta["weight_decay"], features=meta["features"])
        for k in range(meta["members"]):
            m = out._member()
            m.weights = [arrays[f"m{k}_w{i}"] for i in range(meta["n_arrays"])]
            m.y_mean, m.y_std = float(meta["y_mean"][k]), float(meta["y_std"][k])
            out.nets.append(m)
        return out
