"""kill -9 in the middle of training, profiling, searching and exporting; then re-run.

Each test waits for real progress (a file appearing or growing), kills the process group with
SIGKILL, re-runs the same command, and checks that the run resumes or restarts cleanly: nothing
completed is lost, nothing is done twice, and no half-written file is trusted later.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests._helpers import tiny_space_dict

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# the shared tiny space at one resolution
TINY_SPACE = tiny_space_dict(resolutions=[16])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _kill9_when(proc: subprocess.Popen, ready, timeout: float = 300.0) -> None:
    """SIGKILL the process group once `ready()` is true (polling); fail if it exits first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before the kill point: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no progress before the timeout")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return r


def _lines(p: Path) -> int:
    try:
        return p.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# ---- (a) training mid-epoch ------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_training_mid_epoch_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    cfg = tmp_path / "train.yaml"
    base = yaml.safe_load((REPO / "configs" / "fmnist.yaml").read_text())
    base.pop("schedules", None)
    base.update(space=str(space), epochs=2, subset=512, batch_size=64, num_random=1, val_images=100,
                calib_images=100, report_random=1, log_every=1, val_every=0)
    cfg.write_text(yaml.safe_dump(base))
    cmd = [PY, "-m", "hwnas", "train", "--config", str(cfg), "--out", str(out), "--no-progress"]
    p = _start(cmd, tmp_path)
    ck = out / "checkpoint.pt"
    metrics = out / "metrics.jsonl"
    spe = 512 // 64
    # kill in the middle of epoch 2: after the epoch-1 checkpoint, with some epoch-2 steps logged
    _kill9_when(p, lambda: ck.is_file() and _lines(metrics) >= spe + 1 + 2)
    assert not (out / "report.json").exists() and not (out / "supernet.safetensors").exists()
    logged_before = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip().endswith("}")]
    assert any(r["kind"] == "step" and r["step"] > spe for r in logged_before), "the kill was not mid-epoch-2"

    r = _run(cmd + ["--resume"], tmp_path)
    assert "Traceback" not in r.stderr
    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    steps = [r["step"] for r in recs if r["kind"] == "step"]
    assert steps == list(range(1, 2 * spe + 1)), "steps lost or logged twice across the kill"
    epochs = [r["epoch"] for r in recs if r["kind"] == "epoch"]
    assert epochs == [1, 2]
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 * spe and report["epochs"] == 2
    assert not [q for q in out.iterdir() if q.name.startswith(".") and q.name.endswith(".tmp")]
    from hwnas.supernet import load_supernet

    load_supernet(out)  # the final supernet is whole


# ---- (b) profiling mid-table -----------------------------------------------------------------------
@pytest.mark.slow
def test_kill_profile_mid_table_then_resume(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path / "prof"
    cmd = [PY, "-m", "hwnas", "profile", "--space", str(space), "--device", "cpu", "--out", str(out),
           "--networks", "4", "--repeats", "3", "--no-progress", "--no-predictor"]
    lut = out / "lut.csv"
    p = _start(cmd, tmp_path)
    _kill9_when(p, lambda: _lines(lut) >= 1 + 4)  # header + 4 measured rows
    before = lut.read_bytes()
    complete_before = before[: before.rfind(b"\n") + 1].decode().splitlines()[1:]
    _run(cmd, tmp_path)

    from hwnas.estimators import Profile
    from hwnas.search_space import Space

    rows = list(csv.DictReader(lut.open()))
    keys = [r["key"] for r in rows]
    want = {c.key for c in Space.from_yaml(space).distinct_block_configs()}
    assert len(keys) == len(set(keys)), "a block was measured twice"
    assert set(keys) == want, "blocks missing from the table"
    after = lut.read_text().splitlines()[1:]
    assert after[: len(complete_before)] == complete_before, "rows measured before the kill were lost or changed"
    prof = Profile.load(out, device="cpu")
    assert prof.complete
    nets = [r["arch"] for r in csv.DictReader((out / "networks.csv").open())]
    assert len(nets) == len(set(nets)) == 4


# ---- (c) a search on persistent storage ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.cluster)])
def test_kill_search_then_resume(tmp_path: Path, kind: str, request) -> None:
    import optuna
    from hwnas.searchers import load_study

    storage = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.log") if kind == "journal" \
        else request.getfixturevalue("postgres").new_database()  # a real server (tests/_cluster.py)
    n = 80
    # --trial-by-trial: each trial is stored as it ends, so the kill lands between trials (the generation
    # path's bulk checkpoints have their own kill test in tests/test_search_generation.py)
    cmd = [PY, "-m", "hwnas", "search", "--space", "fmnist-mbv3", "--provider", "flops", "--sampler", "random",
           "--trials", str(n), "--storage", storage, "--study", "crash", "--no-progress", "--trial-by-trial"]

    def count() -> int:
        try:
            st = load_study("crash", storage)
            return len(st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        except Exception:  # noqa: BLE001 - the storage may not exist yet / be mid-creation
            return 0

    p = _start(cmd, tmp_path)
    _kill9_when(p, lambda: count() >= 15)
    done_before = {t.number: t.params for t in load_study("crash", storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))}
    assert 15 <= len(done_before) < n, "the kill did not land mid-search"
    _run(cmd + ["--resume"], tmp_path)
    study = load_study("crash", storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n, "the resumed search did not reach the asked number of complete trials"
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], "a killed trial stayed RUNNING"
    for num, params in done_before.items():
        t = trials[num]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.params == params, "a completed trial was lost/changed"


# ---- (d) an export --------------------------------------------------------------------------------
_EXPORT = """
import sys, time
from hwnas.search_space import Space
from hwnas.supernet import Supernet, export
space = Space.preset("ofa-mbv3")
net = Supernet(space)
arch = space.max_arch()
export(net, arch, sys.argv[1], formats="safetensors,onnx,torchscript", metrics={"note": "crash test"})
"""


@pytest.mark.slow
def test_kill_export_leaves_no_checkpoint_then_reexport(tmp_path: Path) -> None:
    from hwnas.errors import CheckpointError
    from hwnas.supernet import load_subnet

    script = tmp_path / "export.py"
    script.write_text(_EXPORT)
    out = tmp_path / "ckpt"
    p = _start([PY, str(script), str(out)], tmp_path)
    # kill once the temporary directory holds its first file (weights written, ONNX/TorchScript pending)
    _kill9_when(p, lambda: any(any(d.iterdir()) for d in tmp_path.glob(".tmp-ckpt-*") if d.is_dir()))
    assert not out.exists(), "a killed export left a checkpoint directory behind"
    with pytest.raises(CheckpointError):
        load_subnet(out)
    leftovers = list(tmp_path.glob(".tmp-ckpt-*"))
    assert leftovers, "expected the killed export's temporary directory (named so it is never loaded)"
    with pytest.raises(CheckpointError):
        load_subnet(leftovers[0])  # the half-written temporary directory is not a loadable checkpoint

    _run([PY, str(script), str(out)], tmp_path)
    net = load_subnet(out)
    info = json.loads((out / "arch.json").read_text())
    assert info["metrics"]["note"] == "crash test"
    assert net is not None
