"""Accuracy predictors fitted on (arch, accuracy) pairs, the archs to measure, and the choice of kind.

    from hwnas.estimators.accuracy import fit_accuracy_predictor, load_accuracy_predictor, stratified_archs
    archs = stratified_archs(space, 500, seed=0)      # what to measure through the supernet
    pred = fit_accuracy_predictor(space, archs, accs, kind="gp", path="acc.json")
    load_accuracy_predictor("acc.json").predict(arch)

Kinds (one interface: `Kind.fit(space, archs, accs, ...)`, `predict_many`, `predict`, `save`,
`Kind.load`; the JSON names its `kind`): `mlp` (OFA's MLP, `AccuracyPredictor`), `ensemble` (K MLPs
averaged), `gp` (Gaussian process, ARD RBF + linear kernel), `gbm` (LightGBM trees), `rank_mlp`
(MLP on a pairwise ranking loss). `benchmarks/accuracy_predictor.py` compares them by held-out rank
correlation and `best_kind` picks the winner from its results. Imports: search_space, estimators.flops.
"""

from __future__ import annotations

from hwnas.estimators.accuracy._base import (
    FEATURES,
    KINDS,
    MIN_PAIRS,
    BasePredictor,
    features,
    rank_metrics,
)
from hwnas.estimators.accuracy._gbm import GBMPredictor
from hwnas.estimators.accuracy._gp import GaussianProcess, GPPredictor
from hwnas.estimators.accuracy._mlp import AccuracyPredictor, EnsemblePredictor, RankMLPPredictor
from hwnas.estimators.accuracy._select import (
    best_kind,
    compare_kinds,
    fit_accuracy_predictor,
    fit_best,
    load_accuracy_predictor,
    stratified_archs,
)

__all__ = [
    "FEATURES",
    "KINDS",
    "MIN_PAIRS",
    "AccuracyPredictor",
    "BasePredictor",
    "EnsemblePredictor",
    "GBMPredictor",
    "GPPredictor",
    "GaussianProcess",
    "RankMLPPredictor",
    "best_kind",
    "compare_kinds",
    "features",
    "fit_accuracy_predictor",
    "fit_best",
    "load_accuracy_predictor",
    "rank_metrics",
    "stratified_archs",
]
