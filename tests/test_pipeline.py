"""End to end: the whole main job on a Fashion-MNIST subset (configs/tiny-cpu.yaml), then checks
that every output exists and is consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, "-m", "hwnas", "run", "--config", str(REPO / "configs/tiny-cpu.yaml"),
           "--out-root", str(root), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = root / "tiny-cpu"
    out.joinpath("run1.log").write_text(proc.stdout)
    return out


@pytest.fixture(scope="module")
def bundle_run(tiny_bundle, tmp_path_factory):
    """The main job on a supernet bundle (`--pretrained`): nothing trained, pairs and predictor taken."""
    root = tmp_path_factory.mktemp("bundle-runs")
    cmd = [sys.executable, "-m", "hwnas", "run", "--config", str(REPO / "configs/tiny-cpu.yaml"), "--out-root", str(root),
           "--name", "on-bundle", "--pretrained", str(tiny_bundle), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "on-bundle", proc.stdout


@pytest.mark.slow
def test_main_job_on_a_bundle_trains_nothing_and_uses_the_bundles_pairs_and_predictor(bundle_run, tiny_bundle):
    import optuna
    from hwnas.estimators import load_bundle
    from hwnas.estimators.accuracy import load_accuracy_predictor
    from hwnas.search_space import Space

    run_dir, log = bundle_run
    assert "SHA-256 of its" in log and "verified" in log and str(tiny_bundle) in log
    assert not (run_dir / "supernet").exists()  # nothing trained, nothing copied
    b = load_bundle(tiny_bundle)
    pairs = pd.read_csv(run_dir / "accuracy_samples.csv")
    assert list(pairs["arch"]) == [str(a) for a in b.pairs()[0]]
    space = Space.preset("fmnist-mbv3")
    archs = space.sample_many(8, 3, unique=True)
    ours, theirs = load_accuracy_predictor(run_dir / "accuracy_predictor.json"), b.predictor()
    np.testing.assert_allclose(ours.predict_many(archs), theirs.predict_many(archs), rtol=1e-6)
    storage = f"sqlite:///{run_dir / 'study.db'}"
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert optuna.load_study(study_name=name, storage=storage).user_attrs["supernet"] == str(tiny_bundle)
    exported = pd.read_csv(run_dir / "exported.csv")
    assert len(exported) >= 1 and len(list((run_dir / "exported").iterdir())) == len(exported)
    report = (run_dir / "report.md").read_text()
    assert f"Taken from the shipped bundle** `{tiny_bundle}`" in report
    # every export: predicted, measured and the error on each device, the error from the two beside it
    for dev in ("cpu", "ort-cpu"):
        err = 100 * (exported[f"{dev} ms pred"] - exported[f"{dev} ms meas"]) / exported[f"{dev} ms meas"]
        np.testing.assert_allclose(exported[f"{dev} err %"], err, rtol=1e-9)
        assert f"{dev} err %" in report


@pytest.mark.slow
def test_main_job_refuses_a_bundle_whose_hash_does_not_match(tiny_bundle, tmp_path):
    import shutil

    bad = tmp_path / "fmnist-mbv3"
    shutil.copytree(tiny_bundle, bad)
    with open(bad / "accuracy_pairs.csv", "a", encoding="utf-8") as f:
        f.write("\n")
    cmd = [sys.executable, "-m", "hwnas", "run", "--config", str(REPO / "configs/tiny-cpu.yaml"), "--out-root",
           str(tmp_path / "runs"), "--pretrained", str(bad), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "accuracy_pairs.csv" in err[0] and "SHA-256" in err[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "tiny-cpu" / "study.db").exists()  # refused before any stage's work


def test_run_config_pretrained_auto_null_and_retrain(tmp_path):
    """`train.pretrained`: auto (the default) takes the space's shipped bundle only when one is shipped;
    null and --retrain train; a name that is no bundle is refused."""
    from hwnas.errors import CheckpointError
    from hwnas.pipeline.config import load_run_config
    from hwnas.pipeline.train import pretrained_bundle
    from hwnas.supernet.checkpoint import BUNDLE_ROOT, bundle_names

    cfg = load_run_config(REPO / "configs/fmnist-cpu.yaml")
    assert cfg.pretrained == "auto"
    assert pretrained_bundle(cfg) == (BUNDLE_ROOT / "fmnist-mbv3" if "fmnist-mbv3" in bundle_names() else None)
    assert pretrained_bundle(load_run_config(REPO / "configs/fmnist-cpu.yaml", retrain=True)) is None
    assert load_run_config(REPO / "configs/tiny-cpu.yaml").pretrained is None
    with pytest.raises(CheckpointError, match="no supernet at"):
        pretrained_bundle(load_run_config(REPO / "configs/fmnist-cpu.yaml", pretrained="no-such-bundle"))


def test_profile_repeats_reaches_the_profile_and_the_stage_stamp(tmp_path):
    """`profile.repeats` (timing samples per kernel) is validated, changes the profile stage's stamp
    only when it is not the default (older runs keep theirs), and times the kernels with it."""
    from dataclasses import replace

    from hwnas.errors import ConfigError
    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL
    from hwnas.pipeline.config import DEFAULT_PROFILE_REPEATS, RunConfig, load_run_config
    from hwnas.pipeline.runner import _steps

    assert RunConfig().profile_repeats == DEFAULT_PROFILE_REPEATS == DEFAULT_PROTOCOL.repeats
    assert load_run_config(REPO / "configs/tiny-cpu.yaml").profile_repeats < DEFAULT_PROTOCOL.repeats
    for bad in (2, 0, 10_001, True, "9"):
        with pytest.raises(ConfigError, match="profile.repeats"):
            RunConfig(profile_repeats=bad)
    bad_yaml = tmp_path / "r.yaml"
    bad_yaml.write_text("profile: {repeats: 1}\n")
    with pytest.raises(ConfigError, match="must be an int in 3..10000"):
        load_run_config(bad_yaml)

    def stamp(cfg):
        return next(dep for name, dep, _ in _steps(cfg, None) if name == "profile")

    assert "repeats" not in stamp(RunConfig()) and stamp(RunConfig(profile_repeats=9))["repeats"] == 9
    # the stage times kernels, networks and the held-out check with that many samples
    import json as _json

    from hwnas.pipeline.context import RunContext
    from hwnas.pipeline.profile import stage_profile

    from tests._helpers import tiny_space

    cfg = RunConfig(name="r", devices=("cpu",), profile_networks=3, validate_networks=2, profile_repeats=5,
                    out_root=str(tmp_path))
    out = stage_profile(RunContext(cfg=cfg, space=tiny_space(), run_dir=tmp_path / "r", progress=False))["devices"]["cpu"]
    assert out["protocol"] == replace(DEFAULT_PROTOCOL, repeats=5).to_dict()
    d = tmp_path / "r" / "profiles" / "cpu"
    settings = _json.loads((d / "profile.json").read_text())["settings"]
    assert settings["repeats"] == settings["net_repeats"] == 5
    v = pd.read_csv(d / "validation.csv")
    assert set(v["repeats"]) == {5} and (v["samples"] == DEFAULT_PROTOCOL.rounds * 3).all()  # 3 a round at least


@pytest.mark.slow
def test_every_output_exists(run_dir):
    for name in ["config.json", "supernet/supernet.safetensors", "supernet/supernet.json", "study.db",
                 "pareto.csv", "pareto.png", "predicted_vs_measured.png", "report.md", "accuracy_samples.csv",
                 "accuracy_predictor.json", "exported.csv", "trials.csv"]:
        assert (run_dir / name).is_file(), name
    for dev in ("cpu", "ort-cpu"):
        assert (run_dir / "profiles" / dev / "latency_predictor.json").is_file()
        assert (run_dir / "profiles" / dev / "validation.csv").is_file()
    exported = pd.read_csv(run_dir / "exported.csv")
    assert 1 <= len(exported) <= 3
    assert len(list((run_dir / "exported").iterdir())) == len(exported)
    assert exported["arch"].is_unique
    report = (run_dir / "report.md").read_text()
    for needle in ("Supernet training", "Exported subnets", "pareto.png", "estimated", "cpu err %", "ort-cpu err %"):
        assert needle in report
    assert "shipped bundle" not in report  # this run trained its supernet


@pytest.mark.slow
def test_front_members_are_non_dominated_and_feasible(run_dir):
    """The final front is taken over the re-measured candidates: no feasible candidate dominates a
    member, the budget holds, and the candidates include the predicted front's archs (then the next
    ranks, up to `search.refine`, 8 in tiny-cpu.yaml) with the measured and the predicted accuracy."""
    front = pd.read_csv(run_dir / "pareto.csv")
    cand = pd.read_csv(run_dir / "candidates.csv")
    objs = [("accuracy", -1), ("latency_ms@cpu", 1), ("latency_ms@ort-cpu", 1)]
    F = np.stack([front[k].to_numpy() * s for k, s in objs], axis=1)
    A = np.stack([cand[cand["feasible"]][k].to_numpy() * s for k, s in objs], axis=1)
    for f in F:  # no feasible candidate dominates a front member
        dominated = np.all(A <= f, axis=1) & np.any(A < f, axis=1)
        assert not dominated.any()
    assert (front["peak_mem_mb@cpu"] <= 3.0).all()  # the budget holds on the front
    assert len(front) >= 1
    assert set(front["arch"]) <= set(cand["arch"])
    pairs = pd.read_csv(run_dir / "accuracy_samples.csv")
    assert set(pairs["arch"]) <= set(cand["arch"])  # the measured pairs are candidates too
    from_search = cand[cand["source"] == "search"]
    assert 1 <= len(from_search) <= 8 and from_search["arch"].is_unique
    trials = pd.read_csv(run_dir / "trials.csv")
    assert set(from_search["arch"]) <= set(trials[trials["feasible"]]["arch"])
    predicted_front = set(trials[trials["front"]]["arch"])
    if len(predicted_front) <= 8:  # the predicted front comes first, then the next ranks
        assert predicted_front <= set(from_search["arch"])
    # measured accuracies are the supernet's on search-val: pairs keep their recorded value
    merged = cand.merge(pairs, on="arch")
    assert np.allclose(merged["accuracy"], merged["val_accuracy"])
    assert "predicted_accuracy" in cand


@pytest.mark.slow
def test_exported_checkpoints_reload_and_reproduce_their_accuracy(run_dir):
    from hwnas.data import make_loaders
    from hwnas.supernet import load_subnet
    from hwnas.supernet.bn import evaluate

    for ck in sorted((run_dir / "exported").iterdir()):
        info = json.loads((ck / "arch.json").read_text())
        m = info["metrics"]
        assert set(m["predicted"]) >= {"accuracy", "latency_ms@cpu"} and "accuracy" in m["measured"]
        assert m["measured"]["latency_ms@cpu"] > 0
        model = load_subnet(ck)
        loaders = make_loaders("fashion-mnist", space=model.space)
        acc = evaluate(model, None, loaders.test, recalibrate=False)
        assert acc == pytest.approx(m["measured"]["accuracy"], abs=1e-9)
        assert (ck / "model.onnx").is_file()


@pytest.mark.slow
def test_pareto_pick_on_the_run_study_is_the_runs_export(run_dir):
    """`hwnas pareto --pick` on the run's study.db ranks by the re-measured accuracy the run exported
    by (issue 17): for each exported budget it returns the exported arch, and says what it ranked by."""
    url = f"sqlite:///{run_dir / 'study.db'}"
    for ck in sorted((run_dir / "exported").iterdir()):
        info = json.loads((ck / "arch.json").read_text())
        budget = info["extra"]["budget"]
        cmd = [sys.executable, "-m", "hwnas", "pareto", "--storage", url, "--pick", budget, "--format", "json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-2000:]
        pick = json.loads(proc.stdout)
        assert pick["arch"] == info["arch"], budget
        assert pick["ranked_by"] == "accuracy_measured"
        assert pick["metrics"]["accuracy_measured"] == pytest.approx(info["metrics"]["predicted"]["accuracy"], abs=1e-12)


@pytest.mark.slow
def test_rerun_skips_finished_stages(run_dir):
    cmd = [sys.executable, "-m", "hwnas", "run", "--config", str(REPO / "configs/tiny-cpu.yaml"),
           "--out-root", str(run_dir.parent), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("up to date, skipped") == 7


def test_auto_latency_budgets_pick_distinct_meaningfully_different_members():
    """Members whose predicted latencies are within 5% are one choice (the most accurate of them);
    infeasible members are never chosen; with enough distinct groups the budgets sit at the 20/50/90%
    positions of the group order, and each budget picks its group's representative."""
    from hwnas.pipeline import auto_latency_budgets
    from hwnas.searchers import ParetoFront

    lat = [2.2269, 2.2489, 2.2494, 4.1027, 6.05, 3.0]
    acc = [0.8312, 0.8364, 0.8496, 0.8548, 0.8856, 0.80]
    mem = [0.6, 0.6, 0.6, 2.7, 4.2, 1.0]  # a4 is over the memory budget
    f = ParetoFront.build(objectives=["accuracy", "latency_ms@cpu"], archs=[f"a{i}" for i in range(6)],
                          metrics={"accuracy": acc, "latency_ms@cpu": lat, "peak_mem_mb@cpu": mem},
                          budgets=["peak_mem_mb@cpu<=3.0"])
    budgets = auto_latency_budgets(f, "latency_ms@cpu")
    assert budgets == [2.2494, 4.1027]
    assert [f.pick(f"latency_ms@cpu<={b}").arch for b in budgets] == ["a2", "a3"]

    n = 11  # a clean front: latency 1..11 ms, accuracy rising with it
    g = ParetoFront.build(objectives=["accuracy", "latency_ms@cpu"], archs=[f"b{i}" for i in range(n)],
                          metrics={"accuracy": np.linspace(0.8, 0.9, n), "latency_ms@cpu": np.arange(1.0, n + 1)})
    budgets = auto_latency_budgets(g, "latency_ms@cpu")
    assert budgets == [3.0, 6.0, 10.0]
    assert len({g.pick(f"latency_ms@cpu<={b}").arch for b in budgets}) == 3


def test_run_restores_torch_threads_when_a_stage_fails(tmp_path):
    """`pipeline.run` pins torch's thread count for the job and gives the caller's back afterwards,
    on the error path too: here the first stage (train) fails on a data folder with no dataset in it,
    after the job has started."""
    import torch
    from hwnas.errors import HwnasError
    from hwnas.pipeline import run
    from hwnas.pipeline.config import load_run_config

    empty = tmp_path / "no-data"
    empty.mkdir()
    cfg = load_run_config(REPO / "configs/tiny-cpu.yaml", out_root=str(tmp_path / "runs"), data_dir=str(empty))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(HwnasError):
            run(cfg, progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
