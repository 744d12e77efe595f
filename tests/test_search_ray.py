"""Ray Tune runner on a real local Ray cluster (127.0.0.1), one cluster for the module."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from hwnas.searchers import ParetoFront, load_study, search

sys.path.insert(0, str(Path(__file__).parent))
from test_search_helpers import SMALL, Broken, SlowCost, small_space  # noqa: E402

from tests._helpers import RayNode  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
C = optuna.trial.TrialState.COMPLETE


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs for the module (`tests/_helpers.RayNode`)."""
    tmp = Path(tempfile.mkdtemp(prefix="hws", dir="/tmp"))  # short: Ray puts unix sockets there
    # Auth mode fixed for head and driver alike: Ray reads it once per process, at first import,
    # so a token file or an earlier test's Ray import must not split them (as in test_estimators_cluster).
    try:
        head = RayNode(tmp, num_cpus=2, worker_ports=(21000, 21100), env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        try:
            yield head.address
        finally:
            head.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_ray_constrained_search_two_concurrent_trials_then_resume(ray_head, tmp_path, monkeypatch):
    from hwnas.searchers._ray import _auth_env

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the head (an explicit mode is never overridden)
    _auth_env(ray_head)  # before Ray is first imported
    import ray.cloudpickle
    import test_search_helpers

    # Ray workers cannot import this tests folder: ship the objective's module by value.
    ray.cloudpickle.register_pickle_by_value(test_search_helpers)
    url = f"sqlite:///{tmp_path}/ray.db"
    runs = tmp_path / "ray_runs"
    kw = dict(objectives="flops,params:max", budgets="params<=3e4", storage=url, study_name="r",
              runner="ray", workers=2, ray_address=ray_head, ray_storage_path=str(runs), seed=0)
    # 1 s trials: even on a loaded machine the second worker is up before the first drains the queue
    study = search(small_space(), SlowCost(SMALL, 1.0), n_trials=6, **kw)

    s = load_study("r", url)
    done = [t for t in s.trials if t.state == C]
    assert len(done) == 6
    # constraints carried through Ray into Optuna, and infeasible trials are not on the front
    assert all(list(t.constraints) == ["params<=30000"] for t in done)
    front = ParetoFront.load("r", url)
    assert sorted(front.trials[front.front_mask()].tolist()) == sorted(t.number for t in s.best_trials)
    assert all(t.user_attrs["metrics"]["params"] <= 3e4 for t in s.best_trials)
    assert study.study_name == "r"
    # two trials really ran at the same time
    assert _max_overlap([(t.user_attrs["metrics"]["t_start"], t.user_attrs["metrics"]["t_end"]) for t in done]) == 2
    # no trial changed its working directory into its trial directory
    results = list(runs.rglob("result.json"))
    assert len(results) == 6
    for r in results:
        cwd = json.loads(r.read_text().splitlines()[-1])["hwnas_cwd"]
        assert not Path(cwd).resolve().is_relative_to(runs.resolve())

    # resume: the 6 stay, 2 more run, total as asked
    before = {t.number: t.values for t in done}
    search(small_space(), SlowCost(SMALL, 0.1), n_trials=8, resume=True, **kw)
    s = load_study("r", url)
    done = [t for t in s.trials if t.state == C]
    assert len(done) == 8
    assert all({t.number: t.values for t in done}[k] == v for k, v in before.items())


def test_ray_search_whose_trials_all_fail_says_why(ray_head, tmp_path, monkeypatch):
    from hwnas.errors import ObjectiveError
    from hwnas.searchers._ray import _auth_env

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    _auth_env(ray_head)
    import ray.cloudpickle
    import test_search_helpers

    ray.cloudpickle.register_pickle_by_value(test_search_helpers)
    with pytest.raises(ObjectiveError, match="no Ray trial completed.*the device under test is unplugged"):
        search(small_space(), Broken(), objectives="flops", n_trials=2, storage=f"sqlite:///{tmp_path}/b.db",
               study_name="b", runner="ray", workers=1, ray_address=ray_head, ray_storage_path=str(tmp_path / "runs"),
               seed=0)
