"""Load: a 100,000-trial study queries within a memory bound; concurrent workers do not corrupt a storage.

The 100,000-trial study is a real Optuna SQLite study whose rows are bulk-inserted into Optuna's
own tables by `tests/_synthetic.py` (shared with `benchmarks/search_throughput.py`): running
100,000 trials through Optuna's per-trial commits would take far longer than a test may. Its metrics are real: 2,000 distinct
random archs evaluated by the analytic FLOPs/params objective, repeated to 100,000 trials.

Memory bounds (stated here, checked in a fresh child process so nothing else skews its RSS):
- loading the front of 100,000 trials and querying it (rows, knee, pick, feasibility, hypervolume)
  allocates at most 512 MiB at its peak (tracemalloc: Python objects and numpy arrays) and raises
  the resident set by at most 512 MiB over the process with hwnas and Optuna imported;
- loading it three more times grows the RSS by at most 64 MiB (nothing accumulates per query);
- the in-process search loop grows by at most 64 MiB between its 500th and 3,000th trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

N_BIG = 100_000
LOAD_PEAK_MIB = 512
REPEAT_GROWTH_MIB = 64
SEARCH_GROWTH_MIB = 64


def build_big_study(path: Path, n: int = N_BIG, distinct: int = 2000) -> str:
    """A real Optuna SQLite study holding `n` COMPLETE trials (bulk insert into Optuna's tables)."""
    import optuna
    from hwnas.search_space import Space

    from tests._synthetic import write_synthetic_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return write_synthetic_study(Space.preset("fmnist-mbv3"), n, path, distinct=distinct)


_QUERY = r"""
import json, resource, sys
def rss_mib():  # current resident set, from /proc
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import optuna, numpy, pandas
from hwnas.searchers import ParetoFront
base = peak_mib()
rss_before = rss_mib()
import tracemalloc
tracemalloc.start()  # Python and numpy allocations of the load and queries (the import peak is not theirs)
f = ParetoFront.load("big", sys.argv[1])
rows = f.rows(top=20)
knee = f.knee()
pick = f.pick("params<=5e5")
feas = int(f.feasible("flops<=3e6").sum())
hv = f.hypervolume()
heap_now, heap_peak = (x / 2**20 for x in tracemalloc.get_traced_memory())
tracemalloc.stop()
after_first = rss_mib()
for _ in range(3):
    g = ParetoFront.load("big", sys.argv[1]); g.rows(top=20); g.knee(); del g
print(json.dumps({"n": len(f), "front": int(f.front_mask().sum()), "rows": len(rows), "knee": knee.trial,
                  "pick_params": pick.metrics["params"], "feasible": feas, "hv": hv, "base_peak_mib": base, "rss_before_mib": rss_before, "heap_peak_mib": heap_peak, "heap_kept_mib": heap_now,
                  "peak_mib": peak_mib(), "rss_after_first_mib": after_first, "rss_after_repeats_mib": rss_mib()}))
"""


@pytest.mark.slow
def test_100k_trial_study_queries_within_memory_bound(big_study) -> None:
    _, url = big_study
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-c", _QUERY, url], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["n"] == N_BIG
    assert 0 < m["front"] <= 2000 and m["rows"] == min(20, m["front"])
    assert m["pick_params"] <= 5e5 and m["hv"] > 0
    assert m["heap_peak_mib"] <= LOAD_PEAK_MIB, m
    assert m["rss_after_first_mib"] - m["rss_before_mib"] <= LOAD_PEAK_MIB, m
    assert m["rss_after_repeats_mib"] - m["rss_after_first_mib"] <= REPEAT_GROWTH_MIB, m
    print(f"100k-trial front: heap peak {m['heap_peak_mib']:.0f} MiB, kept {m['heap_kept_mib']:.0f} MiB; RSS "
          f"{m['rss_before_mib']:.0f} -> {m['rss_after_first_mib']:.0f} MiB, process peak {m['peak_mib']:.0f} MiB, "
          f"repeat growth {m['rss_after_repeats_mib'] - m['rss_after_first_mib']:+.0f} MiB")

    # the command line answers on the same study, as JSON with every trial counted
    r = subprocess.run([sys.executable, "-m", "hwnas", "pareto", "--storage", url, "--study", "big", "--format", "json",
                        "--top", "5"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["n_trials"] == N_BIG and len(doc["front"]) == 5


_SEARCH_MEM = r"""
import json, sys
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
from hwnas.search_space import Space
from hwnas.searchers import search, make_objective
space = Space.preset("fmnist-mbv3")
fn = make_objective(space, "flops")
marks = {}
def objective(arch, _n=[0]):
    _n[0] += 1
    if _n[0] in (500, 3000):
        marks[_n[0]] = rss_mib()
    return fn(arch)
study = search(space, objective, objectives="flops,params:max", n_trials=3000, sampler="random", progress=False)
print(json.dumps({"complete": len(study.trials), "rss": marks}))
"""


@pytest.mark.slow
def test_search_loop_memory_is_flat() -> None:
    r = subprocess.run([sys.executable, "-c", _SEARCH_MEM], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["complete"] == 3000
    growth = m["rss"]["3000"] - m["rss"]["500"]
    # Optuna keeps every trial in memory (in-memory storage): a few KiB a trial is expected, not MiBs.
    print(f"search loop RSS 500 -> 3000 trials: {growth:+.1f} MiB")
    assert growth <= SEARCH_GROWTH_MIB, m


@pytest.mark.slow
def test_two_concurrent_search_processes_share_one_sqlite_storage(tmp_path: Path) -> None:
    import optuna
    from hwnas.searchers import load_study

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 150
    base = [sys.executable, "-m", "hwnas", "search", "--space", "fmnist-mbv3", "--provider", "flops", "--sampler",
            "random", "--storage", url, "--study", "shared", "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(base + ["--trials", "5"], check=True, capture_output=True, env=env, timeout=300)
    # both join with --resume (the way a second machine joins): neither may fail the other's live trials
    procs = [subprocess.Popen(base + ["--trials", str(n), "--resume", "--seed", str(s)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    study = load_study("shared", url)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n, f"{len(complete)} complete trials, asked {n}"
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert not [t.number for t in trials if "on resume" in t.user_attrs.get("error", "")]  # no live trial failed
    assert all(t.user_attrs.get("arch") for t in complete)
    assert len({t._trial_id for t in trials}) == len(trials)  # noqa: SLF001
