"""The trainer's recipe switches each do what they say (zero-init residual BN, max-only
regularisation, attentive pools, weight EMA, the single-arch baseline policy)."""

from __future__ import annotations

import json

import pytest
import torch
from hwnas.errors import ConfigError
from hwnas.search_space import Space
from hwnas.supernet import Supernet
from hwnas.supernet.train import (
    Task,
    TrainConfig,
    Trainer,
    WeightEMA,
    l2_penalty,
    make_policy,
    train,
    zero_init_residual_bn,
)

from tests._helpers import TINY_SPACE
from tests._train_helpers import HAVE_FMNIST, tiny_config, tiny_space_path

needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST Debian files not installed")


def _last_bn(blk):
    return [m for m in blk.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]


def test_zero_init_residual_bn_zeroes_exactly_the_always_residual_slots():
    space = Space.from_dict(TINY_SPACE)
    net = Supernet(space)
    n = zero_init_residual_bn(net)
    # stage 1: stem 8 -> width 8, stride 1: both slots always residual; stage 2: slot 0 changes
    # width and stride (never residual), slot 1 always is.
    expect = {(0, 0): True, (0, 1): True, (1, 0): False, (1, 1): True}
    assert n == sum(expect.values())
    for (i, j), zero in expect.items():
        gamma = _last_bn(net.stages[i][j]["mb"]).weight
        assert bool((gamma == 0).all()) is zero, (i, j)
    # the zeroed slots start as the identity: the max subnet computes what the same subnet one
    # block shallower per stage computes
    net.eval()
    x = torch.randn(2, 1, 20, 20)
    mx = space.max_arch()
    shallow = space.parse(str(mx).replace("x2", ""))
    assert shallow != mx
    net.set_active(mx)
    y_full = net(x)
    net.set_active(shallow)
    assert torch.allclose(net(x), y_full, atol=1e-5)


def test_config_rejects_bad_switch_values():
    with pytest.raises(ConfigError, match="attentive='most'.*best"):
        TrainConfig(attentive="most")
    with pytest.raises(ConfigError, match="attentive_pool"):
        TrainConfig(attentive="worst", attentive_pool=1)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="single_arch"):
        TrainConfig(policy="single")
    with pytest.raises(ConfigError, match="single_arch"):
        TrainConfig(policy="sandwich", single_arch="r28|s1w16:mb_k3_e1")
    with pytest.raises(ConfigError, match="zero_init_residual_bn"):
        TrainConfig(zero_init_residual_bn="yes")


def _trainer(tmp_path, **kw):
    cfg = tiny_config(tmp_path, policy="sandwich", **kw)
    tr = Trainer(cfg, tmp_path / "run")
    space = Space.preset(cfg.space)
    tr.net = tr.build(space)
    tr.policy = make_policy(cfg, space, 10)
    return tr, space


def test_max_only_regularisation_puts_wd_and_label_smoothing_on_the_max_subnet_alone(tmp_path):
    tr, space = _trainer(tmp_path, regularize_max_only=True, weight_decay=1e-2, label_smoothing=0.2)
    tr_off, _ = _trainer(tmp_path, regularize_max_only=False, weight_decay=1e-2, label_smoothing=0.2)
    torch.manual_seed(0)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    soft = torch.softmax(torch.randn(8, 10), 1)
    mx, mn = tr.policy.max_arch(), tr.policy._min
    plain_ce = torch.nn.functional.cross_entropy(logits, y)
    ls_ce = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2)
    l2 = l2_penalty([p for n, p in tr.net.named_parameters() if p.ndim > 1 and ".transforms." not in n], 1e-2)
    assert float(l2) > 0
    # max subnet: label smoothing and the L2 term
    got_max = tr.task_loss(Task(mx, "labels"), logits, y, None)
    assert torch.allclose(got_max, ls_ce + l2)
    # another subnet trained on labels: neither label smoothing nor L2
    assert torch.allclose(tr.task_loss(Task(mn, "labels"), logits, y, None), plain_ce)
    # a distilled subnet: the KD term only
    kd = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(tr.task_loss(Task(mn, "teacher"), logits, y, soft), kd)
    # switched off: label smoothing for every labelled subnet, and no explicit L2 (the optimizer decays)
    assert torch.allclose(tr_off.task_loss(Task(mn, "labels"), logits, y, None), ls_ce)
    assert torch.allclose(tr_off.task_loss(Task(mx, "labels"), logits, y, None), ls_ce)
    from hwnas.supernet.train.loop import _make_optimizer

    assert [g["weight_decay"] for g in _make_optimizer(tr.net, tr.cfg).param_groups] == [0.0, 0.0]
    assert [g["weight_decay"] for g in _make_optimizer(tr_off.net, tr_off.cfg).param_groups] == [1e-2, 0.0]


