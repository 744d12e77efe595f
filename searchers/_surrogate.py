"""Surrogate screening for the `evo` sampler (`evo-gp`, `evo-hvi`): breed many children, evaluate few.

A generation of plain `evo` spends a trial on every child it breeds. With `surrogate="gp"`, each
generation after the first breeds `screen` times as many distinct children as it proposes, predicts
their objectives and constraint violation with Gaussian processes fitted on the study's completed
trials, and proposes the children that rank first among the current parents by those predictions
(the same constraint-domination, non-dominated sorting and crowding that selects survivors). So a
trial is spent on a child only when the surrogates say it would join, or come close to, the front.
With `surrogate="gp-hvi"` (`evo-hvi`) the same predictions pick the children greedily by the
hypervolume each adds to the study's feasible points and the children picked before it (`hvi_order`).

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
it stayed under TPE. Picking by hypervolume gain (`evo-hvi`, 30 children per proposal) lifted both
spaces past TPE and `evo-gp` (0.991 and 0.983 at 300 trials), so `auto` uses it. A generation costs a few
GP fits (~1-3 s on 2 cores), where plain evo proposes thousands of archs a second: use it where an
evaluation costs more than that, or where the trial budget, not the time, is what counts.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from hwnas.search_space import Arch, Space

__all__ = ["FIT_MEMBERS", "GP_MAX_ITER", "SCREEN", "SCREEN_HVI", "SURROGATES", "hvi_order", "screen_children", "surrogate_features"]

# Children drawn per proposal (10: ofa-mbv3 at 300 trials 0.98 of the best-known hypervolume; 3: 0.967
# with a ridge surrogate; fmnist-mbv3 at 300 trials: 5 / 10 / 20 gave 0.912 / 0.924 / 0.916, 30 without
# the resolution term 0.927).
SCREEN = 10
# evo-hvi's (ofa-mbv3, 5 seeds, one reference: 10 / 30 / 100 children per proposal gave 0.987 / 0.991 /
# 0.991 of the best-known hypervolume at 300 trials, 0.9937 / 0.9962 / 0.9965 at 1,000; 100 costs twice 30)
SCREEN_HVI = 30
# A surrogate's name -> how its children are picked (`screen_children`'s `select`) and how many are bred
# per proposal by default: gp ranks them as survivors are ranked, gp-hvi by predicted hypervolume gain.
SURROGATES: dict[str, tuple[str, int]] = {"gp": ("rank", SCREEN), "gp-hvi": ("hvi", SCREEN_HVI)}
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


class _Surrogates:
    """One GP per objective (positive ones in log space) and one for the violation, fitted once."""

    def __init__(self, space: Space, members: Sequence):
        from hwnas.estimators.accuracy import GaussianProcess

        self.space = space
        X = surrogate_features(space, [m.arch for m in members])
        Y = np.array([m.values for m in members], dtype=np.float64)
        self.log = [bool(np.all(Y[:, j] > 0)) for j in range(Y.shape[1])]
        self.objectives = [GaussianProcess(GP_MAX_ITER).fit(X, np.log(Y[:, j]) if lg else Y[:, j])
                           for j, lg in enumerate(self.log)]
        V = np.array([m.violation for m in members], dtype=np.float64)
        ok = np.isfinite(V)
        self.violation = None
        if ok.sum() >= 2 and (V[ok] > 0).any():
            self.violation = GaussianProcess(GP_MAX_ITER).fit(X[ok], V[ok])
            self.v_small = 1e-3 * float(V[ok].max())

    def predict(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """(objectives in minimisation form, violation >= 0) predicted for `archs`."""
        Z = surrogate_features(self.space, archs)
        F = np.column_stack([np.exp(g.predict(Z)) if lg else g.predict(Z) for g, lg in zip(self.objectives, self.log)])
        v = np.zeros(len(archs))
        if self.violation is not None:
            v = np.maximum(self.violation.predict(Z), 0.0)
            # a GP never predicts an exact 0: read what is small against the violations seen as none
            v[v < self.v_small] = 0.0
        return F, v


def screen_children(space: Space, members: Sequence, parents: Sequence, children: Sequence[Arch], k: int,
                    select: str = "rank") -> list[Arch]:
    """The `k` of `children` that rank first among `parents` by surrogate predictions.

    `members`: completed trials to fit on (`_evo.Member`: arch, values in minimisation form,
    violation; an infinite violation is left out of the violation fit). Returns `children` itself
    when it holds `k` or fewer. `select="rank"`: the children that rank first among `parents`
    (constraint-domination, non-dominated sorting, crowding); `"hvi"`: greedily by predicted
    hypervolume improvement over the feasible `members` (`hvi_order`), then by that rank.
    """
    from hwnas.searchers._evo import Member, survivors

    children = list(children)
    if len(children) <= k or not members:
        return children[:k]
    model = _Surrogates(space, members)
    F, v = model.predict(children)
    pool = list(parents) + [Member(-1 - i, c, tuple(float(x) for x in f), float(vi))
                            for i, (c, f, vi) in enumerate(zip(children, F, v))]
    ranked = [m.number for m in survivors(pool, len(pool)) if m.number < 0]
    if select == "hvi":
        order = hvi_order(np.array([m.values for m in members if m.violation <= 0], dtype=np.float64), F, v <= 0, k,
                          fallback=[-1 - n for n in ranked])
        return [children[i] for i in order]
    return [children[-1 - n] for n in ranked][:k]


def hvi_order(known: np.ndarray, F: np.ndarray, feasible: np.ndarray, k: int, fallback: Sequence[int]) -> list[int]:
    """`k` indices into F picked greedily by hypervolume improvement: each pick adds most to the
    hypervolume of the known feasible points plus the picks so far (objectives scaled by the known
    points' range, reference point 1.1 in every scaled axis). Once no feasible row adds anything,
    the rest follow `fallback` (an order of all rows)."""
    from hwnas.searchers.pareto import hypervolume, nondominated_mask

    picked: list[int] = []
    if len(known) and feasible.any():
        lo, hi = known.min(axis=0), known.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        S, K = (F - lo) / span, (known - lo) / span
        ref = np.full(F.shape[1], 1.1)
        front = K[nondominated_mask(K)]
        base = hypervolume(front, ref)
        # Lazy greedy: a row's gain can only shrink as the front grows (hypervolume is submodular), so
        # a gain computed earlier bounds it; only the row on top of the heap is recomputed. Ties go to
        # the smaller index, as a full scan's argmax would.
        def gain(i: int) -> float:
            return hypervolume(np.vstack([front, S[i:i + 1]]), ref) - base

        heap = [(-gain(i), i) for i in range(len(F)) if feasible[i]]
        heapq.heapify(heap)
        while len(picked) < k and heap:
            _, i = heapq.heappop(heap)
            g = gain(i)
            if g <= 0:
                continue  # it cannot gain later either
            if heap and (-g, i) > heap[0]:
                heapq.heappush(heap, (-g, i))  # another row may gain more now
                continue
            picked.append(i)
            front = np.vstack([front, S[i:i + 1]])
            front = front[nondominated_mask(front)]
            base += float(g)
    taken = set(picked)
    picked += [i for i in fallback if i not in taken][:k - len(picked)]
    return picked

