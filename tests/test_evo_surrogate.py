"""`evo-gp`: the evo sampler screening its children with Gaussian-process surrogates (searchers/_surrogate.py).

The GP fits what it should, screening picks the children the true objective would pick when the
surrogate can be exact, and the sampler stays what evo promises: seeded, no repeats, budgets kept."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from hwnas.errors import ConfigError
from hwnas.estimators.accuracy import GaussianProcess
from hwnas.searchers import ParetoFront, search, study_spec
from hwnas.searchers._evo import EvoSampler, Member, survivors
from hwnas.searchers._surrogate import screen_children, surrogate_features

sys.path.insert(0, str(Path(__file__).parent))
from test_search_helpers import small_space  # noqa: E402

C = optuna.trial.TrialState.COMPLETE


def _archs(study) -> list[str]:
    return [t.user_attrs["arch"] for t in study.trials if t.state == C]


def test_gaussian_process_recovers_a_linear_function_and_a_fit_is_deterministic():
    rng = np.random.default_rng(0)
    X, Z = rng.integers(0, 2, (120, 12)).astype(float), rng.integers(0, 2, (200, 12)).astype(float)
    w = rng.normal(size=12)
    a = GaussianProcess(30).fit(X, X @ w + 3.0)
    b = GaussianProcess(30).fit(X, X @ w + 3.0)
    p = a.predict(Z)
    assert np.array_equal(p, b.predict(Z))
    assert np.max(np.abs(p - (Z @ w + 3.0))) < 0.05 * np.ptp(Z @ w)
    with pytest.raises(ValueError, match="not trained"):
        GaussianProcess().predict(Z)


def test_surrogate_features_add_the_resolution_scaled_encoding_only_where_resolution_is_elastic():
    space = small_space()
    archs = [space.sample(random.Random(i)) for i in range(5)]
    X = surrogate_features(space, archs)
    E = space.encode_many(archs)
    res = space.choices().get("r")
    if res and len(res) > 1:
        r = np.array([a.resolution for a in archs])[:, None] / max(res)
        assert X.shape == (5, 2 * E.shape[1]) and np.allclose(X[:, E.shape[1]:], E * r * r)
    else:
        assert np.array_equal(X, E)


def _linear_objectives():
    """A small space, ~400 distinct archs, and two conflicting objectives linear in the surrogate's features."""
    space = small_space()
    r = random.Random(0)
    archs = list({str(a): a for a in (space.sample(r) for _ in range(400))}.values())
    D = surrogate_features(space, archs[:1]).shape[1]
    g = np.random.default_rng(1)
    w1, w2 = g.normal(size=D), g.normal(size=D)

    def true(a_list):
        X = surrogate_features(space, a_list)
        return np.column_stack([X @ w1, X @ (w2 - w1)])

    return space, archs, true


def test_screening_picks_the_children_the_true_objective_would_pick_when_the_surrogate_can_be_exact():
    """Two conflicting objectives linear in the surrogate's features: the GPs fit them (nearly)
    exactly, so the children screened in are those the true values rank first among the parents."""
    space, archs, true = _linear_objectives()
    fit, parents_a, children = archs[:150], archs[150:170], archs[170:370]
    members = [Member(i, a, tuple(v), 0.0) for i, (a, v) in enumerate(zip(fit, true(fit)))]
    parents = survivors([Member(1000 + i, a, tuple(v), 0.0) for i, (a, v) in enumerate(zip(parents_a, true(parents_a)))], 20)
    picked = screen_children(space, members, parents, children, 20)
    exact_pool = parents + [Member(-1 - i, c, tuple(v), 0.0) for i, (c, v) in enumerate(zip(children, true(children)))]
    exact = [m.arch for m in survivors(exact_pool, len(exact_pool)) if m.number < 0][:20]
    assert len(picked) == 20 and len(set(map(str, picked))) == 20
    assert all(str(a) in {str(c) for c in children} for a in picked)
    overlap = len({str(a) for a in picked} & {str(a) for a in exact})
    assert overlap >= 16, overlap  # 20 of 200 at random would share ~2
    # fewer children than asked: all of them, unscreened
    assert screen_children(space, members, parents, children[:5], 20) == children[:5]


