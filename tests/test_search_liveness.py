"""A --resume fails the running trials of dead workers only; a live worker's trials stay running."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import optuna
import pytest
from hwnas.searchers import search
from hwnas.searchers._liveness import WORKER_ATTR, this_worker, worker_state

from tests.test_search_dedup import micro_space

F = optuna.trial.TrialState.FAIL


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_this_worker_is_alive_a_finished_process_is_dead_another_host_is_unknown():
    study = optuna.create_study()
    me, gone, far, bare, reused = (study.ask() for _ in range(5))
    host, pid, start = this_worker().rsplit(":", 2)
    assert host == socket.gethostname() and pid.isdigit()
    me.set_user_attr(WORKER_ATTR, this_worker())
    gone.set_user_attr(WORKER_ATTR, f"{host}:{dead_pid()}:{start}")
    far.set_user_attr(WORKER_ATTR, f"not-{host}:{pid}:{start}")
    reused.set_user_attr(WORKER_ATTR, f"{host}:{pid}:{start}1")  # this pid, another start: reused
    states = {t.number: worker_state(t) for t in study.get_trials(deepcopy=False)}
    assert states == {me.number: "alive", gone.number: "dead", far.number: "unknown", bare.number: "dead",
                      reused.number: "dead" if start else "alive"}


@pytest.mark.parametrize("owner", ["live", "dead", "other-host"])
def test_resume_fails_only_the_trials_of_dead_workers(tmp_path, owner, caplog):
    sp = micro_space()
    url = f"sqlite:///{tmp_path / 's.db'}"
    search(sp, "analytic", objectives="f1,f2", n_trials=3, sampler="random", seed=0, storage=url, study_name="s")
    study = optuna.load_study(study_name="s", storage=url)
    left = study.ask()  # a trial another worker is running (or was, when it died)
    host, pid, start = this_worker().rsplit(":", 2)
    stamp = {"live": this_worker(), "dead": f"{host}:{dead_pid()}:{start}", "other-host": f"elsewhere:{pid}:{start}"}
    left.set_user_attr(WORKER_ATTR, stamp[owner])
    left.set_user_attr("arch", sp.sample(99).to_string())
    # a live worker tells its trial a moment later; the resumed search waits for that last slot
    finish = threading.Timer(1.0, lambda: study.tell(left.number, [1.0, 1.0])) if owner != "dead" else None
    with caplog.at_level("WARNING", logger="hwnas.searchers"):
        if finish is not None:
            finish.start()
        try:
            study = search(sp, "analytic", objectives="f1,f2", n_trials=5, sampler="random", seed=1, storage=url,
                           study_name="s", resume=True, generation=False)  # trial by trial, as the CLI on a storage
        finally:
            if finish is not None:
                finish.join()
    t = study.trials[left.number]
    if owner == "dead":
        assert t.state == F and "failed on resume" in t.user_attrs["error"]
        assert "marked 1 interrupted trial(s) as FAIL" in caplog.text
    else:
        assert t.state == optuna.trial.TrialState.COMPLETE, t.state  # told by its worker, never failed
        assert "interrupted trial" not in caplog.text
        assert ("other hosts are left running" in caplog.text) == (owner == "other-host")
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) == 5


def test_a_worker_waiting_for_the_last_trials_fails_one_whose_worker_died(tmp_path):
    from hwnas.searchers._liveness import _start_time

    sp = micro_space()
    url = f"sqlite:///{tmp_path / 's.db'}"
    search(sp, "analytic", objectives="f1,f2", n_trials=3, sampler="random", seed=0, storage=url, study_name="s")
    study = optuna.load_study(study_name="s", storage=url)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live worker ...
    left = study.ask()
    left.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{other.pid}:{_start_time(other.pid)}")
    kill = threading.Timer(1.0, lambda: (other.kill(), other.wait()))  # ... killed while the search waits on it
    kill.start()
    try:
        study = search(sp, "analytic", objectives="f1,f2", n_trials=5, sampler="random", seed=1, storage=url,
                       study_name="s", resume=True, generation=False)
    finally:
        kill.join()
        other.kill()
    t = study.trials[left.number]
    assert t.state == F and "its worker is gone" in t.user_attrs["error"]
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) == 5
