"""What a front shows (issue 17, items 2-4 and `search --format json`): one row per arch with every
trial number of it; a `hwnas run` study's re-measured front, predicted and measured accuracy named
apart, picks ranked by the measured value and equal to the run's own pick; metric names stored in
the study for dashboards."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from hwnas.search_space import Arch
from hwnas.searchers import ParetoFront, search
from hwnas.searchers._optuna import evaluate_trial, study_spec
from hwnas.searchers.plots import front_record

sys.path.insert(0, str(Path(__file__).parent))
from test_search_helpers import small_space  # noqa: E402

OBJECTIVES = "accuracy,latency_ms@cpu"
BUDGET = "peak_mem_mb@cpu<=5"


def fake_predictors(arch: Arch) -> dict[str, float]:
    """A stand-in for the run's predictors: deterministic per arch, bigger archs 'more accurate'."""
    from hwnas.estimators.flops import arch_macs, arch_params

    space = small_space()
    macs, params = arch_macs(space, arch), arch_params(space, arch)
    return {"accuracy": 0.5 + 0.4 * params / (params + 2e4), "latency_ms@cpu": 0.1 + macs / 1e6,
            "peak_mem_mb@cpu": 1.0 + (params % 7), "params": float(params)}


def _cli(*args: str) -> types.SimpleNamespace:
    from hwnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def dup_study(tmp_path_factory):
    """A stored study whose smallest arch was evaluated in 3 trials (as NSGA-II keeps proposing it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('views')}/v.db"
    space = small_space()
    study = search(space, fake_predictors, objectives=OBJECTIVES, budgets=BUDGET, n_trials=30, storage=url,
                   study_name="v", sampler="random", seed=1)
    spec = study_spec(study)
    for _ in range(3):
        study.enqueue_trial(space.to_choices(space.min_arch()))
    study.optimize(lambda t: evaluate_trial(t, space, fake_predictors, spec.objectives, spec.budgets), n_trials=3)
    return url, study


def test_metric_names_are_stored_for_dashboards(dup_study):
    url, _ = dup_study
    loaded = optuna.load_study(study_name="v", storage=url)
    assert loaded.metric_names == ["accuracy", "latency_ms@cpu"]
    df = loaded.trials_dataframe()
    assert {"values_accuracy", "values_latency_ms@cpu"} <= set(df.columns)


def test_a_front_lists_each_arch_once_with_all_its_trials(dup_study):
    url, study = dup_study
    mini = small_space().min_arch().to_string()
    numbers = sorted(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                     and t.user_attrs["arch"] == mini)
    assert len(numbers) >= 3  # the three enqueued
    front = ParetoFront.load("v", url)
    assert mini in front.query().archs  # the fastest arch is on any accuracy-latency front
    rows = front.rows(top=1000)
    archs = [r["arch"] for r in rows]
    assert len(archs) == len(set(archs)) and mini in archs
    row = next(r for r in rows if r["arch"] == mini)
    assert row["trials"] == numbers and row["trial"] == numbers[0]
    # every front member's trials are exactly the study's trials of that arch
    for r in rows:
        assert r["trials"] == sorted(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                                     and t.user_attrs["arch"] == r["arch"])
    df = front.to_frame()
    assert df["arch"].is_unique and len(df) == len(rows)
    assert front.front_mask().sum() == len(set(front.query().archs)) == len(rows)
    pick = front.pick(f"latency_ms@cpu<={front.column('latency_ms@cpu').min()}")
    assert pick.arch == mini and list(pick.trials) == numbers
    rec = front_record(front)
    assert len(rec.front) == len(rows)  # the plotted step line has one point per arch
    # the command line: table, CSV and JSON the same
    doc = json.loads(_cli("pareto", "--storage", url, "--format", "json", "--top", "1000").stdout)
    assert [r["arch"] for r in doc["front"]] == archs and doc["values"] == "recorded"
    assert next(r for r in doc["front"] if r["arch"] == mini)["trials"] == numbers
    csv = _cli("pareto", "--storage", url, "--format", "csv", "--top", "1000").stdout.splitlines()
    assert len(csv) == len(rows) + 1 and csv[0].startswith("trial,trials,arch,")
    assert any(";".join(map(str, numbers)) in line for line in csv[1:])
    table = _cli("pareto", "--storage", url, "--top", "1000").stdout.splitlines()
    assert len(table) == len(rows) + 1


def test_search_prints_json_like_pareto(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    r = _cli("search", "--space", str(_space_yaml(tmp_path)), "--provider", "analytic", "--objective", "f1,f2",
             "--trials", "20", "--storage", url, "--study", "j", "--format", "json", "--no-progress", "--top", "100")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # nothing else on stdout
    pareto = json.loads(_cli("pareto", "--storage", url, "--format", "json", "--top", "100").stdout)
    assert doc == pareto
    assert doc["study"] == "j" and doc["n_trials"] == 20 and doc["objectives"] == ["f1", "f2"]
    r = _cli("search", "--space", str(_space_yaml(tmp_path)), "--provider", "analytic", "--objective", "f1,f2",
             "--trials", "20", "--storage", url, "--study", "j", "--resume", "--format", "csv", "--no-progress")
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("trial,trials,arch,f1,f2")


def _space_yaml(tmp_path: Path) -> Path:
    import yaml

    p = tmp_path / "small.yaml"
    if not p.exists():
        p.write_text(yaml.safe_dump(small_space().to_dict()))
    return p


# ---- a `hwnas run` study: predicted in the trials, re-measured by the pareto stage -------------------
def _run_cfg():
    from hwnas.pipeline.config import RunConfig

    return RunConfig(name="views", devices=("cpu",), objectives=("accuracy", "latency_ms@cpu"), budgets=(BUDGET,),
                     accuracy_archs=10)


def _remeasure(front: ParetoFront, n: int) -> pd.DataFrame:
    """What the pareto stage builds: n searched archs with a measured accuracy that reverses the
    predictor's order (a poor predictor), plus two accuracy pairs that are no trial of the study."""
    from hwnas.pipeline.pareto import refine_candidates

    picked = refine_candidates(front, n, "latency_ms@cpu")
    space = small_space()
    rows = []
    for a, t in picked:
        m = fake_predictors(space.parse(a))
        rows.append({"trial": t, "arch": a, "source": "search", **m, "predicted_accuracy": m["accuracy"],
                     "accuracy": 1.4 - m["accuracy"]})
    rng = np.random.default_rng(0)
    seen = set(front.archs)
    while len(rows) < len(picked) + 2:
        a = space.sample(rng)
        if a.to_string() in seen:
            continue
        seen.add(a.to_string())
        m = fake_predictors(a)
        rows.append({"trial": -1, "arch": a.to_string(), "source": "pairs", **m, "predicted_accuracy": m["accuracy"],
                     "accuracy": 0.99})  # a pair measured best of all
    return pd.DataFrame(rows)


