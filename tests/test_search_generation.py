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
    return [(t.number, t.state.name, t.params, t.values, t.user_attrs, t.constraints)
            for t in study.get_trials(deepcopy=False)]


def test_bulk_written_study_equals_the_trial_by_trial_one(tmp_path):
    kw = dict(objectives="f1,f2", budgets="f1<=0.6", n_trials=240, sampler="nsga2", seed=5, population_size=40,
              warm_start=["min", "max"], study_name="s")
    a, b = f"sqlite:///{tmp_path / 'bulk.db'}", f"sqlite:///{tmp_path / 'one.db'}"
    search("fmnist-mbv3", "analytic", storage=a, generation=True, checkpoint_trials=50, **kw)
    search("fmnist-mbv3", "analytic", storage=b, generation=False, **kw)
    bulk, one = _rows(a, "s"), _rows(b, "s")
    assert len(bulk) == len(one) >= 240
    assert bulk == one  # archs, params, values, constraints, user attributes, trial by trial
    assert sum(r[1] == "COMPLETE" for r in bulk) == 240
    assert any(r[5]["f1<=0.6"] > 0 for r in bulk) and any(r[5]["f1<=0.6"] <= 0 for r in bulk)


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
       study_name="k", checkpoint_trials=100, checkpoint_seconds=1000, resume=len(sys.argv) > 3)
"""


def _complete(db: Path) -> int:
    try:
        with sqlite3.connect(str(db), timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_then_resume_ends_with_the_asked_count_and_no_arch_repeated(tmp_path):
    db = tmp_path / "k.db"
    url, n = f"sqlite:///{db}", 1500
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, url, str(n)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 300
        while _complete(db) < 100 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        written = _complete(db)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert 100 <= written < n  # checkpoints landed; the kill came before the end
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
