"""Shared pieces of the searchers' tests: a small space, slow and broken objectives."""

from __future__ import annotations

import math
import time

import numpy as np
from hwnas.search_space import Space
from hwnas.searchers.pareto import hypervolume

SMALL = {
    "name": "tiny",
    "in_channels": 1,
    "num_classes": 10,
    "resolutions": [20, 28],
    "stem": {"channels": 8, "kernel": 3, "stride": 2},
    "stages": [
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5, 7], "expands": [2, 4, 6], "widths": [16], "stride": 1},
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5, 7], "expands": [2, 4, 6], "widths": [24], "stride": 2},
    ],
}


def small_space() -> Space:
    return Space.from_dict(SMALL)


def true_front(space: Space, f1_max: float = math.inf) -> np.ndarray:
    """The analytic objective's exact front by enumerating the whole space (16,200 archs)."""
    from hwnas.searchers._objectives import _AnalyticObjective

    obj = _AnalyticObjective(space)
    pts = []
    for a in space.enumerate():
        t = obj.fractions(a)
        h = len(t) // 2
        f1 = sum(t[:h]) / h
        g = 1 + 9 * sum(t[h:]) / (len(t) - h)
        if f1 <= f1_max:
            pts.append((f1, g * (1 - math.sqrt(f1 / g))))
    return np.array(pts)


def true_hv(space: Space, ref=(1.1, 1.1), f1_max: float = math.inf) -> float:
    return hypervolume(true_front(space, f1_max), ref)


class SlowCost:
    """flops/params after a sleep (module-level so it pickles into worker processes and Ray)."""

    def __init__(self, space_dict: dict, seconds: float):
        self.space = Space.from_dict(space_dict)
        self.seconds = seconds

    def __call__(self, arch):
        from hwnas.searchers import arch_cost

        t0 = time.time()
        time.sleep(self.seconds)
        out = arch_cost(self.space, arch)
        out["t_start"] = t0
        out["t_end"] = time.time()
        return out


class Broken:
    """An objective that always raises (module-level so it pickles into Ray)."""

    def __call__(self, arch):
        raise RuntimeError("the device under test is unplugged")


class NanOnDeep:
    """Returns NaN flops for archs whose first stage is 2 blocks deep (a broken objective)."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, arch):
        from hwnas.searchers import arch_cost

        out = arch_cost(self.space, arch)
        if arch.stages[0].depth == 2:
            out["flops"] = float("nan")
        return out


# ---- kill -9 of a search process, then --resume --------------------------------------------------------
_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_search_helpers import SMALL, SlowCost
from hwnas.search_space import Space
from hwnas.searchers import search
search(Space.from_dict(SMALL), SlowCost(SMALL, 0.15), objectives="flops,params:max", budgets="params<=3e4",
       n_trials=int(sys.argv[2]), storage=sys.argv[1], study_name="k", seed=0, resume=sys.argv[3] == "1"{extra})
"""


def kill9_then_resume(tmp_path, url: str, *, min_before: int, n_total: int = 40, extra: str = ""):
    """Run a search of SMALL (0.15 s a trial) in its own process on `url`, kill -9 it once the study
    holds `min_before` complete trials, resume it to `n_total`, and check what every such test needs:
    the kill landed mid-search, the resumed study holds exactly `n_total` complete trials, no trial
    completed before the kill was lost or changed, none is left RUNNING, and at most the one trial
    running at the kill is left over (as FAIL). `extra`: more `search()` keywords, e.g. ', sampler="evo"'.
    Returns the resumed study's COMPLETE trials."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import optuna
    from hwnas.searchers import load_study

    C = optuna.trial.TrialState.COMPLETE
    script = Path(tmp_path) / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), extra=extra))
    # enough trials that the search cannot finish between two polls (one poll cycle is ~1-2 s, a
    # trial ~0.15 s): with 12 a quiet machine once completed them all before the kill landed
    proc = subprocess.Popen([sys.executable, str(script), url, str(n_total), "0"], start_new_session=True)
    try:
        deadline = time.time() + 120
        n_before = 0
        while time.time() < deadline:
            time.sleep(1.0)  # each poll replays a journal: do not starve the search
            try:
                n_before = len(load_study("k", url).get_trials(deepcopy=False, states=(C,)))
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            if n_before >= min_before:
                break
        assert n_before >= min_before, "the search did not get going"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.values, t.user_attrs["arch"]) for t in load_study("k", url).trials if t.state == C}
    assert min_before <= len(before) < n_total
    subprocess.run([sys.executable, str(script), url, str(n_total), "1"], check=True, timeout=240)
    s = load_study("k", url)
    done = [t for t in s.trials if t.state == C]
    assert len(done) == n_total
    after = {t.number: (t.values, t.user_attrs["arch"]) for t in done}
    assert all(after[k] == v for k, v in before.items())  # nothing completed was lost or changed
    assert not [t for t in s.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(s.trials) - n_total <= 1  # at most the one trial running at the kill, now FAIL
    return done
