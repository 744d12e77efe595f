"""`hwnas finetune` / `hwnas.supernet.finetune` on a tiny export of a briefly trained tiny supernet
(real Fashion-MNIST): the weights change, the arch stays, the train-split loss does not rise, the
accuracy before and after is recorded, every format is re-made in agreement with the weights; a
kill -9 mid-way leaves the original folder byte-identical with nothing beside it; bad inputs are
one-line errors with exit code 2."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests._train_helpers import HAVE_FMNIST, tiny_config

pytestmark = pytest.mark.skipif(not HAVE_FMNIST, reason="needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")

SUBSET, CALIB = 1024, 256


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny supernet trained one short epoch (sandwich), and its min subnet exported with ONNX + TorchScript."""
    from hwnas.supernet import export, load_supernet, train

    root = tmp_path_factory.mktemp("ft")
    train(tiny_config(root, epochs=1, policy="sandwich", subset=SUBSET), root / "supernet", progress=False)
    net = load_supernet(root / "supernet").eval()
    ck = export(net, net.space.min_arch(), root / "export", formats="safetensors,onnx,torchscript",
                metrics={"measured": {"accuracy": 0.0}}, extra={"trial": 7})
    return {"supernet": root / "supernet", "export": ck}


@pytest.fixture(scope="module")
def loaders(trained):
    """The training split the supernet saw, and the first 2,000 test images (evaluation is the slow part here)."""
    from dataclasses import replace

    from hwnas.data import TensorLoader, make_loaders
    from hwnas.supernet import load_subnet

    full = make_loaders("fashion-mnist", space=load_subnet(trained["export"]).space, subset=SUBSET)
    return replace(full, test=TensorLoader(full.test.x[:2000], full.test.y[:2000], batch_size=500))


def _copy_export(trained: dict[str, Path], tmp_path: Path) -> Path:
    d = tmp_path / "exports" / "ck"
    shutil.copytree(trained["export"], d)
    return d


def _hashes(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def _train_loss(model: torch.nn.Module, loaders) -> float:
    """Cross-entropy (no smoothing, eval mode) on a fixed set of 512 images of the training split."""
    from hwnas.supernet import resize_input

    x, y = loaders.train.x[:512], loaders.train.y[:512]
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(resize_input(x, model.resolution)), y))


def test_finetune_changes_weights_keeps_arch_lowers_train_loss_and_records_accuracy(trained, loaders, tmp_path):
    import onnxruntime as ort
    from hwnas.supernet import finetune, load_subnet
    from hwnas.supernet.checkpoint import read_info

    d = _copy_export(trained, tmp_path)
    before_info = read_info(d)
    before = load_subnet(d)
    loss_before = _train_loss(before, loaders)
    lines: list[str] = []
    res = finetune(d, steps=40, supernet=trained["supernet"], loaders=loaders, calib_images=CALIB, progress=False,
                   say=lines.append)

    after = load_subnet(d)  # verifies every file against the hashes in the new arch.json
    info = read_info(d)
    assert info["arch"] == before_info["arch"] == res.arch
    assert after.arch_string == before.arch_string
    sd0, sd1 = before.state_dict(), after.state_dict()
    assert sd0.keys() == sd1.keys() and all(sd0[k].shape == sd1[k].shape for k in sd0)
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0 if sd0[k].is_floating_point()), "weights unchanged"
    loss_after = _train_loss(after, loaders)
    assert loss_after <= loss_before, f"train-split loss rose: {loss_before:.4f} -> {loss_after:.4f}"

    rec = info["metrics"]["finetune"]
    assert rec["steps"] == 40 and rec["teacher"] == str(trained["supernet"])
    assert rec["accuracy_before"] == res.accuracy_before and rec["accuracy_after"] == res.accuracy_after
    assert rec["test_images"] == 2000
    from hwnas.supernet import evaluate

    assert res.accuracy_before == evaluate(before, None, loaders.test, recalibrate=False)  # the folder as it was
    assert info["metrics"]["measured"]["accuracy"] == res.accuracy_after
    assert info["metrics"]["measured"]["accuracy_before_finetune"] == 0.0  # the export's own value, kept
    assert info["extra"] == {"trial": 7}
    assert any("->" in s and f"{100 * res.accuracy_after:.2f}%" in s for s in lines)
    assert sum(s.startswith("step ") for s in lines) >= 2

    # every format the folder had is re-made from the new weights
    assert set(info["files"]) == set(before_info["files"]) == {"weights.safetensors", "model.onnx", "model.pt"}
    assert all(info["files"][k] != before_info["files"][k] for k in info["files"])
    x = torch.randn(3, 1, after.resolution, after.resolution)
    with torch.no_grad():
        ref = after(x).numpy()
        ts = torch.jit.load(str(d / "model.pt"))(x).numpy()
    onnx = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert np.abs(onnx - ref).max() <= 1e-4 and np.abs(ts - ref).max() <= 1e-4
    assert sorted(p.name for p in d.parent.iterdir()) == ["ck"], "debris beside the checkpoint"