def test_max_only_regularisation_turns_dropout_off_for_other_subnets(tmp_path):
    space = dict(TINY_SPACE, head={**TINY_SPACE["head"], "dropout": 0.3})
    p = tmp_path / "drop.yaml"
    import yaml

    p.write_text(yaml.safe_dump(space))
    tr, sp = _trainer(tmp_path, regularize_max_only=True, space=str(p))
    tr._dropout_for(tr.policy.max_arch())
    assert tr.net.head.dropout.p == pytest.approx(0.3)
    tr._dropout_for(tr.policy._min)
    assert tr.net.head.dropout.p == 0.0


def test_attentive_pool_picks_the_worst_and_the_best_candidate(tmp_path):
    tr, space = _trainer(tmp_path, attentive="worst", attentive_pool=4)
    tasks = tr.policy.tasks(3)
    pooled = [t for t in tasks if t.pool]
    assert len(pooled) == tr.cfg.num_random and all(len(t.pool) == 4 for t in pooled)
    assert tasks == tr.policy.tasks(3)  # the pool is a pure function of (seed, step)
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 20, 20), torch.randint(0, 10, (16,))
    tr.net.train()
    t = pooled[0]

    def losses():
        out = []
        for a in t.pool:
            torch.manual_seed(1)
            tr.net.set_active(a)
            with torch.no_grad():
                out.append(float(torch.nn.functional.cross_entropy(tr.net(torch.nn.functional.interpolate(
                    x, size=(a.resolution,) * 2, mode="bilinear", align_corners=False)), y)))
        return out

    tr.net.eval()  # deterministic scores for the check (no dropout, running BN stats)
    ls = losses()
    worst = tr.resolve_pool(t, x, y)
    assert not worst.pool and worst.arch == t.pool[max(range(4), key=ls.__getitem__)]
    best = tr.resolve_pool(Task(t.arch, t.target, t.weight, pool=t.pool, pick="best"), x, y)
    assert best.arch == t.pool[min(range(4), key=ls.__getitem__)]


def test_weight_ema_tracks_the_average():
    net = torch.nn.Linear(3, 2)
    ema = WeightEMA(net, 0.5)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.shadow["weight"], w0 + 1.0)
    target = torch.nn.Linear(3, 2)
    ema.copy_to(target)
    assert torch.allclose(target.weight, w0 + 1.0)


@needs_fmnist
@pytest.mark.slow
def test_single_policy_trains_one_arch_and_ema_run_resumes_exactly(tmp_path):
    arch = "r20|s1w8:mb_k5_e3x2|s2w16:mb_k3_e2"
    cfg = tiny_config(tmp_path, policy="single", single_arch=arch, ema_decay=0.9, zero_init_residual_bn=True,
                      regularize_max_only=True)
    res = train(cfg, tmp_path / "single", progress=False)
    assert list(res.report["test_acc"]) == ["single"] and res.report["archs"]["single"] == arch
    assert res.report["test_acc"]["single"] > 0.3  # learns far above chance (0.1) in 32 steps
    # kill after epoch 1, resume: the EMA is in the checkpoint, so the final weights are the same
    train(cfg, tmp_path / "killed", progress=False, stop_after_epochs=1)
    res2 = train(cfg, tmp_path / "killed", resume=True, progress=False)
    assert res2.resumed_from == 1
    sd1, sd2 = res.model.state_dict(), res2.model.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    saved = json.loads((tmp_path / "single" / "config.json").read_text())
    assert saved["policy"] == "single" and saved["ema_decay"] == 0.9


