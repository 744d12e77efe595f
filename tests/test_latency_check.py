"""The one latency-checking protocol (hwnas.estimators.latency_check): the main job's held-out check
uses it, its passes really interleave the nets, and exported subnets get predicted vs measured
latency on every device. No wall-clock asserts: the figures depend on the machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hwnas.estimators import LatencyPredictor, MeasureSettings, profile
from hwnas.estimators.latency_check import (
    CheckProtocol,
    heldout_archs,
    measure_exports,
    measure_interleaved,
    network_archs,
)

from tests._helpers import tiny_space

REPO = Path(__file__).resolve().parent.parent
QUICK = CheckProtocol(rounds=3, repeats=9, warmup=0, min_sample_ms=0.05)
FAST = MeasureSettings(warmup=1, repeats=3, net_repeats=3, min_sample_ms=0.2)


def test_default_held_out_count_is_at_least_50():
    from hwnas.pipeline.config import RunConfig, load_run_config

    assert RunConfig().validate_networks >= 50
    assert load_run_config(REPO / "configs/fmnist-cpu.yaml").validate_networks >= 50
    raw = yaml.safe_load((REPO / "configs/fmnist-cpu.yaml").read_text())
    assert raw["profile"]["validate_networks"] >= 50


def test_protocol_rejects_bad_values_and_matches_profile_settings():
    for bad in ({"rounds": 0}, {"repeats": 2}, {"warmup": -1}, {"min_sample_ms": 0.0}, {"statistic": "mean"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CheckProtocol(**bad)
    p = CheckProtocol(rounds=3, repeats=61, min_sample_ms=0.5)
    assert p.per_round == 21  # 3 x 21 >= 61 samples per net
    s = p.settings()
    assert (s.repeats, s.net_repeats, s.min_sample_ms, s.statistic) == (61, 61, 0.5, "min")


@pytest.mark.slow
def test_stage_profile_checks_with_the_shared_protocol(tmp_path):
    """The stage's validation.csv: one row per configured held-out arch (none of them a correction
    network), the protocol's statistic over all interleaved samples; a re-run reuses it."""
    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL
    from hwnas.pipeline.config import RunConfig
    from hwnas.pipeline.context import RunContext
    from hwnas.pipeline.profile import stage_profile

    space = tiny_space()
    cfg = RunConfig(name="t", devices=("cpu",), profile_networks=8, validate_networks=6, out_root=str(tmp_path))
    ctx = RunContext(cfg=cfg, space=space, run_dir=tmp_path / "t", progress=False)
    out = stage_profile(ctx)["devices"]["cpu"]
    d = tmp_path / "t" / "profiles" / "cpu"
    v = pd.read_csv(d / "validation.csv")
    assert len(v) == cfg.validate_networks == out["validation_archs"]
    for col in ("arch", "measured_ms", "measured_min_ms", "measured_median_ms", "iqr_ms", "samples",
                "predicted_ms", "rel_error", "statistic", "rounds"):
        assert col in v.columns, col
    assert set(v["statistic"]) == {"min"} and set(v["rounds"]) == {DEFAULT_PROTOCOL.rounds}
    assert np.allclose(v["measured_ms"], v["measured_min_ms"])  # the statistic the predictor is fitted on
    assert (v["samples"] == DEFAULT_PROTOCOL.rounds * DEFAULT_PROTOCOL.per_round).all()
    assert (v["measured_median_ms"] >= v["measured_min_ms"]).all()
    nets = pd.read_csv(d / "networks.csv")
    assert not set(v["arch"]) & set(nets["arch"])  # held out: never a correction network
    assert (nets["repeats"] == DEFAULT_PROTOCOL.repeats).all()  # correction networks: the protocol's sample count
    assert out["statistic"] == "min" and out["protocol"]["rounds"] == DEFAULT_PROTOCOL.rounds
    assert 0.0 <= out["within_10pct"] <= 1.0 and out["drift"] > 0
    # a resumed stage re-uses the held-out timings it already has
    again = stage_profile(RunContext(cfg=cfg, space=space, run_dir=tmp_path / "t", progress=False))["devices"]["cpu"]
    v2 = pd.read_csv(d / "validation.csv")
    assert v2["measured_ms"].tolist() == v["measured_ms"].tolist() and "drift" not in again
    # ... but not when the configured count changed
    cfg7 = RunConfig(name="t", devices=("cpu",), profile_networks=8, validate_networks=7, out_root=str(tmp_path))
    stage_profile(RunContext(cfg=cfg7, space=space, run_dir=tmp_path / "t", progress=False))
    assert len(pd.read_csv(d / "validation.csv")) == 7


