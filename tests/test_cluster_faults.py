"""Faults on a real local Ray cluster (127.0.0.1): a worker killed mid-trial, the head going away.

Each test starts its own `ray start --head --block` in a new process group (free ports, its own
temp dir) and stops it by signalling that group only: never `ray stop`, which would also stop
other people's clusters on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests._helpers import RayNode, ray_env

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _head(tmp: Path) -> RayNode:
    """One Ray head node on 127.0.0.1 that this test owns (2 CPUs, worker ports of its own)."""
    wp = 22000 + (os.getpid() % 50) * 100
    return RayNode(tmp, num_cpus=2, worker_ports=(wp, wp + 99))


@pytest.fixture
def ray_tmp():
    tmp = Path(tempfile.mkdtemp(prefix="hwf", dir="/tmp"))  # short: Ray puts unix sockets there
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


# The driver: a search whose trials sleep and record the PID of the Ray worker that runs them.
_DRIVER = r"""
import json, os, sys, time
from hwnas.search_space import Space
from hwnas.searchers import make_objective, search

class Slow:
    def __init__(self, space_dict, pid_dir, seconds):
        self.space_dict, self.pid_dir, self.seconds, self.fn = space_dict, pid_dir, seconds, None
    def __call__(self, arch):
        if self.fn is None:
            self.fn = make_objective(Space.from_dict(self.space_dict), "flops")
        open(os.path.join(self.pid_dir, f"{os.getpid()}-{time.time_ns()}"), "w").close()
        time.sleep(self.seconds)
        return self.fn(arch)

address, storage, n, pid_dir, seconds, resume, ray_dir = sys.argv[1:8]
space = Space.preset("fmnist-mbv3")
study = search(space, Slow(space.to_dict(), pid_dir, float(seconds)), objectives="flops,params:max", n_trials=int(n),
               sampler="random", storage=storage, study_name="faults", runner="ray", workers=2, ray_address=address,
               resume=resume == "1", ray_storage_path=ray_dir)
print("DONE", len([t for t in study.trials if t.state.name == "COMPLETE"]))
"""


def _driver(tmp: Path, address: str, storage: str, n: int, seconds: float, resume: bool,
            extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp / "driver.py"
    script.write_text(_DRIVER)
    pids = tmp / "pids"
    pids.mkdir(exist_ok=True)
    env = ray_env(**(extra_env or {}))  # the nodes' auth mode; PYTHONWARNINGS=ignore
    return subprocess.Popen([sys.executable, str(script), address, storage, str(n), str(pids), str(seconds),
                             "1" if resume else "0", str(tmp / "ray_results")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _complete(storage: str) -> dict[int, dict]:
    import optuna
    from hwnas.searchers import load_study

    st = load_study("faults", storage)
    return {t.number: t.params for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def test_worker_killed_mid_trial_search_still_completes(tmp_path: Path, ray_tmp: Path) -> None:
    head = _head(ray_tmp)
    try:
        storage = f"sqlite:///{tmp_path / 'study.db'}"
        n = 8
        p = _driver(tmp_path, head.address, storage, n, 1.5, resume=False)
        pid_dir = tmp_path / "pids"
        deadline = time.time() + 300
        victim = None
        while victim is None:
            files = sorted(pid_dir.iterdir(), key=lambda f: f.stat().st_mtime) if pid_dir.exists() else []
            if files:
                victim = int(files[0].name.split("-")[0])
            elif p.poll() is not None or time.time() > deadline:
                pytest.fail(f"no trial started: {p.communicate()[1][-3000:]}")
            else:
                time.sleep(0.1)
        os.kill(victim, signal.SIGKILL)  # a Ray worker process, in the middle of its trial's sleep
        out, err = p.communicate(timeout=540)
        assert p.returncode == 0, err[-4000:]
        assert f"DONE {n}" in out
        import optuna
        from hwnas.searchers import load_study

        trials = load_study("faults", storage).get_trials()
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == n, "the search did not reach the asked number of complete trials"
        nums = [t.number for t in trials]
        assert len(nums) == len(set(nums))
        assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        # the killed trial was not silently counted: it failed (and another trial took its place)
        assert len(trials) > n or any(t.state == optuna.trial.TrialState.FAIL for t in trials), \
            [t.state.name for t in trials]
    finally:
        head.stop()


def test_head_going_away_then_resume(tmp_path: Path, ray_tmp: Path) -> None:
    head = _head(ray_tmp)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    n = 14
    try:
        # a short GCS reconnect timeout so the driver notices the dead head in seconds, not a minute
        p = _driver(tmp_path, head.address, storage, n, 0.7, resume=False,
                    extra_env={"RAY_gcs_rpc_server_reconnect_timeout_s": "10"})
        deadline = time.time() + 300
        while True:
            try:
                done = len(_complete(storage))
            except Exception:  # noqa: BLE001 - the study may not exist yet
                done = 0
            if done >= 3:
                break
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(f"no progress before killing the head: {p.communicate()[1][-3000:]}")
            time.sleep(0.2)
        head.kill()
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail("the driver hung after the Ray head went away")
        assert p.returncode != 0, "a search whose cluster died must not report success"
        assert "DONE" not in out
        print("driver stderr after the head went away:", *err.strip().splitlines()[-3:], sep="\n  ")
    finally:
        head.stop()

    before = _complete(storage)
    assert 3 <= len(before) < n
    head2 = _head(ray_tmp)
    try:
        p = _driver(tmp_path, head2.address, storage, n, 0.2, resume=True)
        out, err = p.communicate(timeout=540)
        assert p.returncode == 0, err[-4000:]
        assert f"DONE {n}" in out
    finally:
        head2.stop()
    after = _complete(storage)
    assert len(after) == n
    for num, params in before.items():
        assert after.get(num) == params, "a trial completed before the head died was lost or changed"
    (tmp_path / "summary.json").write_text(json.dumps({"before": len(before), "after": len(after)}))
