"""The generation path: a study scored a generation at a time in memory, written to storage in bulk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hwnas.searchers import search

REPO = Path(__file__).resolve().parents[1]


def _rows(url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=url)
    # `worker` names the process that ran a trial by trial (searchers/_liveness.py): the bulk path runs none so
    return [(t.number, t.state.name, t.params, t.values, {k: v for k, v in t.user_attrs.items() if k != "worker"},
             t.system_attrs) for t in study.get_trials(deepcopy=False)]


def test_bulk_written_study_equals_the_trial_by_trial_one(tmp_path):
    kw = dict(objectives="f1,f2", budgets="f1<=0.6", n_trials=40, sampler="nsga2", seed=5, population_size=15,
              warm_start=["min", "max"], study_name="s")
    a, b = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'one.db'}"
    search("fmnist-mbv3", "analytic", storage=a, generation=True, checkpoint_trials=20, **kw)
    search("fmnist-mbv3", "analytic", storage=b, generation=False, **kw)
    bulk, one = _rows(a, "s"), _rows(b, "s")
    assert len(bulk) == len(one) >= 40
    assert bulk == one  # archs, params, values, user and system attributes (constraints, generations), trial by trial
    assert sum(r[1] == "COMPLETE" for r in bulk) == 40
    assert any(r[5]["constraints:f1<=0.6"] > 0 for r in bulk) and any(r[5]["constraints:f1<=0.6"] <= 0 for r in bulk)


class SlowBatches:
    """The analytic objective, 0.05 s per batch (module-level: the killed search imports it)."""

    def __init__(self, space):
        from hwnas.searchers import analytic_objective

        self.fn = analytic_objective(space)

    def __call__(self, arch):
        return self.fn(arch)

    def predict_many(self, archs):
        time.sleep(0.05)
        return [self.fn(a) for a in archs]


_SCRIPT = """
import sys
from hwnas.search_space import Space
from hwnas.searchers import search
from tests.test_search_generation import SlowBatches
space = Space.preset("fmnist-mbv3")
search(space, SlowBatches(space), objectives="f1,f2", n_trials=int(sys.argv[2]), sampler="nsga2", storage=sys.argv[1],
       study_name="k", checkpoint_trials=50, checkpoint_seconds=1000, resume=len(sys.argv) > 3)
"""


def _complete(db: Path) -> int:
    try:
        with sqlite3.connect(str(db), timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_then_resume_ends_with_the_asked_count_and_no_arch_repeated(tmp_path):
    db = tmp_path / "k.db"
    url, n = f"sqlite:///{db}", 400
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, url, str(n)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 300
        while _complete(db) < 50 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        written = _complete(db)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert 50 <= written < n  # checkpoints landed; the kill came before the end
    done = subprocess.run([sys.executable, "-c", _SCRIPT, url, str(n), "resume"], cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0
    study = optuna.load_study(study_name="k", storage=url)
    archs = [t.user_attrs["arch"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert len(archs) == n == len(set(archs))


def test_generation_path_needs_one_process(tmp_path):
    from hwnas.errors import ConfigError

    with pytest.raises(ConfigError, match="workers=1"):
        search("fmnist-mbv3", "analytic", objectives="f1,f2", n_trials=10, generation=True, workers=2,
               storage=f"sqlite:///{tmp_path / 'x.db'}")


# ---- hwnas search --supernet RUN --profile DIR: the main job's objective from the command line -----------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny run's outputs: the accuracy predictor and two devices' profiles, as the main job lays them out."""
    import numpy as np
    from hwnas.estimators import AccuracyPredictor, build_predictors

    from tests._helpers import tiny_space
    from tests.test_estimators import FAST

    run = tmp_path_factory.mktemp("run")
    space = tiny_space()
    archs = space.sample_many(24, 0, unique=True)
    acc = np.array([0.5 + 0.01 * space.encode(a).sum() for a in archs])  # any smooth function of the arch
    AccuracyPredictor.fit(space, archs, acc, epochs=20, seed=0).save(run / "accuracy_predictor.json")
    for dev in ("cpu", "cpu-b2"):
        build_predictors(space, dev, run / "profiles" / dev, n_networks=6, progress=False, settings=FAST)
    return run


@pytest.mark.slow
def test_cli_supernet_profile_searches_the_main_jobs_objective(tiny_run, tmp_path):
    import json

    from hwnas.pipeline.search import search_objective
    from hwnas.searchers import ParetoFront

    from tests._helpers import tiny_space, tiny_space_path

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cmd = [sys.executable, "-m", "hwnas", "search", "--space", tiny_space_path(tmp_path), "--supernet", str(tiny_run),
           "--profile", str(tiny_run / "profiles" / "cpu"), "--profile", str(tiny_run / "profiles" / "cpu-b2"),
           "--budget", "latency_ms@cpu<=1e3", "--budget", "latency_ms@cpu-b2<=1e3", "--trials", "40",
           "--storage", url, "--study", "c", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    front = ParetoFront.load("c", url)
    assert [o.name for o in front.objectives] == ["accuracy", "latency_ms@cpu", "latency_ms@cpu-b2"]
    assert [str(b) for b in front.budgets] == ["latency_ms@cpu<=1000", "latency_ms@cpu-b2<=1000"]
    study = optuna.load_study(study_name="c", storage=url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 40
    main = search_objective(tiny_space(), tiny_run, ["cpu", "cpu-b2"])  # what `hwnas run` searches
    space = tiny_space()
    expected = main.predict_many([space.parse(t.user_attrs["arch"]) for t in trials])
    for t, want in zip(trials, expected):
        m = t.user_attrs["metrics"]
        for k in ("accuracy", "latency_ms@cpu", "latency_ms@cpu-b2", "peak_mem_mb@cpu", "energy_mj@cpu", "macs", "params"):
            assert k in m
        # the accuracy MLP runs in float32: a batch of another size may round its last bits differently
        assert m == pytest.approx(want, rel=1e-6)
        assert {k: v for k, v in m.items() if k != "accuracy"} == {k: v for k, v in want.items() if k != "accuracy"}
        assert set(t.constraints) == {"latency_ms@cpu<=1000", "latency_ms@cpu-b2<=1000"}
    json.dumps(front.rows(top=3))  # the front reads back
