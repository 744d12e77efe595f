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
    for needle in ("Supernet training", "Exported subnets", "pareto.png", "estimated"):
        assert needle in report


@pytest.mark.slow
def test_front_members_are_non_dominated_and_feasible(run_dir):
    front = pd.read_csv(run_dir / "pareto.csv")
    trials = pd.read_csv(run_dir / "trials.csv")
    objs = [("accuracy", -1), ("latency_ms@cpu", 1), ("latency_ms@ort-cpu", 1)]
    F = np.stack([front[k].to_numpy() * s for k, s in objs], axis=1)
    A = np.stack([trials[trials["feasible"]][k].to_numpy() * s for k, s in objs], axis=1)
    for f in F:  # no feasible trial dominates a front member
        dominated = np.all(A <= f, axis=1) & np.any(A < f, axis=1)
        assert not dominated.any()
    assert (front["peak_mem_mb@cpu"] <= 3.0).all()  # the budget holds on the front
    assert len(front) >= 1


@pytest.mark.slow
def test_exported_checkpoints_reload_and_reproduce_their_accuracy(run_dir):
    from hwnas.data import make_loaders
    from hwnas.supernet import load
    from hwnas.supernet.bn import evaluate

    for ck in sorted((run_dir / "exported").iterdir()):
        info = json.loads((ck / "arch.json").read_text())
        m = info["metrics"]
        assert set(m["predicted"]) >= {"accuracy", "latency_ms@cpu"} and "accuracy" in m["measured"]
        assert m["measured"]["latency_ms@cpu"] > 0
        model = load(ck)
        loaders = make_loaders("fashion-mnist", space=model.space)
        acc = evaluate(model, None, loaders.test, recalibrate=False)
        assert acc == pytest.approx(m["measured"]["accuracy"], abs=1e-9)
        assert (ck / "model.onnx").is_file()


@pytest.mark.slow
def test_rerun_skips_finished_stages(run_dir):
    cmd = [sys.executable, "-m", "hwnas", "run", "--config", str(REPO / "configs/tiny-cpu.yaml"),
           "--out-root", str(run_dir.parent), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("up to date, skipped") == 7
