"""Pareto fronts: sorting, hypervolume, knee, queries, storage reading, `hwnas pareto`, plot records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import moocore
import numpy as np
import optuna
import pytest
from hwnas.errors import BudgetError
from hwnas.searchers import (
    ParetoFront,
    hypervolume,
    knee_index,
    nondominated_mask,
    pareto_ranks,
    search,
)
from hwnas.searchers._optuna_internals import complete_trials_public as _read_generic
from hwnas.searchers.pareto import hypervolume_2d
from hwnas.searchers.plots import (
    draw_front,
    draw_hv_curves,
    draw_pairs,
    front_record,
    hv_curve_record,
    pair_record,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_search_helpers import small_space  # noqa: E402


def _brute_nd(F):
    n = len(F)
    return np.array([not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(n) if j != i) for i in range(n)])


@pytest.mark.parametrize("m", [1, 2, 3])
def test_nondominated_mask_matches_brute_force_with_ties(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        F = rng.integers(0, 5, size=(60, m)).astype(float)  # many ties and duplicates
        assert (nondominated_mask(F) == _brute_nd(F)).all()


def test_hypervolume_known_values_and_moocore():
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # staircase under ref (4, 4): 1*1 + 1*2 + 1*3 ... computed by hand = 3 + 2 + 1 = 6
    assert hypervolume_2d(F, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(F, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 0.0]]), [4, 4]) == 0.0  # outside ref adds nothing
    rng = np.random.default_rng(0)
    for m in (2, 3):
        P = rng.random((300, m))
        assert hypervolume(P, [1.1] * m) == pytest.approx(moocore.hypervolume(P, ref=[1.1] * m))
    # unit cube corner: a single point at the origin dominates the whole box
    assert hypervolume(np.zeros((1, 3)), [2, 2, 2]) == pytest.approx(8.0)


def test_pareto_ranks_and_knee():
    F = np.array([[0, 1], [1, 0], [1, 1], [2, 2], [0.2, 0.2]], dtype=float)
    r = pareto_ranks(F)
    assert r.tolist() == [1, 1, 2, 3, 1]
    assert pareto_ranks(F, feasible=np.array([1, 1, 1, 0, 1], bool))[3] == 0
    front = np.array([[0.0, 1.0], [0.1, 0.3], [0.5, 0.1], [1.0, 0.0]])
    assert knee_index(front) == 1


def _front():
    return ParetoFront.build(
        objectives="accuracy,latency_ms@cpu",
        archs=["a", "b", "c", "d", "e"],
        metrics={"accuracy": [0.70, 0.80, 0.90, 0.85, 0.95], "latency_ms@cpu": [1.0, 2.0, 3.0, 3.5, 5.0],
                 "params": [1e5, 2e5, 3e5, 4e5, 9e5]},
        budgets="params<=5e5",
    )


def test_front_query_pick_and_frame():
    f = _front()
    assert f.feasible().tolist() == [True, True, True, True, False]
    assert f.front_mask().tolist() == [True, True, True, False, False]  # d dominated by c, e infeasible
    q = f.query("latency_ms@cpu<=2.5")
    assert list(q.archs) == ["a", "b"]
    assert f.pick("latency_ms@cpu<=3").arch == "c"  # the most accurate within 3 ms
    assert f.pick("latency_ms@cpu<=3", by="latency_ms@cpu").arch == "a"
    assert f.pick(nearest={"latency_ms@cpu": 1.9}).arch == "b"
    assert f.pick("latency_ms@cpu<=3").metrics["params"] == 3e5
    with pytest.raises(BudgetError, match="best latency_ms@cpu among feasible trials is 1"):
        f.pick("latency_ms@cpu<=0.5")
    with pytest.raises(BudgetError, match="not recorded"):
        f.pick("flops<=3")
    df = f.to_frame()
    assert df["arch"].tolist() == ["a", "b", "c"]
    full = f.to_frame(all_trials=True)
    assert full["front"].sum() == 3 and not full["feasible"].iloc[4]
    rows = f.rows(sort="accuracy", top=2)
    assert [r["arch"] for r in rows] == ["c", "b"]  # maximised objective: best first


def test_query_recomputes_the_front_under_new_budgets():
    # d is dominated by c only; a budget that removes c must bring d onto the front
    f = ParetoFront.build(objectives="accuracy,params", archs=["c", "d", "x"],
                          metrics={"accuracy": [0.9, 0.85, 0.5], "params": [3.0, 4.0, 1.0], "flops": [9, 1, 1]})
    assert list(f.query().archs) == ["c", "x"]
    assert list(f.query("flops<=5").archs) == ["d", "x"]


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('p')}/p.db"
    study = search(small_space(), "analytic", objectives="f1,f2", budgets="params<=2.5e4", n_trials=60,
                   storage=url, study_name="p", seed=0, sampler="random")
    return url, study


def test_sql_reader_equals_optuna_reader_and_best_trials(stored_study):
    url, study = stored_study
    fast = ParetoFront.from_study(study)
    slow = _read_generic(study, 2, ["params<=25000"])
    assert fast.trials.tolist() == slow.numbers.tolist()
    assert list(fast.archs) == slow.archs
    np.testing.assert_array_equal(np.stack([fast.metrics["f1"], fast.metrics["f2"]], 1), slow.values)
    np.testing.assert_array_equal(fast.violations, slow.violations)
    assert sorted(fast.trials[fast.front_mask()].tolist()) == sorted(t.number for t in study.best_trials)
    # the in-memory path gives the same front
    mem = search(small_space(), "analytic", objectives="f1,f2", budgets="params<=2.5e4", n_trials=60, seed=0,
                 sampler="random")
    fm = ParetoFront.from_study(mem)
    assert sorted(fm.trials[fm.front_mask()].tolist()) == sorted(t.number for t in mem.best_trials)


def test_direct_sqlite_reader_equals_optuna_storage_path(stored_study):
    """`ParetoFront.load` reads SQLite with sqlite3 alone; it must equal the front read through
    Optuna's storage, and fall back to Optuna (and its errors) for what it does not recognise."""
    from hwnas.errors import ConfigError
    from hwnas.searchers.pareto import _load_sqlite_direct

    url, study = stored_study
    direct = _load_sqlite_direct("p", url)
    assert direct is not None and _load_sqlite_direct(None, url) is not None  # one study: name optional
    via_optuna = ParetoFront.from_study(study)
    assert direct.study_name == "p" and direct.objectives == via_optuna.objectives
    assert direct.budgets == via_optuna.budgets and list(direct.archs) == list(via_optuna.archs)
    assert direct.trials.tolist() == via_optuna.trials.tolist()
    assert sorted(direct.metrics) == sorted(via_optuna.metrics)
    for k in direct.metrics:
        np.testing.assert_array_equal(direct.metrics[k], via_optuna.metrics[k])
    np.testing.assert_array_equal(direct.violations, via_optuna.violations)
    assert direct.front_mask().tolist() == via_optuna.front_mask().tolist()
    # not recognised -> None, and load() then gives Optuna's path and its clear errors
    assert _load_sqlite_direct("nope", url) is None
    with pytest.raises(ConfigError, match="not found"):
        ParetoFront.load("nope", url)
    assert _load_sqlite_direct("p", url.replace("p.db", "missing.db")) is None
    with pytest.raises(ConfigError, match="does not exist"):
        ParetoFront.load("p", url.replace("p.db", "missing.db"))