def _tagged_nets(n: int, log: list[int]):
    """Tiny real modules that append their index to `log` on every forward call."""
    import torch
    from torch import nn

    class Tagged(nn.Module):
        def __init__(self, tag: int):
            super().__init__()
            self.tag = tag
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.resolution = 8

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            log.append(self.tag)
            return self.conv(x)

    return [Tagged(i) for i in range(n)]


def test_measure_interleaved_times_every_net_once_per_pass_in_a_fresh_order():
    log: list[int] = []
    nets = _tagged_nets(5, log)
    seen: list[tuple[int, int]] = []
    timings = measure_interleaved(nets, "cpu", protocol=QUICK, on_timing=lambda r, i, t: seen.append((r, i)))
    # the forward calls themselves, consecutive repeats collapsed: one run per (pass, net)
    runs = [t for k, t in enumerate(log) if k == 0 or log[k - 1] != t]
    assert len(runs) == QUICK.rounds * len(nets)
    passes = [runs[k * len(nets): (k + 1) * len(nets)] for k in range(QUICK.rounds)]
    for p in passes:
        assert sorted(p) == list(range(len(nets)))  # every net once per pass
    assert len({tuple(p) for p in passes}) > 1  # a fresh order per pass, not the same sweep repeated
    assert [i for _, i in seen] == runs and [r for r, _ in seen] == sorted(r for r, _ in seen)
    for t in timings:  # every net's samples of all passes pooled
        assert t.repeats == QUICK.rounds * QUICK.per_round and t.min_ms <= t.median_ms


def test_network_archs_cover_the_deep_end_and_heldout_excludes_them():
    from hwnas.search_space import Space

    space = Space.preset("fmnist-mbv3")
    strat = network_archs(space, 50, 0)
    unif = network_archs(space, 50, 0, sampling="uniform")
    assert len(set(strat)) == 50 and space.max_arch() in strat and space.min_arch() in strat
    assert max(a.num_blocks for a in strat) == space.max_arch().num_blocks
    from hwnas.estimators.flops import arch_macs_many

    assert arch_macs_many(space, strat).max() > arch_macs_many(space, unif).max()
    held = heldout_archs(space, 50, 999, exclude=[str(a) for a in strat])
    assert len(set(held)) == 50 and not set(held) & set(strat)
    with pytest.raises(ValueError, match="sampling"):
        network_archs(space, 5, 0, sampling="random")


def test_profile_keeps_the_network_sampling_it_started_with(tmp_path):
    import json

    space = tiny_space(resolutions=[16], stage2={"kernels": [3], "expands": [3]})
    p = profile(space, "cpu", tmp_path / "p", n_networks=4, progress=False, settings=FAST)
    assert json.loads((tmp_path / "p" / "profile.json").read_text())["network_sampling"] == "stratified"
    assert set(p.networks["arch"]) == {str(a) for a in network_archs(space, 4, 0)}


