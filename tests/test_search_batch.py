"""The generation path's drawn batches: a generation drawn without asking a trial each
(`DedupSampler.sample_batch`), scored, and stored finished in one append, gives the study that
asking, scoring and telling the same trials one by one gives."""

from __future__ import annotations

import datetime
import zlib

import numpy as np
import optuna
import pytest
from hwnas.errors import ObjectiveError
from hwnas.search_space import Space
from hwnas.searchers import make_objective, search
from hwnas.searchers._dedup import DedupSampler

from tests.test_search_dedup import micro_space
from tests.test_search_helpers import small_space


class Flaky:
    """The analytic objective, batched, failing on some archs (a failure must not shift later draws)."""

    def __init__(self, space: Space):
        self.fn = make_objective(space, "analytic")

    def __call__(self, arch):
        if zlib.crc32(str(arch).encode()) % 11 == 0:  # about one arch in 11, the same in every run
            raise ObjectiveError("planted failure")
        return self.fn(arch)

    def predict_many(self, archs):
        return [self(a) for a in archs]


def _rows(study) -> list[tuple]:
    return [(t.number, t.state, t.params, t.distributions, t.values, t.user_attrs, t.system_attrs)
            for t in study.get_trials(deepcopy=False)]


def _run(monkeypatch, drawn: bool, space: Space, fn, **kw) -> tuple[list[tuple], list[bool]]:
    calls = []
    original = DedupSampler.sample_batch

    def spy(self, *a, **k):
        out = original(self, *a, **k) if drawn else None
        calls.append(out is not None)
        return out

    monkeypatch.setattr(DedupSampler, "sample_batch", spy)
    study = search(space, fn, generation=True, **kw)
    monkeypatch.undo()
    return _rows(study), calls  # per batch: whether it was drawn


@pytest.mark.parametrize("sampler", ["nsga2", "evo", "random"])
@pytest.mark.parametrize("budgets", [(), "f1<=0.5"])
def test_drawn_batches_store_what_asking_one_by_one_stores(monkeypatch, sampler, budgets):
    space = small_space()
    kw = dict(objectives="f1,f2", budgets=budgets, n_trials=70, sampler=sampler, seed=3, population_size=12,
              warm_start=["max"])
    drawn, n_drawn = _run(monkeypatch, True, space, Flaky(space), **kw)
    asked, n_asked = _run(monkeypatch, False, space, Flaky(space), **kw)
    # batches drawn in one run, asked in the other (a GA's batch is a generation; random's is 100 trials)
    assert all(n_drawn) and len(n_drawn) >= (1 if sampler == "random" else 5) and not any(n_asked)
    assert drawn == asked  # params, values, arch/metrics/error/worker, generation and constraints, trial by trial
    states = [r[1] for r in drawn]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 70
    assert optuna.trial.TrialState.FAIL in states  # the failure path was exercised
    assert len({r[5]["arch"] for r in drawn}) == len(drawn)  # no arch twice
    if budgets:
        c = [r[6]["constraints:f1<=0.5"] for r in drawn if r[1] == optuna.trial.TrialState.COMPLETE]
        assert min(c) <= 0 < max(c)


@pytest.mark.parametrize("sampler", ["nsga2", "evo", "random"])
def test_drawn_batches_on_an_exhausted_space_end_as_asked_ones_do(monkeypatch, sampler):
    space = micro_space()
    kw = dict(objectives="f1,f2", n_trials=35, sampler=sampler, seed=3, population_size=6)
    fn = make_objective(space, "analytic")
    drawn, _ = _run(monkeypatch, True, space, fn, **kw)
    asked, _ = _run(monkeypatch, False, space, fn, **kw)
    assert drawn == asked
    complete = [r[5]["arch"] for r in drawn if r[1] == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(set(complete)) == space.size()


def test_evo_proposals_round_trip_through_their_choices():
    # the drawn path stores evo's own Arch; the asked one rebuilds it from the trial's params
    import random

    space = Space.preset("fmnist-mbv3")
    r = random.Random(0)
    archs = [space.sample(r) for _ in range(100)]
    archs += [space.mutate(space.crossover(a, b, r), r, prob=0.2) for a, b in zip(archs, archs[1:])]
    for a in archs:
        assert space.from_choices(space.to_choices(a)) == a == space.parse(str(a))


def test_random_state_draws_the_batch_drawer_relies_on():
    # nsga2_batch_drawer replays NSGA-II's per-parameter rand() calls as one rand(n), and choice(n) as randint
    a, b = np.random.RandomState(7), np.random.RandomState(7)
    sizes = [50, 49, 12, 11, 3]
    seq_a = [a.rand() for _ in range(25)] + [a.choice(n) for n in sizes] + [a.uniform(np.zeros(4), np.ones(4)).argmax()]
    seq_b = list(b.rand(25)) + [b.randint(0, n) for n in sizes] + [b.random_sample(4).argmax()]
    assert seq_a == seq_b


def test_append_finished_trials_stores_what_add_trials_stores():
    from hwnas.searchers._optuna_internals import append_finished_trials, next_trial_number

    d = optuna.distributions.CategoricalDistribution([3, 5, 7])

    def trials():
        now = datetime.datetime(2026, 1, 1)
        S = optuna.trial.TrialState
        return [optuna.trial.FrozenTrial(number=-1, state=S.COMPLETE if i % 3 else S.FAIL,
                                         value=None, values=[float(i), 1.0 - i] if i % 3 else None,
                                         datetime_start=now, datetime_complete=now,
                                         params={"k": 5} if i % 3 else {}, distributions={"k": d} if i % 3 else {},
                                         user_attrs={"arch": f"a{i}"}, system_attrs={"g": i // 2},
                                         intermediate_values={}, trial_id=-1) for i in range(7)]

    fast = optuna.create_study(directions=["minimize", "maximize"])
    public = optuna.create_study(directions=["minimize", "maximize"])
    fast.enqueue_trial({"k": 3})
    public.enqueue_trial({"k": 3})
    assert next_trial_number(fast) == 1
    stored = append_finished_trials(fast, trials())
    public.add_trials(trials())
    assert [t.number for t in stored] == list(range(1, 8))
    assert next_trial_number(fast) == 8

    def rows(study):
        return [(t.number, t.state, t.params, t.distributions, t.values, t.user_attrs, t.system_attrs)
                for t in study.get_trials()]

    assert rows(fast) == rows(public)
    assert [t.number for t in fast.best_trials] == [t.number for t in public.best_trials]
    with pytest.raises(ValueError, match="not finished"):
        append_finished_trials(fast, [_running()])
    assert next_trial_number(fast) == 8


def _running():
    return optuna.trial.FrozenTrial(number=-1, state=optuna.trial.TrialState.RUNNING, value=None, values=None,
                                    datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
                                    distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                                    trial_id=-1)
