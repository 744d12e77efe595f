"""Accuracy predictor: an OFA-style MLP on `space.encode(arch)`, trained from (arch, accuracy) pairs.

Once-for-All fits a 3-layer MLP (400 hidden units, ReLU) on the one-hot arch encoding to the
accuracies of a few thousand subnets measured with the supernet; the search then queries the MLP
instead of evaluating subnets. Same here, at any size: `AccuracyPredictor.fit(space, archs, accs)`.
The pairs come from `supernet.evaluate(arch)` (BN recalibrated); held-out Spearman is reported by
`fit(..., holdout=0.2)` in `report`. Saved as JSON + `.npz` weights (no pickle).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_bytes, atomic_write_json, read_json
from hwnas.errors import ProfileError

__all__ = ["AccuracyPredictor"]


class AccuracyPredictor:
    """MLP (encoding -> hidden x layers -> 1) predicting accuracy (same unit as the training targets)."""

    def __init__(self, space: Any, *, hidden: int = 400, layers: int = 3, weights: list[np.ndarray] | None = None,
                 y_mean: float = 0.0, y_std: float = 1.0, report: dict[str, Any] | None = None):
        if not 1 <= layers <= 8 or not 1 <= hidden <= 8192:
            raise ValueError(f"layers={layers} must be in 1..8 and hidden={hidden} in 1..8192")
        self.space, self.hidden, self.layers = space, hidden, layers
        self.weights = weights
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.report = dict(report or {})

    name = "accuracy"

    def _module(self) -> Any:
        import torch
        from torch import nn

        d = len(self.space.encoding_names())
        mods: list[nn.Module] = []
        for i in range(self.layers - 1):
            mods += [nn.Linear(d if i == 0 else self.hidden, self.hidden), nn.ReLU()]
        mods.append(nn.Linear(d if self.layers == 1 else self.hidden, 1))
        net = nn.Sequential(*mods)
        if self.weights is not None:
            with torch.no_grad():
                for p, w in zip(net.parameters(), self.weights):
                    p.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
        return net

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, epochs: int = 300,
            lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0, hidden: int = 400, layers: int = 3
            ) -> AccuracyPredictor:
        """Train on (arch, accuracy) pairs; `holdout` share is kept out to report Spearman, then refit on all."""
        from hwnas.estimators.latency import spearman

        archs = [space.parse(a) if isinstance(a, str) else a for a in archs]
        y = np.asarray(accuracies, dtype=np.float64)
        if len(y) != len(archs) or len(y) < 5:
            raise ValueError(f"need >= 5 (arch, accuracy) pairs, got {len(y)} accuracies for {len(archs)} archs")
        if not 0.0 <= holdout < 0.9:
            raise ValueError(f"holdout={holdout} must be in [0, 0.9)")
        X = space.encode_many(archs)
        report: dict[str, Any] = {"n": len(y)}
        if holdout > 0:
            idx = np.random.default_rng(seed).permutation(len(y))
            n_test = max(2, int(round(holdout * len(y))))
            te, tr = idx[:n_test], idx[n_test:]
            m = cls(space, hidden=hidden, layers=layers)._train(X[tr], y[tr], epochs, lr, weight_decay, seed)
            p = m.predict_encoded(X[te])
            report.update({"holdout_n": int(n_test), "holdout_spearman": spearman(p, y[te]),
                           "holdout_rmse": float(np.sqrt(np.mean((p - y[te]) ** 2)))})
        out = cls(space, hidden=hidden, layers=layers)._train(X, y, epochs, lr, weight_decay, seed)
        out.report = report
        return out

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int, lr: float, wd: float, seed: int) -> AccuracyPredictor:
        import torch

        torch.manual_seed(seed)
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        net = self._module()
        Xt = torch.from_numpy(X.astype(np.float32))
        yt = torch.from_numpy(((y - self.y_mean) / self.y_std).astype(np.float32))[:, None]
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
        bs = min(256, len(y))
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), bs):
                b = perm[i: i + bs]
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(net(Xt[b]), yt[b])
                loss.backward()
                opt.step()
        self.weights = [p.detach().numpy().copy() for p in net.parameters()]
        return self

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ValueError("predictor is not trained")
        # The MLP's forward in numpy (float32, as torch ran it): a search calls this once per trial,
        # and building the torch module each time cost more than the arithmetic.
        h = np.asarray(X, dtype=np.float32)
        ws = [np.asarray(w, dtype=np.float32) for w in self.weights]
        for i in range(0, len(ws), 2):  # parameters in order: weight, bias per Linear
            h = h @ ws[i].T + ws[i + 1]
            if i + 2 < len(ws):
                h = np.maximum(h, 0.0)
        return h[:, 0].astype(np.float64) * self.y_std + self.y_mean

    def predict_many(self, archs: list) -> np.ndarray:
        archs = [self.space.parse(a) if isinstance(a, str) else a for a in archs]
        return self.predict_encoded(self.space.encode_many(archs))

    def predict(self, arch: Any) -> float:
        return float(self.predict_many([arch])[0])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        buf = io.BytesIO()
        np.savez(buf, **{f"w{i}": w for i, w in enumerate(self.weights or [])})
        atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        return atomic_write_json(path, {"format": "hwnas-accuracy-predictor", "space": self.space.to_dict(),
                                        "hidden": self.hidden, "layers": self.layers, "y_mean": self.y_mean,
                                        "y_std": self.y_std, "n_arrays": len(self.weights or []),
                                        "arrays": path.with_suffix(".npz").name, "report": self.report})

    @classmethod
    def load(cls, path: str | Path) -> AccuracyPredictor:
        from hwnas.search_space import Space

        path = Path(path)
        try:
            d = read_json(path)
            if d.get("format") != "hwnas-accuracy-predictor":
                raise ValueError("not an accuracy predictor file")
            with np.load(path.parent / d["arrays"], allow_pickle=False) as z:
                weights = [z[f"w{i}"] for i in range(d["n_arrays"])]
            return cls(Space.from_dict(d["space"]), hidden=d["hidden"], layers=d["layers"], weights=weights,
                       y_mean=d["y_mean"], y_std=d["y_std"], report=d.get("report"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProfileError(f"{path}: cannot read accuracy predictor ({e})") from None
