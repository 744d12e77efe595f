"""No trial on an arch the study already holds, on every runner; an exhausted space ends the search."""

from __future__ import annotations

import copy
import logging

import optuna
import pytest
from hwnas.search_space import Space
from hwnas.searchers import search

from tests.test_search_helpers import SMALL


def micro_space() -> Space:
    """One stage of the searchers' small space, cut to 20 archs (4 one-block + 16 two-block)."""
    d = copy.deepcopy(SMALL)
    d["name"], d["resolutions"], d["stages"] = "micro", [20], d["stages"][:1]
    d["stages"][0].update(kernels=[3, 5], expands=[2, 4])
    return Space.from_dict(d)


def complete_archs(study) -> list[str]:
    return [t.user_attrs["arch"] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]


def test_micro_space_is_enumerable():
    sp = micro_space()
    assert sp.size() == 20 == len(set(sp.enumerate()))


@pytest.mark.parametrize("generation", [False, True])
@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_more_trials_than_archs_tries_each_once_then_stops(sampler, generation, caplog):
    sp = micro_space()
    with caplog.at_level(logging.WARNING, logger="hwnas.searchers"):
        study = search(sp, "analytic", objectives="f1,f2", n_trials=35, sampler=sampler, seed=3, generation=generation,
                       population_size=8)
    archs = complete_archs(study)
    assert sorted(archs) == sorted(a.to_string() for a in sp.enumerate())  # every arch, once
    assert "tried every one" in study.user_attrs["hwnas.exhausted"]
    assert "20 of 35 trials complete" in caplog.text


def test_two_workers_on_sqlite_share_the_held_archs(tmp_path, caplog):
    sp = micro_space()
    url = f"sqlite:///{tmp_path / 's.db'}"
    with caplog.at_level(logging.WARNING, logger="hwnas.searchers"):
        study = search(sp, "analytic", objectives="f1,f2", n_trials=35, sampler="random", seed=1, storage=url,
                       workers=2)
    archs = complete_archs(study)
    assert sorted(archs) == sorted(a.to_string() for a in sp.enumerate())
    assert study.user_attrs["hwnas.exhausted"]
    # a trial lost to a race between the workers is failed as a duplicate, never completed
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        assert t.user_attrs.get("error", "").startswith("duplicate")


def test_a_claim_waits_for_a_lower_trial_of_another_worker_to_record_its_arch(tmp_path):
    """The race the two-worker test once lost: trial 1 (this worker) claims an arch before trial 0
    (another worker) has recorded the same arch. Trial 1 must wait and give it back; it must not run."""
    import threading

    from hwnas.searchers._dedup import HeldArchs

    sp = micro_space()
    arch = next(iter(sp.enumerate())).to_string()
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    other, mine = study.ask(), study.ask()  # numbers 0 and 1, both RUNNING, neither has an arch yet
    held = HeldArchs(sp)
    held.propose(arch, mine.number)
    mine.set_user_attr("arch", arch)
    late = threading.Timer(0.3, lambda: other.set_user_attr("arch", arch))
    late.start()
    try:
        assert held.claim(study, arch, mine.number) == other.number
    finally:
        late.join()
    # the other worker's own claim: it is the first holder
    assert HeldArchs(sp).claim(study, arch, other.number) is None


def test_a_claim_waits_once_for_a_trial_that_never_records_its_arch(tmp_path, monkeypatch, caplog):
    from hwnas.searchers import _dedup

    monkeypatch.setattr(_dedup, "CLAIM_WAIT_S", 0.2)
    sp = micro_space()
    a, b = [x.to_string() for x in list(sp.enumerate())[:2]]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    dead = study.ask()  # its process died between the ask and the record
    held = _dedup.HeldArchs(sp)
    for arch in (a, b):
        t = study.ask()
        held.propose(arch, t.number)
        t.set_user_attr("arch", arch)
        with caplog.at_level(logging.WARNING, logger="hwnas.searchers"):
            assert held.claim(study, arch, t.number) is None
    assert caplog.text.count(f"trial(s) [{dead.number}] recorded no arch") == 1  # the second claim did not wait


def test_resume_of_an_exhausted_study_adds_nothing(tmp_path):
    sp = micro_space()
    url = f"sqlite:///{tmp_path / 's.db'}"
    search(sp, "analytic", objectives="f1,f2", n_trials=25, sampler="nsga2", storage=url, population_size=8)
    study = search(sp, "analytic", objectives="f1,f2", n_trials=40, sampler="nsga2", storage=url, resume=True,
                   population_size=8)
    assert len(complete_archs(study)) == 20 == len(set(complete_archs(study)))


@pytest.mark.parametrize("sampler", ["nsga2", "random", pytest.param("tpe", marks=pytest.mark.slow),
                                     pytest.param("evo-hvi", marks=pytest.mark.slow)])
def test_1000_trials_on_fmnist_mbv3_are_1000_archs(sampler):
    # gp is left out: GPSampler refits its model on every trial, minutes at 1,000 trials
    # evo-hvi fits its GPs once a generation: population 60 makes 17 generations of 1,000 trials, not 50
    study = search("fmnist-mbv3", "analytic", objectives="f1,f2", n_trials=1000, sampler=sampler,
                   population_size=60 if sampler == "evo-hvi" else None)
    archs = complete_archs(study)
    assert len(archs) == 1000 == len(set(archs))


def test_1000_trials_the_trial_by_trial_path_are_1000_archs():
    study = search("fmnist-mbv3", "analytic", objectives="f1,f2", n_trials=1000, sampler="nsga2", generation=False)
    archs = complete_archs(study)
    assert len(archs) == 1000 == len(set(archs))
    assert study.sampler.redrawn > 0  # NSGA-II does repeat itself: the re-draws are what keeps them distinct


@pytest.mark.slow
def test_1000_trials_two_workers_on_one_sqlite_are_1000_archs(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = search("fmnist-mbv3", "flops", objectives="flops,params:max", n_trials=1000, sampler="nsga2", storage=url,
                   workers=2)
    archs = complete_archs(study)
    assert len(archs) == 1000 == len(set(archs))


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_tune_tries_each_arch_once_then_stops(tmp_path):
    pytest.importorskip("ray")
    sp = micro_space()
    study = search(sp, "analytic", objectives="f1,f2", n_trials=30, sampler="random", runner="ray", workers=2,
                   ray_storage_path=str(tmp_path / "ray"))
    archs = complete_archs(study)
    assert sorted(archs) == sorted(a.to_string() for a in sp.enumerate())
    assert study.user_attrs["hwnas.exhausted"]