def test_finetune_puts_back_a_checkpoint_a_killed_run_left_between_its_two_renames(trained, loaders, tmp_path):
    """The swap's fallback path (two renames) killed between them leaves the original in the work
    folder and no checkpoint folder; the next fine-tuning puts it back first, and its own run works."""
    from hwnas.supernet import finetune, load_subnet

    d = _copy_export(trained, tmp_path)
    want = _hashes(d)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    work = d.parent / f".tmp-ck-finetune-{dead.pid}-abc123"
    work.mkdir()
    os.replace(d, work / "old")
    assert not d.exists()
    res = finetune(d, steps=2, kd=False, loaders=loaders, calib_images=CALIB, progress=False, say=lambda s: None)
    assert sorted(p.name for p in d.parent.iterdir()) == ["ck"]
    rec = json.loads((d / "arch.json").read_text())["metrics"]["finetune"]
    assert rec["teacher"] is None and "KD" not in rec["loss"]
    assert res.accuracy_before == pytest.approx(rec["accuracy_before"])
    load_subnet(d)
    assert _hashes(d)["weights.safetensors"] != want["weights.safetensors"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_kill9_mid_finetune_leaves_the_checkpoint_byte_identical(trained, tmp_path):
    d = _copy_export(trained, tmp_path)
    want, beside = _hashes(d), sorted(p.name for p in d.parent.iterdir())
    p = subprocess.Popen([sys.executable, "-m", "hwnas", "finetune", str(d), "--steps", "100000", "--no-progress",
                          "--log-every", "1", "--supernet", str(trained["supernet"]), "--subset", str(SUBSET),
                          "--calib-images", str(CALIB)],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(s) for s in p.stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 900  # a loaded 2-core machine: data, teacher and BN set-up come first
    try:
        while not any(s.startswith("step 3/100000") for s in seen):
            if time.monotonic() > deadline:
                pytest.fail(f"no training steps reported in time: {seen[-5:]}")
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                if p.poll() is not None:
                    pytest.fail(f"finetune ended (rc {p.returncode}) before the kill point: {seen[-10:]}")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert _hashes(d) == want, "the killed fine-tuning changed the checkpoint"
    assert sorted(p.name for p in d.parent.iterdir()) == beside, "the killed fine-tuning left files beside it"


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from hwnas.cli import main

    rc = main(["finetune", *argv])
    err = capsys.readouterr().err
    return rc, err


def test_bad_inputs_are_one_line_errors_with_exit_2(trained, tmp_path, capsys, monkeypatch):
    from hwnas.search_space import Space
    from hwnas.supernet import Supernet, export
    from hwnas.supernet.checkpoint import read_info

    ok = _copy_export(trained, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = {
        "not an export (no arch.json)": ([str(empty), "--steps", "5"], "arch.json is missing"),
        "no such folder": ([str(tmp_path / "nowhere"), "--steps", "5"], "does not exist"),
        "a file": ([str(a_file), "--steps", "5"], "does not exist"),
        "--steps 0": ([str(ok), "--steps", "0"], "steps=0"),
        "--steps -1": ([str(ok), "--steps", "-1"], "steps=-1"),
        "--steps huge": ([str(ok), "--steps", "10000000000"], "1..1000000"),
        "--lr 0": ([str(ok), "--steps", "5", "--lr", "0"], "lr=0"),
        "--no-kd with --supernet": ([str(ok), "--steps", "5", "--no-kd", "--supernet", "x"], "--no-kd"),
        "--supernet of nothing": ([str(ok), "--steps", "5", "--supernet", str(tmp_path / "nope")], "no supernet"),
    }
    # an export with no supernet anywhere to be found: the error says to pass --supernet or --no-kd
    space = Space.from_dict(read_info(ok)["space"])
    lone = export(Supernet(space).eval(), space.min_arch(), tmp_path / "lone" / "x" / "ck")
    monkeypatch.chdir(tmp_path)  # no folder named after the space in the working directory
    cases["no teacher anywhere"] = ([str(lone), "--steps", "5"], "--no-kd")
    want = _hashes(ok)
    for what, (argv, needle) in cases.items():
        rc, err = _cli(capsys, *argv)
        assert rc == 2, what
        assert len(err.strip().splitlines()) == 1 and err.startswith("hwnas finetune: error:"), (what, err)
        assert needle in err, (what, err)
        assert "Traceback" not in err
    assert _hashes(ok) == want, "a refused fine-tuning touched the checkpoint"


def test_run_config_export_finetune_steps_and_the_export_stamp(tmp_path):
    from hwnas.errors import ConfigError
    from hwnas.pipeline import load_run_config
    from hwnas.pipeline.runner import _steps

    p = tmp_path / "run.yaml"
    p.write_text("export:\n  finetune_steps: 300\n")
    on, off = load_run_config(p), load_run_config(None)
    assert on.finetune_steps == 300 and off.finetune_steps == 0
    # off: the export stamp's key is what it was before the option existed, so old runs stay done
    def deps(cfg):
        return {name: d for name, d, _ in _steps(cfg)}["export"]

    assert deps(off) == {"budgets": off.latency_budgets, "formats": off.export_formats}
    assert deps(on)["finetune_steps"] == 300
    for bad in ("-1", "x", "true", "2000000"):
        p.write_text(f"export:\n  finetune_steps: {bad}\n")
        with pytest.raises(ConfigError, match="finetune_steps"):
            load_run_config(p)


def test_export_stage_hook_finetunes_each_export_from_the_run_supernet(trained, loaders, tmp_path):
    from hwnas.pipeline.config import RunConfig
    from hwnas.pipeline.context import RunContext
    from hwnas.pipeline.finetune import finetune_export
    from hwnas.supernet import load_subnet

    run = tmp_path / "runs" / "t"
    shutil.copytree(trained["supernet"], run / "supernet")
    ck = run / "exported" / "budget1"
    shutil.copytree(trained["export"], ck)
    want = _hashes(ck)
    space = load_subnet(ck).space
    off = RunContext(RunConfig(name="t", out_root=str(tmp_path / "runs"), calib_images=CALIB), space, run, progress=False)
    row = {"dir": str(ck), "measured": {"accuracy": 0.5}}
    assert finetune_export(off, dict(row)) == row and _hashes(ck) == want  # finetune_steps 0: nothing happens

    cfg = RunConfig(name="t", out_root=str(tmp_path / "runs"), calib_images=CALIB, finetune_steps=3)
    ctx = RunContext(cfg, space, run, progress=False)
    ctx._loaders = loaders
    res = finetune_export(ctx, {"dir": str(ck), "measured": {"accuracy": 0.5}})
    rec = json.loads((ck / "arch.json").read_text())["metrics"]["finetune"]
    assert rec["steps"] == 3 and rec["teacher"] == str(run / "supernet") and "KD" in rec["loss"]
    assert res["measured"]["accuracy"] == rec["accuracy_after"]
    assert res["measured"]["accuracy_before_finetune"] == rec["accuracy_before"]
    assert res["finetune"]["steps"] == 3
    assert _hashes(ck)["weights.safetensors"] != want["weights.safetensors"]