@needs_fmnist
@pytest.mark.slow
def test_bignas_recipe_with_attentive_sampling_trains(tmp_path):
    cfg = tiny_config(tmp_path, policy="sandwich", zero_init_residual_bn=True, regularize_max_only=True,
                      attentive="worst", attentive_pool=3, min_lr_ratio=0.05, kd="alpha")
    res = train(cfg, tmp_path / "bignas", progress=False)
    acc = res.report["test_acc"]
    assert acc["max"] > 0.3 and acc["min"] > 0.3
    assert tiny_space_path(tmp_path)  # the space file the config names is still there


def _alpha_grad(logits: torch.Tensor, soft: torch.Tensor, clip):
    from hwnas.supernet.train import alpha_div

    z = logits.clone().requires_grad_(True)
    loss = alpha_div(z, soft, clip=clip)
    loss.backward()
    return loss.detach(), z.grad


def test_alpha_div_clipped_gradient_is_the_exact_one_where_no_weight_reaches_the_clip():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=g)
    soft = torch.softmax(torch.randn(16, 10, generator=g), 1)  # no class near zero mass
    v_exact, g_exact = _alpha_grad(logits, soft, None)
    v_big, g_big = _alpha_grad(logits, soft, 1e9)
    assert torch.allclose(v_exact, v_big) and torch.allclose(g_exact, g_big, atol=1e-7, rtol=1e-5)
    assert g_exact.abs().max() > 0


def test_alpha_div_clips_the_importance_weights_of_classes_the_teacher_rules_out():
    # The teacher gives class 0 almost no mass while the student puts 0.5 there: with a = -1 the weight
    # q / p is ~5e5; clipped at 5, every logit's gradient is at most clip * q_j / batch.
    logits = torch.tensor([[2.0, 2.0] + [0.0] * 8] * 4)
    soft = torch.full((4, 10), 1e-6)
    soft[:, 1] = 1.0 - soft[:, 1:].sum(1) + soft[:, 1]
    soft = soft / soft.sum(1, keepdim=True)
    v_exact, g_exact = _alpha_grad(logits, soft, None)
    v_clip, g_clip = _alpha_grad(logits, soft, 5.0)
    assert torch.allclose(v_exact, v_clip)  # the value is the divergence either way
    assert g_exact.abs().max() > 1000
    q = torch.softmax(logits, 1)
    assert (g_clip.abs() <= 5.0 * q / 4 + 1e-6).all()
    assert g_clip.abs().max() > 0.01


def _scrambled_mixed_net():
    """fmnist-mixed (mb, fmb and conv blocks with kernels 3 and 5) with non-identity transforms."""
    torch.manual_seed(0)
    net = Supernet(Space.preset("fmnist-mixed"))
    with torch.no_grad():
        for n, p in net.named_parameters():
            if ".transforms." in n:
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_separate_kernels_keeps_every_subnet_and_then_decouples_the_kernel_sizes():
    net = _scrambled_mixed_net()
    space = net.space
    assert net.kernel_sharing == "transform"
    archs = [space.max_arch(), space.min_arch(), *space.sample_many(6, 3)]
    x = torch.randn(2, 1, 28, 28)
    before = []
    with torch.no_grad():
        for a in archs:
            net.set_active(a)
            before.append(net(x[..., : a.resolution, : a.resolution]))
    added = net.separate_kernels()
    assert added > 0 and net.kernel_sharing == "separate" and net.separate_kernels() == 0  # idempotent
    assert not any(".transforms." in n for n, _ in net.named_parameters())
    with torch.no_grad():  # the same function for every subnet right after the switch
        for a, y in zip(archs, before):
            net.set_active(a)
            torch.testing.assert_close(net(x[..., : a.resolution, : a.resolution]), y, atol=1e-5, rtol=1e-5)
    # a subnet of 3x3 kernels only trains the 3x3 weights: the 5x5 weights get no gradient
    net.train()
    net.set_active(space.min_arch())
    net.zero_grad(set_to_none=True)
    net(x[..., :20, :20]).sum().backward()
    dw = net.stages[1][0]["mb"].dw_conv
    assert dw.weight.grad is None and dw.kernel_weights["k3"].grad is not None
    assert dw.kernel_weights["k3"].shape == (dw.max_out, 1, 3, 3)


