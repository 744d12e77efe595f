"""Optuna's internals stay in `searchers/_optuna_internals.py`; its fast paths equal the public API's.

The module reads private attributes and Optuna's SQL tables, each with a fallback to the public
API. These tests check (1) no other module under `searchers/` touches Optuna's (or any foreign)
private names or tables, (2) each fast path gives what the public path gives on real studies, and
(3) with the installed Optuna the fast paths are recognised (a silent fallback would only be slower,
so nothing else would notice).
"""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from hwnas.searchers import _optuna_internals as oi
from hwnas.searchers import search
from hwnas.searchers._storage import open_storage

from tests.test_search_helpers import small_space

REPO = Path(__file__).resolve().parents[1]
SEARCHERS = REPO / "searchers"
C, R, F = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
# SQL on Optuna's tables (keywords upper case, as written in this code base)
_OPTUNA_SQL = re.compile(r"\b(FROM|INTO|JOIN|UPDATE|TABLE)\s+(studies|study_\w+|trials|trial_\w+|version_info|alembic_version)\b")


def _own_private_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Private names `searchers/` defines itself: functions, classes, attributes it assigns, fields."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("_")}


def _annotation_nodes(tree: ast.Module) -> set[int]:
    """Nodes inside type annotations: never evaluated under `from __future__ import annotations`
    (the CLIs' `argparse._SubParsersAction` hint is no use of a private name at run time)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for r in roots for n in ast.walk(r)}


def _foreign_private_uses(path: Path, tree: ast.Module, own: set[str]) -> list[str]:
    rel = path.relative_to(REPO).as_posix()
    hits = []
    hints = _annotation_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and node.attr not in own:
            hits.append(f"{rel}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("optuna", "ray"):
            private = [p for p in node.module.split(".") if p.startswith("_")]
            private += [a.name for a in node.names if a.name.startswith("_")]
            if private:
                hits.append(f"{rel}:{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            hits += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                     if a.name.split(".")[0] in ("optuna", "ray") and any(p.startswith("_") for p in a.name.split("."))]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _OPTUNA_SQL.search(node.value):
            hits.append(f"{rel}:{node.lineno}: SQL on Optuna's tables: {node.value[:60]!r}")
    return hits


def test_only_the_internals_module_touches_optuna_internals() -> None:
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(SEARCHERS.glob("*.py"))}
    internals = SEARCHERS / "_optuna_internals.py"
    assert internals in trees
    own = _own_private_names({p: t for p, t in trees.items() if p != internals})
    hits = [h for p, t in trees.items() if p != internals for h in _foreign_private_uses(p, t, own)]
    assert not hits, "Optuna/Ray internals outside searchers/_optuna_internals.py:\n" + "\n".join(hits)
    # the scan does see such uses: the internals module is full of them
    found = _foreign_private_uses(internals, trees[internals], own)
    assert any("._storage" in h for h in found) and any("._trial_id" in h for h in found)
    assert any("SQL on Optuna's tables" in h for h in found)


# ---- fast paths equal public paths on real studies -------------------------------------------------------
def _mixed_study(storage) -> optuna.Study:
    """A study holding COMPLETE, FAIL and RUNNING trials."""
    study = optuna.create_study(storage=storage, directions=["minimize", "minimize"])
    for i in range(7):
        t = study.ask()
        x = t.suggest_float("x", 0.0, 1.0)
        if i % 3 == 2:
            study.tell(t, state=F)
        elif i % 3 == 1:
            continue  # left RUNNING, as by a killed worker
        else:
            study.tell(t, [x, 1.0 - x])
    return study


@pytest.fixture(params=["memory", "sqlite", "journal"])
def mixed_study(request, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path / 'm.db'}", "journal": str(tmp_path / "m.log")}[request.param]
    return _mixed_study(open_storage(url))


def test_count_trials_fast_path_equals_public(mixed_study):
    for states in [(C,), (R,), (F,), (C, R), (C, R, F)]:
        fast = oi._count_trials_private(mixed_study, states)
        assert fast is not None, "the installed Optuna's storage was not recognised"
        assert fast == oi._count_trials_public(mixed_study, states) == oi.count_trials(mixed_study, states)
    assert oi.count_trials(mixed_study, (C,)) == 3 and oi.count_trials(mixed_study, (R,)) == 2
    # an RDB storage is counted by one SELECT COUNT, the others through the storage
    rdb = isinstance(getattr(mixed_study._storage, "_backend", None), optuna.storages.RDBStorage)
    assert (oi._count_trials_sql(mixed_study, (C,)) is not None) == rdb
    for number in range(8):
        want = sum(1 for t in mixed_study.get_trials(deepcopy=False, states=(C, R)) if t.number < number)
        assert oi.count_trials_before(mixed_study, (C, R), number) == want


def _suggest_public(trial, dists, attrs):
    params = {k: trial.suggest_categorical(k, d.choices) for k, d in dists.items()}
    for k, v in attrs(params).items():
        trial.set_user_attr(k, v)
    return params


def test_suggest_all_writes_what_the_public_calls_write(tmp_path):
    """One transaction for a trial's params and attributes (the RDB fast path) leaves the same
    trial, read back by a fresh process's storage, as Optuna's one-call-a-row public path."""
    from optuna.distributions import CategoricalDistribution

    dists = {f"c{i}": CategoricalDistribution([1, 2, 3, "x"]) for i in range(6)}

    def attrs(p):
        return {"arch": "-".join(map(str, p.values())), "worker": "h:1:2"}

    got = {}
    for how in ("fast", "public"):
        url = f"sqlite:///{tmp_path / (how + '.db')}"
        study = optuna.create_study(storage=open_storage(url), study_name="s", sampler=optuna.samplers.RandomSampler(seed=3),
                                    directions=["minimize"])
        study.enqueue_trial({"c0": "x", "c3": 2})  # enqueued values win over the sampler's, on both paths
        for _ in range(3):
            t = study.ask()
            if how == "fast":
                assert oi._buffered_writes_recognised(t, t.storage), "the installed Optuna's RDB storage was not recognised"
                params = oi.suggest_all(t, dists, attrs)
                oi.set_trial_attrs(t, {"metrics": {"a": 0.0}}, {})
                oi.set_trial_attrs(t, {"metrics": {"a": 1.5}}, {"lat<=2": -0.5})  # set again: replaced
            else:
                params = _suggest_public(t, dists, attrs)
                t.set_user_attr("metrics", {"a": 0.0})
                t.set_user_attr("metrics", {"a": 1.5})
                t.set_constraint("lat<=2", -0.5)
            assert t.params == params  # the live trial knows its params either way
            study.tell(t, [float(len(params))])
        again = optuna.load_study(study_name="s", storage=open_storage(url))
        got[how] = [(t.params, t.distributions, t.user_attrs, t.system_attrs, t.state, t.values)
                    for t in again.get_trials(deepcopy=False)]
    assert got["fast"] == got["public"]
    assert got["fast"][0][0]["c0"] == "x" and got["fast"][0][0]["c3"] == 2


def test_suggest_all_refuses_a_finished_trial_and_an_incompatible_distribution(tmp_path):
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'f.db'}"), study_name="f")
    t = study.ask()
    oi.suggest_all(t, {"a": CategoricalDistribution([1, 2])})
    study.tell(t, 1.0)
    t2 = study.ask()
    with pytest.raises(ValueError):  # "a" was [1, 2] in this study
        oi.suggest_all(t2, {"a": CategoricalDistribution([1, 2, 3])})
    assert study.get_trials()[-1].params == {}  # nothing of the refused write landed
    other = optuna.load_study(study_name="f", storage=open_storage(f"sqlite:///{tmp_path / 'f.db'}"))
    t3 = other.ask()
    other.tell(t3, state=F)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        oi.set_trial_attrs(t3, {"x": 1}, {})
    assert "x" not in other.get_trials()[-1].user_attrs


def test_fail_running_trial_fast_path_equals_public(mixed_study):
    running = mixed_study.get_trials(deepcopy=False, states=(R,))
    complete = mixed_study.get_trials(deepcopy=False, states=(C,))
    assert len(running) == 2
    assert oi._fail_running_trial_private(mixed_study, running[0], "stale") is True
    assert oi._fail_running_trial_public(mixed_study, running[1]) is True
    after = {t.number: t for t in mixed_study.get_trials(deepcopy=False)}
    assert after[running[0].number].state == after[running[1].number].state == F
    assert after[running[0].number].user_attrs["error"] == "stale"  # only the private path can write it
    # a trial finished meanwhile (here: long ago) is left alone by both paths
    assert oi._fail_running_trial_private(mixed_study, complete[0], "stale") is False
    assert oi._fail_running_trial_public(mixed_study, complete[0]) is False
    assert oi.fail_running_trial(mixed_study, complete[0], "stale") is False
    again = {t.number: t for t in mixed_study.get_trials(deepcopy=False)}
    assert again[complete[0].number].state == C and "error" not in again[complete[0].number].user_attrs


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_complete_trials_fast_path_equals_public(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.log")
    study = search(small_space(), "analytic", objectives="f1,f2", budgets="params<=2.5e4", n_trials=25,
                   storage=url, study_name="s", seed=0, sampler="random")
    sql = oi._complete_trials_sql(study, 2, ["params<=25000"])
    public = oi.complete_trials_public(study, 2, ["params<=25000"])
    if kind == "journal":
        assert sql is None  # not an RDB storage: the public path is the only one
        return
    assert sql is not None, "the installed Optuna's RDB storage was not recognised"
    assert sql.numbers.tolist() == public.numbers.tolist() and sql.archs == public.archs
    np.testing.assert_array_equal(sql.values, public.values)
    np.testing.assert_array_equal(sql.violations, public.violations)
    assert sorted(sql.metrics) == sorted(public.metrics)
    for k in sql.metrics:
        np.testing.assert_array_equal(sql.metrics[k], public.metrics[k])


def test_sqlite_reader_falls_back_on_a_foreign_schema(tmp_path):
    """A SQLite file that is not an Optuna study (or has no such study) yields None, never a guess."""
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE studies (id INTEGER)")
    con.commit()
    con.close()
    with oi.open_sqlite_study(other, None) as st:
        assert st is None
    with oi.open_sqlite_study(tmp_path / "missing.db", None) as st:
        assert st is None
    assert not (tmp_path / "missing.db").exists()


def test_fast_paths_are_recognised_by_the_installed_optuna(tmp_path):
    # in-process NSGA-II: the subclass, not Optuna's own sampler as the fallback
    from hwnas.searchers._optuna import in_process_nsga2

    s = in_process_nsga2(small_space(), seed=0, population_size=8)
    assert type(s) is not optuna.samplers.NSGAIISampler and isinstance(s, optuna.samplers.NSGAIISampler)
    # SQLite storages get the WAL journal (fsync per commit otherwise)
    path = tmp_path / "w.db"
    st = open_storage(f"sqlite:///{path}")
    optuna.create_study(storage=st, study_name="w").add_trial(
        optuna.trial.create_trial(value=1.0, params={}, distributions={}))
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "journal"])
def test_ask_trial_creates_or_pops_as_study_ask_does(tmp_path, kind):
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path / 'a.db'}", "journal": str(tmp_path / "a.log")}[kind]
    study = optuna.create_study(storage=open_storage(url), study_name="a")
    t0 = oi.ask_trial(study)  # nothing waits: a new RUNNING trial
    assert t0.number == 0 and isinstance(t0, optuna.trial.Trial)
    study.enqueue_trial({"x": 0.25})
    t1 = oi.ask_trial(study)  # the enqueued trial is popped, its params fixed, as study.ask does
    assert t1.number == 1 and t1.suggest_float("x", 0.0, 1.0) == 0.25
    t2 = oi.ask_trial(study)
    assert t2.number == 2
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [R, R, R]
    for t in (t0, t1, t2):
        study.tell(t, 1.0)
    assert oi.count_trials(study, (C,)) == 3 and oi.count_trials(study, (optuna.trial.TrialState.WAITING,)) == 0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "journal"])
def test_ask_trial_writes_the_worker_stamp_with_the_trial(tmp_path, kind):
    """The stamp is there the moment another process can see the trial: a --resume there, reading
    the RUNNING trials before the worker suggested anything, finds a live worker (a CI run once
    failed a live trial that was created unstamped and stamped a moment later)."""
    from hwnas.searchers._liveness import WORKER_ATTR, this_worker, worker_state

    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path / 'a.db'}", "journal": str(tmp_path / "a.log")}[kind]
    st = open_storage(url)
    study = optuna.create_study(storage=st, study_name="a")
    t = oi.ask_trial(study, {WORKER_ATTR: this_worker()})
    assert t.number == 0 and t.params == {}
    other = study if url is None else optuna.load_study(study_name="a", storage=open_storage(url))
    [seen] = other.get_trials(deepcopy=False, states=(R,))
    assert seen.user_attrs == {WORKER_ATTR: this_worker()} and worker_state(seen) == "alive"
    assert seen.datetime_start is not None
    assert t.suggest_float("x", 0.0, 1.0) is not None  # a live trial as any other
    study.tell(t, 1.0)
    assert oi.count_trials(study, (C,)) == 1
    # an enqueued trial is popped as study.ask pops it, and stamped just after
    study.enqueue_trial({"x": 0.5})
    t = oi.ask_trial(study, {WORKER_ATTR: this_worker()})
    assert t.number == 1 and t.user_attrs[WORKER_ATTR] == this_worker() and t.suggest_float("x", 0.0, 1.0) == 0.5


@pytest.mark.parametrize("kind", ["memory", "sqlite", "journal"])
def test_trial_archs_since_reads_from_a_number_on(tmp_path, kind):
    """(number, state, arch, error) from a trial number on; the SQL path equals the public one, and a
    number past the last trial gives nothing (the in-memory path used to rescan the whole study)."""
    url = {"memory": None, "sqlite": f"sqlite:///{tmp_path / 't.db'}", "journal": str(tmp_path / "t.log")}[kind]
    study = optuna.create_study(storage=open_storage(url), study_name="t", directions=["minimize"])
    for i in range(6):
        t = study.ask()
        if i != 4:
            t.set_user_attr("arch", f"a{i % 4}")
        if i == 2:
            t.set_user_attr("error", "duplicate: trial 0 holds this arch")
            study.tell(t, state=F)
        elif i < 4:
            study.tell(t, 1.0)
    want = [(0, "COMPLETE", "a0", None), (1, "COMPLETE", "a1", None), (2, "FAIL", "a2", "duplicate: trial 0 holds this arch"),
            (3, "COMPLETE", "a3", None), (4, "RUNNING", None, None), (5, "RUNNING", "a1", None)]
    assert oi._trial_archs_public(study, 0) == want
    assert oi.trial_archs_since(study, 3) == want[3:]
    assert oi.trial_archs_since(study, 6) == [] and oi._trial_archs_public(study, 6) == [] and oi._trial_archs_public(study, 60) == []
    sql = oi._trial_archs_sql(study, 2)
    assert (sql is not None) == (kind == "sqlite")
    if sql is not None:
        assert sql == want[2:]
