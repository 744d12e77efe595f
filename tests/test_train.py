"""Supernet training: config validation, schedules, policies learn, exact resume, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from hwnas.errors import CheckpointError, ConfigError
from hwnas.supernet import load_supernet
from hwnas.supernet.train import (
    DepsPolicy,
    ProgressivePolicy,
    SandwichPolicy,
    TrainConfig,
    load_config,
    lr_at,
    train,
)

from tests._helpers import load_benchmark
from tests._train_helpers import HAVE_FMNIST, tiny_config

needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST Debian files not installed")


def test_config_validation_names_bad_value():
    with pytest.raises(ConfigError, match="policy='nope'.*sandwich"):
        TrainConfig(policy="nope")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="accum_steps"):
        TrainConfig(batch_size=10, accum_steps=3)
    with pytest.raises(ConfigError, match="unknown keys.*'lrr'"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ConfigError, match="progressive_phases"):
        TrainConfig(progressive_phases=(("kernel", 0.5, 1.0), ("full", 0.5, 1.0)))
    with pytest.raises(ConfigError, match="report_test_images=0.*>= 1, or null"):
        TrainConfig(report_test_images=0)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_packaged_schedules():
    demo = load_config(schedule="demo", overrides={"policy": "sandwich", "seed": None})
    assert demo.schedule == "demo" and demo.policy == "sandwich" and demo.seed == 0
    assert load_config(schedule="default").epochs > demo.epochs
    with pytest.raises(ConfigError, match="unknown schedule 'huge'.*demo"):
        load_config(schedule="huge")


def test_lr_schedules():
    c = TrainConfig(lr=0.1, epochs=2, warmup_epochs=1)
    lrs = [lr_at(c, s, 100, warmup=10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(0.1) and lrs[-1] < 0.001
    oc = TrainConfig(lr=0.1, lr_schedule="onecycle")
    ol = [lr_at(oc, s, 100) for s in range(100)]
    assert ol[0] == pytest.approx(0.004) and max(ol) == pytest.approx(0.1) and ol[-1] < 0.001


def test_policies_plan_the_right_subnets():
    from hwnas.search_space import Space

    space = Space.preset("fmnist-mbv3")
    cfg = TrainConfig(epochs=4, num_random=2)
    sw = SandwichPolicy(cfg, space, 10)
    t = sw.tasks(3)
    assert [x.target for x in t] == ["labels", "teacher", "teacher", "teacher"]
    assert t[0].arch.stages == space.max_arch().stages and t[1].arch.stages == space.min_arch().stages
    assert sw.tasks(3) == t and sw.tasks(4) != t  # a pure function of the step: same on every rank
    deps = DepsPolicy(cfg.replace(deps_full_fraction=0.5, deps_ramp_epochs=1.0, deps_ramp_start=0.1), space, 10)
    assert [x.target for x in deps.tasks(19)] == ["labels"] and deps.phase(19) == "full"
    w = [deps.subnet_weight(s) for s in range(20, 31)]
    assert w[0] == pytest.approx(0.19) and w == sorted(w) and w[-1] == 1.0 and deps.phase(35) == "shrink"
    pg = ProgressivePolicy(cfg, space, 10)
    assert [pg.phase(s) for s in (0, 10, 20, 30)] == ["full", "kernel", "depth", "expand"]
    mx = space.max_arch()
    for a in (x.arch for x in pg.tasks(12)[1:]):  # kernel phase: only kernels vary
        assert [s.depth for s in a.stages] == [s.depth for s in mx.stages]
        assert all(b.expand == m.expand for s, sm in zip(a.stages, mx.stages) for b, m in zip(s.blocks, sm.blocks))
    for a in (x.arch for x in pg.tasks(22)[1:]):  # depth phase: expand stays max
        assert all(b.expand == max(ss.expands) for s, ss in zip(a.stages[1:], space.stages[1:]) for b in s.blocks)
    assert pg.lr(10) == pytest.approx(cfg.lr * 0.5)  # each phase restarts its own schedule


@needs_fmnist
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["sandwich", "progressive", "deps"])
def test_each_policy_learns_min_and_max(tmp_path, policy):
    # progressive splits its steps over 4 phases, each restarting its LR: it needs more steps
    size = dict(epochs=3, subset=2048) if policy == "progressive" else dict(epochs=2, subset=1536)
    cfg = tiny_config(tmp_path, policy=policy, report_random=0, **size)
    res = train(cfg, tmp_path / "run", progress=False)
    acc = res.report["test_acc"]
    assert res.report["test_images"] == cfg.report_test_images == 2000  # the report's test subset
    # chance is 0.10; 48 steps of a tiny supernet on 1.5k images reach 0.45-0.6 (3x chance is "clearly above")
    assert acc["max"] > 0.3 and acc["min"] > 0.3, acc
    recs = [json.loads(line) for line in res.metrics_path.read_text().splitlines()]
    assert {r["kind"] for r in recs} >= {"step", "epoch", "report"}
    # the logged loss is a trained subnet's (progressive's first task is a teacher-only pass)
    assert all(r["loss"] > 0 for r in recs if r["kind"] == "step")
    assert all(r["train_loss"] > 0 for r in recs if r["kind"] == "epoch")
    net = load_supernet(res.out_dir)
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k


@needs_fmnist
@pytest.mark.slow
def test_kill_after_epoch_then_resume_is_exact(tmp_path):
    cfg = tiny_config(tmp_path, policy="deps", epochs=2, subset=512, report_random=0)
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", progress=False, stop_after_epochs=1)
    assert part.epochs == 1 and not part.report
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, tmp_path / "part", progress=False)
    with pytest.raises(CheckpointError, match="different config"):
        train(cfg.replace(lr=0.2), tmp_path / "part", resume=True, progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.resumed_from == 1 and resumed.global_step == full.global_step
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert resumed.report["test_acc"] == full.report["test_acc"]


def test_load_supernet_refuses_non_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="supernet.json"):
        load_supernet(tmp_path)
    (tmp_path / "supernet.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "supernet.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a supernet"):
        load_supernet(tmp_path)


@needs_fmnist
def test_budget_sizing_of_the_policy_benchmark(tmp_path):
    """`train_policies.py --budget-minutes`: a real timed probe gives the step count; the schedule
    grows epochs when the data's epoch is too short and keeps its shape."""
    bench = load_benchmark("train_policies")
    cfg = tiny_config(tmp_path, policy="deps", epochs=2, deps_ramp_epochs=0.5)  # 1024 images / 64 = 16 steps an epoch
    steps, probe = bench.steps_for_budget(cfg, 30.0, tmp_path / "runs", probe_steps=8)
    assert probe["probe_steps"] == 8 and set(probe["probe_seconds_per_step_by_phase"]) == {"full", "ramp", "shrink"} and probe["probe_seconds_per_step"] > 0
    assert steps == max(2, int(30.0 / probe["probe_seconds_per_step"]))
    assert not any((tmp_path / "runs").iterdir()), "the probe run is removed"
    same = bench.fit_schedule(cfg, 20)  # fits in the 2 epochs of 16 steps
    assert (same.epochs, same.steps_per_epoch, same.deps_ramp_epochs) == (2, 10, 0.5)
    longer = bench.fit_schedule(cfg, 100)  # needs 7 epochs of <= 16 steps
    assert (longer.epochs, longer.steps_per_epoch) == (7, 14)
    assert longer.deps_ramp_epochs == pytest.approx(0.5 * 7 / 2)  # the ramp stays a quarter of training


@needs_fmnist
def test_cli_space_and_num_random_flags_train_that_space_and_sandwich(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "lite"
    proc = subprocess.run([sys.executable, "-m", "hwnas", "train", "--space", "fmnist-lite", "--schedule", "tiny",
                           "--subset", "256", "--out", str(out), "--no-progress", "--threads", "1", "--num-random", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["space"] == "fmnist-lite" and cfg["num_random"] == 2  # the tiny schedule's 1, overridden
    from hwnas.supernet.train import TrainConfig, make_policy

    net = load_supernet(out)
    policy = make_policy(TrainConfig.from_dict(cfg), net.space, steps_per_epoch=10)
    assert len(policy.tasks(policy.total - 1)) == 4  # a late step trains max + min + 2 random subnets
    assert net.space.name == "fmnist-lite"
    assert set(net.space.choices()["s3.w"]) == {16, 24, 40}  # the space's elastic widths, not fmnist-mbv3's fixed 40