def test_separate_kernels_survive_sort_channels_and_extraction():
    net = _scrambled_mixed_net()
    net.separate_kernels()
    space = net.space
    a = space.parse("r28|s1w24:mb_k3_e4x2|s2w40:fmb_k3_e6x3|s3w80:conv_k3x3|s4w96:mb_k3_e6x2")  # every kind on 3x3
    x = torch.randn(2, 1, a.resolution, a.resolution)
    with torch.no_grad():
        net.set_active(space.max_arch())
        y_max = net(x)
        net.set_active(a)
        y_k3 = net(x)
        net.sort_channels()  # permutes the separate kernels with their channels
        net.set_active(space.max_arch())
        torch.testing.assert_close(net(x), y_max, atol=1e-5, rtol=1e-5)
        net.set_active(a)
        torch.testing.assert_close(net(x), y_k3, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.extract(a).eval()(x), y_k3, atol=1e-5, rtol=1e-5)


def test_kernel_sharing_switch_builds_separate_kernels_keeps_them_out_of_the_max_l2_and_round_trips(tmp_path):
    from hwnas.supernet import load_supernet, save_supernet

    with pytest.raises(ConfigError, match="kernel_sharing='shared'.*transform.*separate"):
        TrainConfig(kernel_sharing="shared")
    tr, space = _trainer(tmp_path, kernel_sharing="separate", regularize_max_only=True, weight_decay=1e-2)
    assert tr.net.kernel_sharing == "separate"
    names = {n for n, _ in tr.net.named_parameters()}
    assert any(".kernel_weights.k3" in n for n in names)
    # the max subnet's L2 term covers its own weights only, not the separate 3x3 kernels
    from hwnas.supernet.train.loop import _decay_params

    mine = {id(p) for p in _decay_params(tr.net, max_only=True)[0]}
    all_decayed = {id(p) for p in _decay_params(tr.net)[0]}
    k3 = {id(p) for n, p in tr.net.named_parameters() if ".kernel_weights." in n}
    assert k3 and k3 <= all_decayed and not (k3 & mine) and mine < all_decayed
    logits, y = torch.randn(4, 10), torch.randint(0, 10, (4,))
    with torch.no_grad():
        for n, p in tr.net.named_parameters():
            if ".kernel_weights." in n:
                p.mul_(100.0)  # were they in the max's L2 term, its loss would jump
    l2 = l2_penalty([p for p in tr.net.parameters() if id(p) in mine], 1e-2)
    got = tr.task_loss(Task(tr.policy.max_arch(), "labels"), logits, y, None)
    assert torch.allclose(got, torch.nn.functional.cross_entropy(logits, y, label_smoothing=tr.cfg.label_smoothing) + l2)
    # saved and loaded: the loader sees the separate kernels and rebuilds them
    save_supernet(tr.net, tmp_path / "sn")
    back = load_supernet(tmp_path / "sn")
    assert back.kernel_sharing == "separate"
    x = torch.randn(2, 1, 28, 28)
    a = space.min_arch()
    tr.net.eval().set_active(a)
    back.eval().set_active(a)
    with torch.no_grad():
        torch.testing.assert_close(back(x[..., : a.resolution, : a.resolution]), tr.net(x[..., : a.resolution, : a.resolution]))
