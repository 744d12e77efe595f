"""A gradient-boosted-trees accuracy predictor (LightGBM).

LightGBM is maintained, fast on a few hundred rows and two cores, and writes its model as text
(`Booster.model_to_string`), which goes into the predictor's JSON as is: no pickle of a Python
object. Small leaves (`min_data_in_leaf` 5) because a few hundred pairs are all there is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hwnas.estimators.accuracy._base import BasePredictor, register

__all__ = ["GBMPredictor"]


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as e:  # a dependency in pyproject; a clear message for an old environment
        raise ImportError("the 'gbm' accuracy predictor needs lightgbm (pip install lightgbm; "
                          "scripts/setup.sh installs it)") from e
    return lightgbm


@register
class GBMPredictor(BasePredictor):
    """LightGBM regression trees on the features (targets standardised, `rounds` trees)."""

    kind = "gbm"

    def __init__(self, space: Any, *, features: str = "encoding", rounds: int = 400, learning_rate: float = 0.05,
                 num_leaves: int = 15, min_data_in_leaf: int = 5, report: dict[str, Any] | None = None):
        if not 1 <= rounds <= 100_000 or not 0.0 < learning_rate <= 1.0:
            raise ValueError(f"rounds={rounds} must be in 1..100000 and learning_rate={learning_rate} in (0, 1]")
        if not 2 <= num_leaves <= 4096 or not 1 <= min_data_in_leaf <= 10_000:
            raise ValueError(f"num_leaves={num_leaves} must be in 2..4096, min_data_in_leaf={min_data_in_leaf} in 1..10000")
        super().__init__(space, features=features, report=report)
        self.rounds, self.learning_rate = rounds, learning_rate
        self.num_leaves, self.min_data_in_leaf = num_leaves, min_data_in_leaf
        self.booster: Any = None
        self.y_mean, self.y_std = 0.0, 1.0

    @classmethod
    def fit(cls, space: Any, archs: list, accuracies: Any, *, holdout: float = 0.2, seed: int = 0,
            **kw: Any) -> GBMPredictor:
        return cls(space, **kw).fit_pairs(archs, accuracies, holdout=holdout, seed=seed)

    def _settings(self) -> dict[str, Any]:
        return {"features": self.features, "rounds": self.rounds, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf}

    def _clone(self) -> GBMPredictor:
        return type(self)(self.space, **self._settings())

    def _fit_xy(self, X: np.ndarray, y: np.ndarray, seed: int) -> GBMPredictor:
        lgb = _lightgbm()
        self.y_mean, self.y_std = float(y.mean()), float(y.std() or 1.0)
        params = {"objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_data_in_leaf": self.min_data_in_leaf, "min_data_in_bin": 1, "feature_fraction": 0.8,
                  "lambda_l2": 1.0, "seed": seed, "deterministic": True, "force_row_wise": True,
                  "num_threads": 1, "verbose": -1}
        data = lgb.Dataset(np.asarray(X, dtype=np.float64), (y - self.y_mean) / self.y_std, params={"verbose": -1})
        self.booster = lgb.train(params, data, num_boost_round=self.rounds)
        return self

    def _predict_x(self, X: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise ValueError("predictor is not trained")
        p = self.booster.predict(np.asarray(X, dtype=np.float64), num_threads=1)
        return np.asarray(p, dtype=np.float64) * self.y_std + self.y_mean

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {k: v for k, v in self._settings().items() if k != "features"}
        # the trees are LightGBM's own text format in the JSON; the npz keeps the target scaling
        return {**meta, "model": self.booster.model_to_string()}, {"y_scale": np.array([self.y_mean, self.y_std])}

    @classmethod
    def _from_state(cls, space: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GBMPredictor:
        lgb = _lightgbm()
        out = cls(space, features=meta["features"], rounds=meta["rounds"], learning_rate=meta["learning_rate"],
                  num_leaves=meta["num_leaves"], min_data_in_leaf=meta["min_data_in_leaf"])
        if not isinstance(meta["model"], str):
            raise ValueError("the 'model' field must be LightGBM's model text")
        try:
            out.booster = lgb.Booster(model_str=meta["model"])
        except lgb.basic.LightGBMError as e:
            raise ValueError(f"LightGBM cannot read the model text: {e}") from None
        out.y_mean, out.y_std = (float(v) for v in arrays["y_scale"])
        return out