def _cli(*args):
    """`hwnas ARGS` in this process (the real parser and handler; a subprocess test is below)."""
    import contextlib
    import io
    import types

    from hwnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.mark.slow
def test_hwnas_pareto_subprocess(stored_study):
    url, study = stored_study
    out = subprocess.run([sys.executable, "-m", "hwnas", "pareto", "--storage", url, "--format", "json"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert sorted(r["trial"] for r in json.loads(out.stdout)["front"]) == sorted(t.number for t in study.best_trials)


def test_hwnas_pareto_json_matches_study_and_budgets_filter(stored_study, tmp_path):
    url, study = stored_study
    out = _cli("pareto", "--study", "p", "--storage", url, "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["objectives"] == ["f1", "f2"] and doc["budgets"] == ["params<=25000"]
    assert doc["n_trials"] == 60
    best = {t.number: t for t in study.best_trials}
    assert sorted(r["trial"] for r in doc["front"]) == sorted(best)
    for r in doc["front"]:
        t = best[r["trial"]]
        assert r["arch"] == t.user_attrs["arch"]
        assert [r["f1"], r["f2"]] == t.values
    f1s = [r["f1"] for r in doc["front"]]
    assert f1s == sorted(f1s)  # sorted by the first objective, best first
    # an extra budget: exactly the front of the trials meeting both budgets
    out = _cli("pareto", "--storage", url, "--format", "json", "--budget", "f1<=0.5", "--top", "50")
    doc2 = json.loads(out.stdout)
    ok = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
          and t.user_attrs["metrics"]["params"] <= 2.5e4 and t.values[0] <= 0.5]
    F = np.array([t.values for t in ok])
    want = sorted(t.number for t, m in zip(ok, nondominated_mask(F)) if m)
    assert sorted(r["trial"] for r in doc2["front"]) == want
    assert all(r["f1"] <= 0.5 for r in doc2["front"])
    # csv and table, a pick, and a clean error for an impossible budget
    assert _cli("pareto", "--storage", url, "--format", "csv", "--top", "2").stdout.count("\n") == 3
    pick = json.loads(_cli("pareto", "--storage", url, "--pick", "f1<=0.5", "--format", "json").stdout)
    assert pick["trial"] in want
    bad = _cli("pareto", "--storage", url, "--budget", "f1<=-1")
    assert bad.returncode == 0 and "no trial meets" in bad.stdout
    bad = _cli("pareto", "--storage", url, "--pick", "latency_ms<=1")
    assert bad.returncode == 2 and "needs a device" in bad.stderr
    png = tmp_path / "front.png"
    assert _cli("pareto", "--storage", url, "--plot", str(png), "--top", "1").returncode == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_plot_records_then_drawings(stored_study, tmp_path):
    _, study = stored_study
    f = ParetoFront.from_study(study)
    pick = f.pick("f1<=0.5")
    rec = front_record(f, budgets="f2<=2", chosen=[pick])
    assert rec.x == "f1" and rec.y == "f2"
    assert len(rec.points) == len(f) and rec.feasible.sum() == f.feasible("f2<=2").sum()
    assert len(rec.front) == f.front_mask("f2<=2").sum()
    assert np.all(np.diff(rec.front[:, 0]) >= 0)
    assert ("y", 2.0, "f2<=2") in rec.budget_lines
    assert rec.labels[0][2] == f"trial {pick.trial}" and rec.labels[0][:2] == (pick.metrics["f1"], pick.metrics["f2"])
    assert draw_front(rec, tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    f3 = ParetoFront.build(objectives="f1,f2,flops", archs=list(f.archs),
                           metrics={k: f.metrics[k] for k in ("f1", "f2", "flops")})
    pr = pair_record(f3)
    assert pr.names == ("f1", "f2", "flops") and pr.values.shape == (len(f), 3)
    assert draw_pairs(pr, tmp_path / "p.png").stat().st_size > 1000
    hv = hv_curve_record({"nsga2": {100: [0.5, 0.7], 300: [0.9, 0.9]}, "random": {100: [0.4], 300: [0.6]}},
                         reference=1.0, relative=True)
    assert hv.trials == (100, 300)
    np.testing.assert_allclose(hv.curves["nsga2"][0], [0.6, 0.9])
    assert draw_hv_curves(hv, tmp_path / "hv.png").stat().st_size > 1000
