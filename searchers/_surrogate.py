"""Surrogate screening for the `evo` sampler (`evo-gp`): breed many children, evaluate few.

A generation of plain `evo` spends a trial on every child it breeds. With `surrogate="gp"`, each
generation after the first breeds `screen` times as many distinct children as it proposes, predicts
their objectives and constraint violation with Gaussian processes fitted on the study's completed
trials, and proposes the children that rank first among the current parents by those predictions
(the same constraint-domination, non-dominated sorting and crowding that selects survivors). So a
trial is spent on a child only when the surrogates say it would join, or come close to, the front.

The surrogates (one per objective, one for the violation when any trial violated a budget) are
`hwnas.estimators.accuracy.GaussianProcess` — ARD RBF plus a linear kernel — on the space's
encoding, plus the encoding times (resolution / largest resolution)^2 where the space has an
elastic resolution (cost grows with the square of the input side). An objective positive in
minimisation form (a latency, a memory) is fitted in log space, where costs are near additive; a
maximised one (negated) is fitted as it is (fitting its magnitude in log space measured worse on
`ofa-mbv3`: 0.970 of the best-known hypervolume at 300 trials against 0.980). Fits use the newest `FIT_MEMBERS` completed trials, so a generation's cost stays
bounded however long the study runs.

Measured (`benchmarks/search_quality.py`, docs/search.md): on `ofa-mbv3` (MACs against a GPU's
latency) screening 10 children per proposal lifted the share of the best-known front's hypervolume
at 300 trials from 0.959 (plain evo) to 0.98; on `fmnist-mbv3` with 3 objectives and a memory budget
it stayed under TPE, which is why `auto` uses it for 1-2 objectives only. A generation costs a few
GP fits (~1-3 s on 2 cores), where plain evo proposes thousands of archs a second: use it where an
evaluation costs more than that, or where the trial budget, not the time, is what counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hwnas.search_space import Arch, Space

__all__ = ["FIT_MEMBERS", "GP_MAX_ITER", "SCREEN", "SURROGATES", "screen_children", "surrogate_features"]

SURROGATES = ("gp",)
# Children drawn per proposal (10: ofa-mbv3 at 300 trials 0.98 of the best-known hypervolume; 3: 0.967
# with a ridge surrogate; fmnist-mbv3 at 300 trials: 5 / 10 / 20 gave 0.912 / 0.924 / 0.916, 30 without
# the resolution term 0.927).
SCREEN = 10
FIT_MEMBERS = 300  # newest completed trials the surrogates are fitted on
GP_MAX_ITER = 30  # L-BFGS iterations of each fit (100 measured no better on fmnist-mbv3, at 2x the cost)


def surrogate_features(space: Space, archs: Sequence[Arch]) -> np.ndarray:
    """The encoding, plus the encoding scaled by (resolution / the largest)^2 when resolution is elastic."""
    X = np.asarray(space.encode_many(list(archs)), dtype=np.float64)
    res = space.choices().get("r")
    if not res or len(res) < 2:
        return X
    r = np.array([a.resolution for a in archs], dtype=np.float64)[:, None] / float(max(res))
    return np.hstack([X, X * r * r])


def _gp(X: np.ndarray, y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Predictions at Z of a GP fitted on (X, y)."""
    from hwnas.estimators.accuracy import GaussianProcess

    return GaussianProcess(GP_MAX_ITER).fit(X, y).predict(Z)


def _fit_predict(X: np.ndarray, y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    if np.all(y > 0):  # positive: fitted in log space
        return np.exp(_gp(X, np.log(y), Z))
    return _gp(X, y, Z)


def screen_children(space: Space, members: Sequence, parents: Sequence, children: Sequence[Arch], k: int) -> list[Arch]:
    """The `k` of `children` that rank first among `parents` by surrogate predictions.

    `members`: completed trials to fit on (`_evo.Member`: arch, values in minimisation form,
    violation; an infinite violation is left out of the violation fit). Returns `children` itself
    when it holds `k` or fewer.
    """
    from hwnas.searchers._evo import Member, survivors

    children = list(children)
    if len(children) <= k or not members:
        return children[:k]
    X = surrogate_features(space, [m.arch for m in members])
    Z = surrogate_features(space, children)
    Y = np.array([m.values for m in members], dtype=np.float64)
    F = np.column_stack([_fit_predict(X, Y[:, j], Z) for j in range(Y.shape[1])])
    V = np.array([m.violation for m in members], dtype=np.float64)
    ok = np.isfinite(V)
    v = np.zeros(len(children))
    if ok.sum() >= 2 and (V[ok] > 0).any():
        v = np.maximum(_gp(X[ok], V[ok], Z), 0.0)
        # a GP never predicts an exact 0: read what is small against the violations seen as none
        v[v < 1e-3 * float(V[ok].max())] = 0.0
    pool = list(parents) + [Member(-1 - i, c, tuple(float(x) for x in f), float(vi))
                            for i, (c, f, vi) in enumerate(zip(children, F, v))]
    ranked = survivors(pool, len(pool))
    return [m.arch for m in ranked if m.number < 0][:k]