def test_a_run_study_picks_by_measured_accuracy_as_the_run_does(dup_study, tmp_path):
    from hwnas.pipeline.pareto import front_from_table, label_study

    url, _ = dup_study
    # a copy, so the other tests keep a plain study
    src = Path(url[len("sqlite:///"):])
    copy = tmp_path / "run-study.db"
    optuna.copy_study(from_study_name="v", from_storage=url, to_storage=f"sqlite:///{copy}")
    url = f"sqlite:///{copy}"
    assert src.is_file()
    cfg, summary = _run_cfg(), {"study": "v", "storage": url}
    label_study(summary, cfg)  # what the stage does first
    predicted = ParetoFront.load("v", url, measured=False)
    assert predicted.label("accuracy") == "accuracy_predicted" and predicted.view == "recorded"
    cand = _remeasure(predicted, 6)
    label_study(summary, cfg, cand, predicted)
    run_front = front_from_table(cfg, cand)  # the run's final front (pareto.csv / candidates.csv)

    front = ParetoFront.load("v", url)
    assert front.view == "measured" and len(front) == len(cand)
    assert front.label("accuracy") == "accuracy_measured" and front.label("predicted_accuracy") == "accuracy_predicted"
    assert "accuracy_measured" in front.sources and front.sources["accuracy_measured"].startswith("measured")
    assert front.sources["accuracy_predicted"].startswith("predicted")
    via_optuna = ParetoFront.from_study(optuna.load_study(study_name="v", storage=url))
    assert list(via_optuna.archs) == list(front.archs) and via_optuna.view == "measured"
    lat = np.sort(cand["latency_ms@cpu"].to_numpy())
    budgets = [f"latency_ms@cpu<={b}" for b in (lat[len(lat) // 2], lat[-1], lat[0])]
    differs = 0
    for b in budgets:
        want = run_front.pick(b)
        got = front.pick(b)
        assert got.arch == want.arch and got.ranked_by == "accuracy"
        assert got.metrics["accuracy"] == want.metrics["accuracy"]
        differs += predicted.pick(b).arch != got.arch
        doc = json.loads(_cli("pareto", "--storage", url, "--pick", b, "--format", "json").stdout)
        assert doc["arch"] == want.arch and doc["ranked_by"] == "accuracy_measured"
        assert {"accuracy_measured", "accuracy_predicted"} <= set(doc["metrics"]) and "accuracy" not in doc["metrics"]
    assert differs  # the predicted values would have picked otherwise: the test tells the two apart
    # the table and JSON say what they hold; --predicted shows the search's own values
    doc = json.loads(_cli("pareto", "--storage", url, "--format", "json").stdout)
    assert doc["values"] == "measured" and doc["n_candidates"] == len(cand)
    assert doc["objectives"] == ["accuracy_measured", "latency_ms@cpu"]
    assert {"accuracy_measured", "accuracy_predicted"} <= set(doc["front"][0]) and "accuracy" not in doc["front"][0]
    assert {r["arch"] for r in doc["front"]} == set(run_front.query().archs)
    doc = json.loads(_cli("pareto", "--storage", url, "--format", "json", "--predicted").stdout)
    assert doc["values"] == "recorded" and doc["n_trials"] == len(predicted)
    assert "accuracy_predicted" in doc["front"][0] and "accuracy_measured" not in doc["front"][0]
    header = _cli("pareto", "--storage", url).stdout.splitlines()[0].split()
    assert header[:5] == ["trial", "trials", "arch", "accuracy_measured", "latency_ms@cpu"]
    # a pair (no trial of the study) is a candidate with no trial numbers
    pair = cand[cand["source"] == "pairs"]["arch"].iloc[0]
    i = list(front.archs).index(pair)
    assert front.trials_of(i) == () and int(front.trials[i]) == -1
    # sorting and budgets accept the labels too
    rows = front.rows(sort="accuracy_measured", top=3)
    assert rows == front.rows(sort="accuracy", top=3)
