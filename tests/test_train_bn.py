"""BN recalibration: changes the subnet's running statistics, repairs a mis-calibrated subnet."""

from __future__ import annotations

import pytest
import torch
from hwnas.supernet import Supernet
from hwnas.supernet.bn import evaluate, recalibrate_bn

from tests._train_helpers import HAVE_FMNIST, tiny_config


def _bn_stats(net):
    return {n: b.clone() for n, b in net.named_buffers() if "running" in n}


def test_recalibration_touches_only_the_active_slice():
    from hwnas.search_space import Space

    space = Space.preset("fmnist-mbv3")
    net = Supernet(space)
    arch = space.min_arch()
    before = _bn_stats(net)
    recalibrate_bn(net, arch, torch.randn(64, 1, 28, 28) * 2 + 1, num_images=64, batch_size=32)
    after = _bn_stats(net)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed, "recalibration changed nothing"
    # min arch uses expand 3 of stage 2 (24*3 = 72 hidden channels of 144): channels past 72 untouched
    key = "stages.1.0.mb.body.0.1.bn.running_mean"
    assert not torch.equal(before[key][:72], after[key][:72])
    assert torch.equal(before[key][72:], after[key][72:])
    # the second slot of stage 2 is not in the min arch: untouched
    assert torch.equal(before["stages.1.1.mb.body.0.1.bn.running_mean"], after["stages.1.1.mb.body.0.1.bn.running_mean"])
    assert net.training  # mode restored


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST Debian files not installed")
def test_recalibration_repairs_miscalibrated_subnet(tmp_path):
    from hwnas.data import make_loaders
    from hwnas.supernet.train import train

    cfg = tiny_config(tmp_path, policy="sandwich", epochs=2, subset=1024, report_random=0)
    res = train(cfg, tmp_path / "run", progress=False)
    net = res.model
    space = net.space
    ld = make_loaders(space=space, subset=1024, batch_size=64)
    test = ld.test
    test.x, test.y = test.x[:1000], test.y[:1000]
    arch = space.sample(3)
    static = net.extract(arch)
    with torch.no_grad():  # deliberately wrong statistics
        for m in static.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 3)
                m.running_var.uniform_(5, 10)
    bad = evaluate(static, None, test, recalibrate=False)
    before = _bn_stats(static)
    good = evaluate(static, None, test, calib=ld.calib_images(500), num_calib=500)
    assert any(not torch.equal(before[n], v) for n, v in _bn_stats(static).items())
    assert good > bad + 0.2, (bad, good)
    # on the supernet itself: evaluate works on a copy and leaves the supernet's own buffers alone
    sup_before = _bn_stats(net)
    acc = evaluate(net, arch, test, calib=ld.calib_images(500))
    assert acc == pytest.approx(good, abs=0.02)
    assert all(torch.equal(sup_before[n], v) for n, v in _bn_stats(net).items())
    with pytest.raises(ValueError, match="calib"):
        evaluate(net, arch, test)
