"""Estimators: devices, real timings, resumable profiles, predictors, memory model (tiny spaces, real kernels)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hwnas.errors import ProfileError, StaleProfileError
from hwnas.estimators import (
    AccuracyPredictor,
    Device,
    EnergyPredictor,
    FewShotLatencyPredictor,
    LatencyPredictor,
    MeasureSettings,
    MemoryModel,
    Profile,
    arch_macs,
    build_predictors,
    count_fvcore,
    fit_fewshot,
    measure,
    measure_peak_memory,
    profile,
    time_callable,
)
from hwnas.estimators.latency import spearman
from hwnas.search_space import Space
from hwnas.supernet import build_static

from tests._helpers import tiny_space as shared_tiny_space

REPO = Path(__file__).resolve().parents[1]
FAST = MeasureSettings(warmup=1, repeats=3, net_repeats=3, min_sample_ms=0.2)


def tiny_space(**over) -> Space:
    """The shared tiny space at one resolution, its second stage one kernel and expand: 6 block configs to profile."""
    return shared_tiny_space(resolutions=[16], stage2={"kernels": [3], "expands": [3]}, **over)


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    out = tmp_path_factory.mktemp("prof") / "tiny-cpu"
    return profile(tiny_space(), "cpu", out, n_networks=8, progress=False, settings=FAST)


# ---- devices ---------------------------------------------------------------------------------------
def test_device_names_and_validation():
    d = Device.from_name("cpu")
    assert (d.name, d.backend, d.threads, d.batch_size, d.dtype) == ("cpu", "torch", 1, 1, "float32")
    assert Device.from_name("ort-cpu").backend == "onnxruntime"
    d = Device.from_name("cpu-t2-b8")
    assert (d.threads, d.batch_size, d.name) == (2, 8, "cpu-t2-b8")
    assert Device.from_name("cpu", threads=2).name == "cpu-t2"
    assert Device.from_name("cuda-b32-fp16").dtype == "float16"
    for bad in ("gpu", "cpu-x3", "cpu@1", ""):
        with pytest.raises(ValueError):
            Device.from_name(bad)
    with pytest.raises(ValueError, match="threads"):
        Device(name="cpu", threads=0)
    with pytest.raises(ValueError, match="GPU"):
        Device(name="cpu", dtype="float16")


def test_fingerprint_is_stable_and_distinguishes_backends():
    a, b = Device.from_name("cpu"), Device.from_name("ort-cpu")
    fa = a.fingerprint()
    assert fa == a.fingerprint() and a.fingerprint_hash() == Device.from_name("cpu").fingerprint_hash()
    assert {"cpu", "torch", "threads", "backend"} <= set(fa)
    assert "onnxruntime" in b.fingerprint()
    assert len(a.fingerprint_hash()) == 12 and a.fingerprint_hash() != b.fingerprint_hash()


def test_cli_devices_lists_cpu(capsys):
    from hwnas.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cpu" in out and "ort-cpu" in out


# ---- measurement ------------------------------------------------------------------------------------
def test_time_callable_statistics():
    t = time_callable(lambda: sum(range(2000)), warmup=1, repeats=7, min_sample_ms=0.2)
    assert t.repeats == 7 and len(t.samples_ms) == 7 and t.number >= 1
    assert 0 < t.min_ms <= t.median_ms and t.iqr_ms >= 0
    with pytest.raises(ValueError):
        time_callable(lambda: None, repeats=0)


def test_measure_module_arch_and_checkpoint_on_torch_and_onnxruntime(tmp_path):
    from hwnas.supernet import export

    space = tiny_space()
    arch = space.sample(1)
    net = build_static(space, arch)
    ck = export(net, arch, tmp_path / "ck", formats="safetensors,onnx", space=space)
    for dev in ("cpu", "ort-cpu"):
        for target in (net, str(arch), ck):
            t = measure(target, dev, space=space, warmup=1, repeats=3, min_sample_ms=0.2)
            assert t.median_ms > 0 and len(t.samples_ms) == 3


# ---- profiles --------------------------------------------------------------------------------------
def test_profile_has_one_row_per_distinct_config_and_fingerprint(tiny_profile):
    space = tiny_space()
    want = sorted(c.key for c in space.distinct_block_configs())
    assert sorted(tiny_profile.table["key"]) == want
    assert len(tiny_profile.networks) == 8 and tiny_profile.complete
    meta = json.loads((tiny_profile.dir / "profile.json").read_text())
    assert meta["fingerprint"] == Device.from_name("cpu").fingerprint()
    assert meta["fingerprint_hash"] == Device.from_name("cpu").fingerprint_hash()
    assert (tiny_profile.table["median_ms"] > 0).all()
    import pyarrow.parquet as pq

    pt = pq.read_table(tiny_profile.dir / "lut.parquet")
    assert pt.num_rows == len(want) and pt.schema.metadata[b"hwnas.fingerprint_hash"].decode() == meta["fingerprint_hash"]
    # every arch's blocks are in the table (the first block of a stage takes the previous stage's width)
    lut = tiny_profile.lut()
    for a in space.enumerate():
        assert all(c.key in lut for c in space.block_configs(a))
    # a second run measures nothing
    again = profile(space, "cpu", tiny_profile.dir, n_networks=8, progress=False)
    assert again.measured_now == 0 and again.table.equals(tiny_profile.table)


@pytest.mark.slow
def test_profile_resumes_after_kill(tmp_path):
    """A `hwnas profile` process killed mid-way continues without re-measuring its rows."""
    space_yaml = tmp_path / "tiny.yaml"
    import yaml

    space = tiny_space()
    space_yaml.write_text(yaml.safe_dump(space.to_dict()))
    out = tmp_path / "prof"
    # slow timings (many repeats) so the kill lands mid-way
    cmd = [sys.executable, "-m", "hwnas", "profile", "--space", str(space_yaml), "--device", "cpu", "--out", str(out),
           "--networks", "4", "--repeats", "100", "--no-progress", "--no-predictor"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lut = out / "lut.csv"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if lut.exists() and lut.read_text().count("\n") >= 4:  # header + 3 rows
                break
            assert proc.poll() is None, "profiling process ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = Profile.load(out)  # readable although killed
    n_done = len(done_before.table)
    total = len(space.distinct_block_configs())
    assert 3 <= n_done < total
    seen = []
    resumed = profile(space, "cpu", out, n_networks=4, progress=False, on_row=lambda kind, row: seen.append(row))
    keys_now = {r["key"] for r in seen if "key" in r}
    assert not keys_now & set(done_before.table["key"]), "re-measured rows that were done"
    assert len(keys_now) == total - n_done
    assert resumed.settings.repeats == 100  # the resumed run keeps the timing protocol
    merged = resumed.table.set_index("key").loc[done_before.table["key"]]
    assert np.allclose(merged["median_ms"].to_numpy(float), done_before.table["median_ms"].to_numpy(float))
    assert sorted(resumed.table["key"]) == sorted(c.key for c in space.distinct_block_configs())


def test_half_written_row_is_repaired_on_resume_and_refused_on_load(tmp_path, tiny_profile):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(tiny_profile.dir, d)
    text = (d / "lut.csv").read_text()
    lines = text.splitlines(keepends=True)
    (d / "lut.csv").write_text("".join(lines[:-1]) + lines[-1][:25])  # killed in the middle of a write
    with pytest.raises(ProfileError, match="row|parsed|missing"):
        Profile.load(d)
    p = profile(tiny_space(), "cpu", d, n_networks=8, progress=False)
    assert p.measured_now == 1 and len(p.table) == len(tiny_profile.table)


def test_stale_fingerprint_is_refused_with_override(tmp_path, tiny_profile):
    import shutil

    with pytest.raises(StaleProfileError, match="different device fingerprint"):
        Profile.load(tiny_profile.dir, device="ort-cpu")
    assert len(Profile.load(tiny_profile.dir, device="ort-cpu", allow_stale=True).table) == len(tiny_profile.table)
    d = tmp_path / "p"
    shutil.copytree(tiny_profile.dir, d)
    meta = json.loads((d / "profile.json").read_text())
    meta["fingerprint"]["torch"] = "1.0.0"
    (d / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(StaleProfileError, match="torch"):
        profile(tiny_space(), "cpu", d, n_networks=8, progress=False)
    with pytest.raises(StaleProfileError):
        build_predictors(tiny_space(), "cpu", d, n_networks=8, progress=False)
    p = profile(tiny_space(), "cpu", d, n_networks=8, progress=False, allow_stale=True)
    assert p.measured_now == 0 and p.fingerprint["torch"] == "1.0.0"


def test_another_cpu_of_the_same_name_warns_on_load_and_resume(tmp_path, tiny_profile):
    """Two hosts that both call themselves "AMD EPYC" share a fingerprint; the CPU family / model /
    stepping recorded beside it tell them apart, and using the profile on the other one warns."""
    import shutil
    import warnings

    from hwnas.errors import HostChangedWarning
    from hwnas.estimators.devices import host_change, host_details

    here = host_details()
    if not here:
        pytest.skip("no /proc/cpuinfo on this machine: nothing is recorded, nothing to compare")
    meta = json.loads((tiny_profile.dir / "profile.json").read_text())
    assert meta["host"] == here  # a new profile records the CPU it was measured on
    other = {**here, "cpu_family": str(int(here.get("cpu_family", "0")) + 1)}
    assert "cpu_family" in host_change(other, here)
    assert host_change(here, here) is None and host_change({}, here) is None and host_change(None, here) is None
    assert host_change({"cpu_family": "25", "cpu_microcode": "x"}, {"cpu_family": "25"}) is None  # unknown keys
    with warnings.catch_warnings():
        warnings.simplefilter("error", HostChangedWarning)
        Profile.load(tiny_profile.dir, device="cpu")  # the same CPU: no warning
        pred_path = LatencyPredictor.from_profile(tiny_profile).save(tmp_path / "same.json")
        LatencyPredictor.load(pred_path, device="cpu")
    assert json.loads(pred_path.read_text())["host"] == here

    d = tmp_path / "p"
    shutil.copytree(tiny_profile.dir, d)
    meta["host"] = other
    (d / "profile.json").write_text(json.dumps(meta))
    with pytest.warns(HostChangedWarning, match="cpu_family"):
        p = Profile.load(d, device="cpu")
    assert len(p.table) == len(tiny_profile.table)  # a warning, not a refusal
    with pytest.warns(HostChangedWarning, match="resumed"):
        resumed = profile(tiny_space(), "cpu", d, n_networks=8, progress=False)
    assert resumed.meta["host"] == other  # it keeps the CPU its rows were measured on
    with pytest.warns(HostChangedWarning, match="latency predictor"):
        LatencyPredictor.load(LatencyPredictor.from_profile(resumed).save(tmp_path / "other.json"), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HostChangedWarning)
        Profile.load(d)  # no device asked for: nothing to compare with
        Profile.load(d, device="cpu", allow_stale=True)  # the caller said it knows


def test_corrupted_tables_give_clear_errors(tmp_path, tiny_profile):
    import shutil

    for name, content, pattern in (
        ("lut.csv", "garbage\x00,\n\"unclosed\n1,2,3\n", "corrupted|parsed|missing"),
        ("lut.csv", "key,median_ms\nx,1\n", "columns"),
        ("profile.json", "{not json", "corrupted"),
        ("networks.csv", None, None),
    ):
        d = tmp_path / name.replace(".", "_")
        shutil.copytree(tiny_profile.dir, d, dirs_exist_ok=True)
        if content is None:
            lines = (d / name).read_text().splitlines()
            lines[2] = lines[2].replace(lines[2].split(",")[3], "-1")  # negative latency
            (d / name).write_text("\n".join(lines) + "\n")
            pattern = "corrupted"
        else:
            (d / name).write_text(content)
        with pytest.raises(ProfileError, match=pattern):
            Profile.load(d)
    with pytest.raises(ProfileError, match="does not exist"):
        Profile.load(tmp_path / "nope")


# ---- latency predictor ---------------------------------------------------------------------------------
def test_latency_predictor_fit_save_load_and_speed(tmp_path, tiny_profile):
    pred = LatencyPredictor.from_profile(tiny_profile)
    archs = tiny_profile.network_archs()
    p = pred.predict_many(archs)
    assert p.shape == (len(archs),) and (p > 0).all()
    assert pred.fit_report["n"] == 8
    # predictions are the table sum through the fitted correction (accuracy itself is benchmarked, not
    # asserted: timings on a shared CPU are too noisy for a test)
    lut = np.array([pred.lut_sum(a) for a in archs])
    nb = np.array([a.num_blocks + 2 for a in archs])
    w, b, c = pred.affine
    base = w * lut + b * nb + c
    if pred.ridge is None:
        assert np.allclose(p, np.maximum(base, 1e-6))
    # the report's share is the share of these measured networks the fitted model predicts within 10%
    y = tiny_profile.network_latency_ms()
    assert pred.fit_report["train_within_10pct"] == pytest.approx(float(np.mean(np.abs(p - y) <= 0.1 * y)))
    assert w > 0
    path = pred.save(tmp_path / "lat.json")
    assert path.with_suffix(".npz").is_file() and "lut" in json.loads(path.read_text())
    back = LatencyPredictor.load(path, device="cpu")
    assert np.allclose(back.predict_many(archs), p)
    with pytest.raises(StaleProfileError):
        LatencyPredictor.load(path, device="ort-cpu")
    assert back.predict(str(archs[0])) == pytest.approx(p[0])
    assert pred.name == "latency_ms@cpu"


def test_build_predictors_reuses_a_matching_profile(tmp_path, tiny_profile):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(tiny_profile.dir, d)
    prof, pred = build_predictors(tiny_space(), "cpu", d, n_networks=8, progress=False)
    assert prof.measured_now == 0 and (d / "latency_predictor.json").is_file()
    prof2, pred2 = build_predictors(tiny_space(), "cpu", d, n_networks=8, progress=False)
    assert prof2.measured_now == 0 and pred2.affine == pred.affine


def test_onnxruntime_profile_of_a_few_blocks(tmp_path):
    space = tiny_space()
    cfgs = space.distinct_block_configs()[:2]
    p = profile(space, "ort-cpu", tmp_path / "ort", n_networks=2, progress=False, settings=FAST, configs=cfgs)
    assert len(p.table) == 2 and p.fingerprint["backend"] == "onnxruntime" and "onnxruntime" in p.fingerprint


# ---- FLOPs / params ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["fmnist-mbv3", "fmnist-mixed"])
def test_closed_form_macs_match_fvcore(preset):
    space = Space.preset(preset)
    for seed in range(2):
        a = space.sample(seed)
        r = count_fvcore(build_static(space, a), (1, space.in_channels, a.resolution, a.resolution))
        assert arch_macs(space, a) == r["conv_linear_macs"]


# ---- memory ----------------------------------------------------------------------------------------------
def toy3() -> tuple[Space, object]:
    """Stem 1->4 (k3, s1), three MBConv blocks 4->4 (expand 2 -> mid 8, k3), head without expand, 8x8 input."""
    sp = Space.from_dict({
        "name": "toy3", "in_channels": 1, "num_classes": 10, "resolutions": [8],
        "stem": {"channels": 4, "kernel": 3, "stride": 1, "act": "relu"},
        "stages": [{"kinds": ["mb"], "depths": [3], "kernels": [3], "expands": [2], "widths": [4], "stride": 1,
                    "se": False, "act": "relu"}],
        "head": {"expand_channels": None, "feature_channels": None, "act": "relu", "dropout": 0.0},
    })
    return sp, sp.max_arch()


def test_memory_model_matches_hand_computed_toy_net():
    sp, arch = toy3()
    # bytes (fp32, batch 1): input 1x8x8 = 256; 4ch map = 1024; 8ch map = 2048; im2col of the stem = 9*64*4 = 2304
    # ideal (fused conv+BN+act, freed after last use): peak inside a block = x (kept for the residual)
    #   + expand output + depthwise output = 1024 + 2048 + 2048
    assert MemoryModel(sp, policy="ideal").activation_peak(arch) == 1024 + 2048 + 2048
    # eager PyTorch: input (256) and stem output (1024) stay alive through all blocks; the previous
    # block's output (1024) is the block input; inside the depthwise ConvBNAct: expand output (2048),
    # conv output (2048) and BN output (2048) coexist -> 256 + 1024 + 1024 + 3 * 2048
    assert MemoryModel(sp, policy="eager").activation_peak(arch) == 256 + 1024 + 1024 + 3 * 2048
    est = MemoryModel(sp).estimate(arch)
    net = build_static(sp, arch)
    assert est.params_bytes == sum(p.numel() * 4 for p in net.parameters())
    assert est.buffers_bytes == sum(b.numel() * b.element_size() for b in net.buffers())
    assert est.training_bytes > est.inference_bytes


@pytest.mark.slow
def test_memory_model_against_real_cpu_measurement():
    sp, arch = toy3()
    meas = measure_peak_memory(build_static(sp, arch), (1, 1, 8, 8))
    assert abs(MemoryModel(sp).activation_peak(arch) - meas) / meas < 0.05
    space = Space.preset("fmnist-mbv3")
    mm = MemoryModel(space)
    for seed in range(3):
        a = space.sample(seed)
        meas = measure_peak_memory(build_static(space, a), (1, 1, a.resolution, a.resolution))
        assert abs(mm.activation_peak(a) - meas) / meas < 0.10


# ---- energy ---------------------------------------------------------------------------------------------
def test_energy_is_labelled_estimate_without_counters(tiny_profile):
    from hwnas.estimators.energy import energy_counter

    pred = LatencyPredictor.from_profile(tiny_profile)
    e = EnergyPredictor(pred)
    archs = tiny_profile.network_archs()
    if energy_counter(pred.device) is None:
        e = e.calibrate(tiny_profile.space, archs[:1])
        assert e.method == "estimated" and "estimated" in e.label
    v = e.predict_many(archs)
    assert (v > 0).all() and np.allclose(v, pred.predict_many(archs) * e.power.watts)
    rec = e.record(archs[0])
    assert rec["energy_mj"] > 0 and rec["method"] and rec["power_source"]


# ---- accuracy ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_accuracy_predictor_ranks_held_out_archs(tmp_path):
    space = Space.preset("fmnist-mbv3")
    archs = space.sample_many(120, rng=0, unique=True)
    rng = np.random.default_rng(0)
    w = rng.normal(size=len(space.encoding_names()))
    # a synthetic accuracy: smooth in the encoding plus an interaction, with noise
    X = space.encode_many(archs)
    acc = 0.85 + 0.02 * np.tanh(X @ w / 3) + 0.005 * X[:, 0] * X[:, 1] + rng.normal(0, 0.001, len(archs))
    pred = AccuracyPredictor.fit(space, archs, acc, holdout=0.25, epochs=40, hidden=32, lr=3e-3)
    assert pred.report["holdout_spearman"] > 0.8
    path = pred.save(tmp_path / "acc.json")
    back = AccuracyPredictor.load(path)
    assert np.allclose(back.predict_many(archs[:5]), pred.predict_many(archs[:5]))


# ---- few-shot -------------------------------------------------------------------------------------------
def test_fit_fewshot_uses_priors():
    rng = np.random.default_rng(0)
    n, F = 400, 30
    X = rng.integers(0, 2, size=(n, F)).astype(float)
    prior = np.exp(X @ rng.uniform(0.05, 0.3, F))  # a device with many measurements
    target = 0.3 * prior**1.1 * np.exp(rng.normal(0, 0.02, n))  # the new device: related, not equal
    pick = rng.choice(n, 10, replace=False)
    rest = np.setdiff1d(np.arange(n), pick)
    m = fit_fewshot(X[pick], target[pick], prior[pick, None])
    with_prior = spearman(m.predict(X[rest], prior[rest, None]), target[rest])
    m0 = fit_fewshot(X[pick], target[pick])
    without = spearman(m0.predict(X[rest], None), target[rest])
    assert with_prior > 0.95 and with_prior > without


def test_fewshot_predictor_with_a_lut_prior(tmp_path, tiny_profile):
    space = tiny_profile.space
    prior = LatencyPredictor.from_profile(tiny_profile)
    archs = list(space.enumerate())
    truth = 2.0 * prior.predict_many(archs) + 0.1  # a "phone" twice as slow with a fixed overhead
    fs = FewShotLatencyPredictor(space, device_name="phone", priors=[prior]).fit(archs[:10], truth[:10])
    pred, true = fs.predict_many(archs[10:]), truth[10:]
    # Close in value, and in order wherever the order means something: a Spearman over all 30 once read
    # 0.8998 in CI, where a loaded machine's profile gave many near-equal latencies that any
    # sub-percent error reorders.
    rel = np.abs(pred / true - 1)
    assert np.median(rel) < 0.03 and rel.max() < 0.10, rel
    i, j = np.triu_indices(len(true), 1)
    apart = np.abs(true[i] / true[j] - 1) >= 0.05  # pairs whose latencies differ by 5% or more
    assert apart.sum() >= 10 and np.all(np.sign(pred[i] - pred[j])[apart] == np.sign(true[i] - true[j])[apart])
    path = fs.save(tmp_path / "fs.json")
    back = FewShotLatencyPredictor.load(path, priors=[prior])
    assert np.allclose(back.predict_many(archs[:3]), fs.predict_many(archs[:3]))
    assert fs.name == "latency_ms@phone"


# ---- GPU --------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_timing_and_memory():
    space = Space.preset("fmnist-mbv3")
    a = space.sample(0)
    t = measure(str(a), "cuda", space=space, warmup=2, repeats=5)
    assert t.median_ms > 0
    meas = measure_peak_memory(build_static(space, a), (1, 1, a.resolution, a.resolution), device="cuda")
    assert meas > 0


@pytest.mark.gpu
def test_nvml_energy_counter_measures_gpu_inference():
    import torch
    from hwnas.estimators import Device, measure_energy

    dev = Device.from_name("cuda")
    x = torch.randn(4096, 4096, device="cuda")
    m = measure_energy(lambda: x @ x, dev, min_seconds=1.0, sync=torch.cuda.synchronize)
    if m is None:
        pytest.skip("NVML energy counter not readable on this GPU machine")
    assert m.method == "nvml" and m.inferences >= 8
    # a busy GPU draws tens to hundreds of watts: the counter moved by a plausible amount
    assert 10.0 < m.avg_watts < 2000.0, m
    assert m.mj_per_inference > 0


def test_gpu_device_without_cuda_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for name in ("cuda", "triton"):
        with pytest.raises(ProfileError, match="needs CUDA"):
            profile(tiny_space(), name, tmp_path / name, n_networks=1, progress=False)