@pytest.mark.parametrize("sampler", ["evo-gp", "evo-hvi"])
def test_evo_gp_is_seeded_never_repeats_keeps_budgets_and_screens_after_the_first_generation(sampler):
    space = small_space()
    kw = dict(objectives="f1,f2", budgets="f1<=0.5", n_trials=60, population_size=10)
    a, b = (search(space, "analytic", sampler=sampler, seed=3, **kw) for _ in range(2))
    plain = search(space, "analytic", sampler="evo", seed=3, **kw)
    assert _archs(a) == _archs(b)
    assert len(set(_archs(a))) == 60 and study_spec(a).sampler == sampler
    assert _archs(a)[:10] == _archs(plain)[:10]  # the same spread first generation
    assert _archs(a)[10:] != _archs(plain)[10:]  # then screened children, not evo's first draws
    front = ParetoFront.from_study(a)
    assert front.feasible().any() and not (front.front_mask() & ~front.feasible()).any()


def test_each_evo_sampler_has_its_measured_default_population():
    from hwnas.searchers._generation import generation_size
    from hwnas.searchers._optuna import make_sampler

    space = small_space()
    assert make_sampler("evo-hvi", space=space, n_objectives=3).population_size == 60 == generation_size("evo-hvi", None, 3)
    assert make_sampler("evo-hvi", space=space, n_objectives=2).population_size == 20 == generation_size("evo-hvi", None, 2)
    assert make_sampler("evo-gp", space=space, n_objectives=3).population_size == 20 == generation_size("evo", None, 3)
    assert make_sampler("evo-hvi", space=space, n_objectives=3, population_size=8).population_size == 8 \
        == generation_size("evo-hvi", 8, 3)
    assert make_sampler("evo-hvi", space=space).screen == 30 and make_sampler("evo-gp", space=space).screen == 10


def test_evo_surrogate_settings_are_checked():
    with pytest.raises(ConfigError, match="surrogate='rf' not allowed"):
        EvoSampler(small_space(), surrogate="rf")
    for bad in (0, 5000, 2.5, True):
        with pytest.raises(ConfigError, match="screen="):
            EvoSampler(small_space(), surrogate="gp", screen=bad)


def test_hvi_order_takes_the_largest_hypervolume_gain_first_and_leaves_dominated_and_infeasible_rows_to_the_fallback():
    from hwnas.searchers._surrogate import hvi_order

    known = np.array([[0.0, 1.0], [1.0, 0.0]])  # a 2-point front in minimisation form
    F = np.array([
        [2.0, 2.0],    # 0: dominated by both known points: gains nothing
        [0.2, 0.2],    # 1: the largest gain
        [0.9, 0.9],    # 2: a small gain (dominated by row 1 once it is picked: then nothing)
        [-0.5, -0.5],  # 3: dominates everything, but predicted infeasible
        [0.5, 0.1],    # 4: a gain that survives picking row 1 (it is not dominated by it)
    ])
    feasible = np.array([True, True, True, False, True])
    order = hvi_order(known, F, feasible, 4, fallback=[3, 0, 2, 1, 4])
    assert order[:2] == [1, 4]
    # rows 2 (now dominated by row 1), 3 (infeasible) and 0 (dominated) come in the fallback's order
    assert order[2:] == [3, 0]
    assert hvi_order(known, F, feasible, 5, fallback=[3, 0, 2, 1, 4]) == [1, 4, 3, 0, 2]
    # nothing known feasible yet: the fallback alone
    assert hvi_order(np.empty((0, 2)), F, feasible, 3, fallback=[4, 2, 0, 1, 3]) == [4, 2, 0]


def test_hvi_screening_picks_the_children_the_true_hypervolume_gain_would_pick_when_the_surrogate_can_be_exact():
    """As above, with `select="hvi"`: the children screened in are (nearly) those greedy hypervolume
    improvement over the known points picks with the true values, largest gain first."""
    from hwnas.searchers._surrogate import hvi_order

    space, archs, true = _linear_objectives()
    fit, children = archs[:150], archs[170:370]
    members = [Member(i, a, tuple(v), 0.0) for i, (a, v) in enumerate(zip(fit, true(fit)))]
    parents = survivors(members, 20)
    picked = [str(a) for a in screen_children(space, members, parents, children, 20, select="hvi")]
    # with no fallback, hvi_order returns only the children with a positive true gain
    exact = [str(children[i]) for i in hvi_order(true(fit), true(children), np.ones(len(children), bool), 20, fallback=[])]
    assert 3 <= len(exact) < 20  # some children add to the front of 150 known points, most do not
    assert len(picked) == 20 and len(set(picked)) == 20
    assert picked[0] in exact[:3]
    assert len(set(picked[:len(exact)]) & set(exact)) >= len(exact) - 2, (picked[:len(exact)], exact)