@pytest.mark.slow
def test_measure_exports_gives_predicted_measured_and_error_per_device(tmp_path):
    from hwnas.supernet import build_static, export

    space = tiny_space(resolutions=[16], stage2={"kernels": [3], "expands": [3]})
    a, b = space.min_arch(), space.max_arch()
    devices = ["cpu", "ort-cpu"]
    preds = {}
    for dev in devices:
        prof = profile(space, dev, tmp_path / dev, n_networks=2, progress=False, settings=FAST,
                       configs=space.block_configs(a) + space.block_configs(b))
        preds[dev] = LatencyPredictor.from_profile(prof)
    ckpt = export(build_static(space, a), a, tmp_path / "exp_a", space=space, formats=("safetensors", "onnx"))
    rows = measure_exports([ckpt, (build_static(space, b), b)], devices, predictors=preds, space=space,
                           protocol=QUICK)
    assert [r["arch"] for r in rows] == [str(a), str(b)]
    for r in rows:
        assert sorted(r["devices"]) == sorted(devices)
        for dev, m in r["devices"].items():
            assert m["predicted_ms"] == pytest.approx(preds[dev].predict(r["arch"]))
            assert 0 < m["measured_min_ms"] <= m["measured_median_ms"] and m["measured_ms"] == m["measured_min_ms"]
            assert m["rel_error"] == pytest.approx((m["predicted_ms"] - m["measured_ms"]) / m["measured_ms"])
            assert m["within_10pct"] == (abs(m["rel_error"]) <= 0.10)
    # without a predictor for a device: measured only
    bare = measure_exports([ckpt], ["cpu"], protocol=QUICK)
    assert bare[0]["devices"]["cpu"]["predicted_ms"] is None and bare[0]["devices"]["cpu"]["measured_ms"] > 0


@pytest.mark.slow
def test_export_latency_check_in_a_fresh_process_times_the_nets_with_their_weights(tmp_path):
    """The export stage's timing runs in a child process: the nets travel as arch + weights (or as a
    checkpoint folder), come back in order with the run's predictions; weights that do not fit the arch
    make the child fail loudly (in process the module would simply have been timed)."""
    from hwnas.pipeline.profile import export_latency_check
    from hwnas.supernet import build_static, export

    space = tiny_space(resolutions=[16], stage2={"kernels": [3], "expands": [3]})
    a, b = space.min_arch(), space.max_arch()
    run = tmp_path / "run"
    prof = profile(space, "cpu", run / "profiles" / "cpu", n_networks=2, progress=False, settings=FAST,
                   configs=space.block_configs(a) + space.block_configs(b))
    pred = LatencyPredictor.from_profile(prof)
    pred.save(run / "profiles" / "cpu" / "latency_predictor.json")
    ckpt = export(build_static(space, a), a, tmp_path / "exp_a", space=space, formats=("safetensors",))
    rows = export_latency_check(run, ["cpu"], [(build_static(space, b), b), ckpt], space=space, repeats=9,
                                fresh_process=True)
    assert [r["arch"] for r in rows] == [str(b), str(a)]
    for r in rows:
        m = r["devices"]["cpu"]
        assert m["predicted_ms"] == pytest.approx(pred.predict(r["arch"]))
        assert 0 < m["measured_min_ms"] <= m["measured_median_ms"]
    # anchors: the profile's networks re-timed in the same passes give the machine's drift per device
    rows = export_latency_check(run, ["cpu"], [ckpt], space=space, repeats=9, fresh_process=True, anchors=2)
    m = rows[0]["devices"]["cpu"]
    assert len(rows) == 1 and rows[0]["arch"] == str(a) and m["drift"] > 0
    assert m["drift_corrected_rel_error"] == pytest.approx((m["predicted_ms"] * m["drift"] - m["measured_ms"]) / m["measured_ms"])
    assert "drift" not in export_latency_check(run, ["cpu"], [ckpt], space=space, repeats=9)[0]["devices"]["cpu"]
    with pytest.raises(RuntimeError, match="fresh process failed"):
        export_latency_check(run, ["cpu"], [(build_static(space, a), b)], space=space, repeats=9, fresh_process=True)
