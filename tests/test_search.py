"""Optuna runners of hwnas.searchers on real engines: in memory, SQLite, journal, several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from hwnas.errors import ConfigError, ObjectiveError
from hwnas.searchers import ParetoFront, load_study, search, study_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_search_helpers import SMALL, NanOnDeep, kill9_then_resume, small_space, true_hv  # noqa: E402

C = optuna.trial.TrialState.COMPLETE


def test_nsga2_reaches_90_percent_of_true_hypervolume():
    space = small_space()
    hv_star = true_hv(space)
    study = search(space, "analytic", objectives="f1,f2", n_trials=300, seed=0, population_size=30)
    front = ParetoFront.from_study(study)
    assert front.hypervolume(ref=[1.1, 1.1]) >= 0.9 * hv_star
    assert len([t for t in study.trials if t.state == C]) == 300


@pytest.mark.parametrize("budgets", [(), "f1<=0.5"])
def test_in_process_nsga2_samples_exactly_as_optunas(budgets):
    """The in-memory fast path's NSGA-II (state kept as trials finish instead of rescanning the
    study) must draw the same trials as Optuna's NSGAIISampler with the same seed, constraints too,
    over several generations, with a warm-started trial and a failing trial in the mix."""
    from hwnas.searchers._budgets import parse_budgets
    from hwnas.searchers._objectives import make_objective, parse_objectives
    from hwnas.searchers._optuna import _run_local, in_process_nsga2

    space = small_space()
    base = make_objective(space, "analytic")

    def fn(arch):
        if str(arch).count("k5") == 3:  # some archs fail: FAIL trials must not count in a generation
            raise ObjectiveError("planted failure")
        return base(arch)

    objs, buds = parse_objectives("f1,f2"), parse_budgets(budgets)
    runs = []
    for sampler in (optuna.samplers.NSGAIISampler(seed=3, population_size=12), in_process_nsga2(space, seed=3, population_size=12)):
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        study.enqueue_trial(space.to_choices(space.max_arch()))
        _run_local(study, space, fn, objs, buds, 90, shared=False, progress=False)
        runs.append([(t.state, t.user_attrs.get("arch")) for t in study.trials])
    assert runs[0] == runs[1]
    assert sum(1 for st, _ in runs[0] if st == C) == 90
    assert any(st == optuna.trial.TrialState.FAIL for st, _ in runs[0])  # the failure path was exercised
    assert len({a for _, a in runs[0]}) > 40  # and the GA really produced new archs over generations


def test_constraints_exclude_infeasible_points_from_the_front():
    space = small_space()
    study = search(space, "analytic", objectives="f1,f2", budgets="f1<=0.5", n_trials=200, seed=1, population_size=30)
    front = ParetoFront.from_study(study)
    feas = front.feasible()
    assert 0 < feas.sum() < len(front)  # the budget really cut something
    assert all(t.user_attrs["metrics"]["f1"] <= 0.5 for t in study.best_trials)
    members = front.front_mask()
    assert (front.metrics["f1"][members] <= 0.5).all()
    assert sorted(front.trials[members].tolist()) == sorted(t.number for t in study.best_trials)
    # constraint values are what Optuna stored, one per budget
    t = study.trials[0]
    assert list(t.constraints) == ["f1<=0.5"]
    assert t.constraints["f1<=0.5"] == pytest.approx(t.user_attrs["metrics"]["f1"] - 0.5)
    assert front.hypervolume(ref=[1.1, 1.1]) >= 0.85 * true_hv(space, f1_max=0.5)


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga3"])
def test_other_samplers_run_constrained(sampler):
    space = small_space()
    study = search(space, "analytic", objectives="f1,f2", budgets="params<=2e4", n_trials=30, sampler=sampler, seed=0)
    assert len(study.trials) == 30
    for t in study.best_trials:
        assert t.user_attrs["metrics"]["params"] <= 2e4


@pytest.mark.slow
def test_gp_sampler_runs():
    pytest.importorskip("torch")
    # 20 random start-up trials, then one fitted by the Gaussian process (slow on 2 shared cores)
    study = search(small_space(), "analytic", objectives="f1,f2", n_trials=21, sampler="gp", seed=0)
    assert len(study.trials) == 21


def test_seed_reproducible_and_warm_start_and_study_attrs():
    space = small_space()
    a = search(space, "analytic", objectives="f1,f2", n_trials=40, seed=3, warm_start=["min", "max"])
    b = search(space, "analytic", objectives="f1,f2", n_trials=40, seed=3, warm_start=["min", "max"])
    assert [t.user_attrs["arch"] for t in a.trials] == [t.user_attrs["arch"] for t in b.trials]
    assert a.trials[0].user_attrs["arch"] == str(space.min_arch())
    assert a.trials[1].user_attrs["arch"] == str(space.max_arch())
    spec = study_spec(a)
    assert spec.space == space and spec.names == ["f1", "f2"] and spec.sampler == "nsga2"


def test_nan_objective_fails_the_trial_with_a_clear_message():
    space = small_space()
    study = search(space, NanOnDeep(space), objectives="flops,params:max", n_trials=30, sampler="random", seed=0)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in study.trials if t.state == C]
    assert len(done) == 30 and failed
    assert all("non-finite" in t.user_attrs["error"] for t in failed)
    assert all(space.parse(t.user_attrs["arch"]).stages[0].depth == 1 for t in done)
    front = ParetoFront.from_study(study)
    assert len(front) == 30


def test_always_broken_objective_stops_the_search():
    with pytest.raises(ObjectiveError, match="consecutive trials failed"):
        search(small_space(), lambda arch: {"flops": float("inf"), "params": 1.0},
               objectives="flops,params", n_trials=5, sampler="random")


def test_bad_configurations_are_config_errors(tmp_path):
    space = small_space()
    with pytest.raises(ConfigError, match="shared storage"):
        search(space, "analytic", objectives="f1,f2", n_trials=2, workers=2)
    with pytest.raises(ConfigError, match="unknown sampler"):
        search(space, "analytic", objectives="f1,f2", n_trials=2, sampler="cmaes2")
    url = f"sqlite:///{tmp_path}/s.db"
    search(space, "analytic", objectives="f1,f2", n_trials=2, storage=url, study_name="x")
    with pytest.raises(ConfigError, match="already exists"):
        search(space, "analytic", objectives="f1,f2", n_trials=2, storage=url, study_name="x")
    with pytest.raises(ConfigError, match="searches"):
        search(space, "analytic", objectives="f1,flops", n_trials=3, storage=url, study_name="x", resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("rep", range(1))
def test_two_worker_processes_share_one_study_exactly(tmp_path, rep):
    url = f"sqlite:///{tmp_path}/w.db"
    space = small_space()
    study = search(space, "analytic", objectives="f1,f2", budgets="f1<=0.8", n_trials=24, storage=url,
                   study_name="w", workers=2, sampler="random")
    s = load_study("w", url)
    done = [t for t in s.trials if t.state == C]
    assert len(done) == 24
    assert len({t.number for t in done}) == 24
    front = ParetoFront.load("w", url)
    assert sorted(front.trials[front.front_mask()].tolist()) == sorted(t.number for t in study.best_trials)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.cluster)])
def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path, kind, request):
    url = f"sqlite:///{tmp_path}/k.db" if kind == "sqlite" else str(tmp_path / "k.log") if kind == "journal" else \
        request.getfixturevalue("postgres").new_database()  # a real server (tests/_cluster.py)
    done = kill9_then_resume(tmp_path, url, min_before=4)
    assert len({t.number for t in done}) == len(done)  # trial numbers unique: nothing repeated


def test_hwnas_search_cli_then_resume(tmp_path, capsys):
    import yaml
    from hwnas.cli import main

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(SMALL))
    url = f"sqlite:///{tmp_path}/cli.db"
    argv = ["search", "--space", str(space_file), "--provider", "analytic", "--objective", "f1,f2",
            "--budget", "params<=2.5e4", "--trials", "12", "--storage", url, "--study", "c", "--no-progress",
            "--warm-start", "min"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "study 'c': 12 complete trials" in out and "arch" in out
    assert main(argv) == 2  # exists: refuses without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main([*argv[:argv.index("--trials") + 1], "15", *argv[argv.index("--trials") + 2:], "--resume"]) == 0
    s = load_study("c", url)
    assert len([t for t in s.trials if t.state == C]) == 15
    assert s.trials[0].user_attrs["arch"] == str(small_space().min_arch())
    assert main(["search", "--budget", "latency<=3", "--trials", "2", "--no-progress"]) == 2
    assert "unknown objective" in capsys.readouterr().err


_OPEN_SCRIPT = textwrap.dedent("""
    import sys, time
    from hwnas.searchers._storage import open_storage
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    open_storage(sys.argv[1])
    print("OK")
""")


def test_many_processes_opening_a_new_sqlite_storage_at_once(tmp_path):
    """Workers starting together (or a reader polling a search that is starting) all create Optuna's
    schema in a new database; the losers of that race must open the winner's, not fail (a CI run
    once lost a Ray search this way: UNIQUE constraint failed: alembic_version.version_num)."""
    script = tmp_path / "open.py"
    script.write_text(_OPEN_SCRIPT)
    for rnd in range(3):
        url = f"sqlite:///{tmp_path}/race{rnd}.db"
        start = time.time() + 4.0  # past every child's imports: they open within a millisecond
        procs = [subprocess.Popen([sys.executable, str(script), url, str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out.strip() == "OK", err[-2000:]
