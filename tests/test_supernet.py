from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hwnas.errors import CheckpointError
from hwnas.search_space import Space
from hwnas.supernet import StaticNet, Supernet, export, load_subnet
from hwnas.supernet.ops import DynamicConv2d

PRESETS = ["fmnist-mbv3", "fmnist-mixed", "ofa-mbv3"]


def _scramble(net: Supernet, seed: int = 0) -> Supernet:
    """Give BN statistics and kernel transforms non-trivial values, so equality tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            if isinstance(m, DynamicConv2d):
                for p in m.transforms.values():
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


@pytest.fixture(scope="module", params=PRESETS)
def supernet(request):
    torch.manual_seed(0)
    net = _scramble(Supernet(Space.preset(request.param)))
    net.sort_channels()
    return net.eval()


@pytest.mark.slow
def test_extract_equals_supernet_on_200_archs_plus_min_max(supernet):
    space = supernet.space
    rng = random.Random(1)
    archs = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(200)]
    worst = 0.0
    for a in archs:
        supernet.set_active(a)
        x = torch.randn(1, space.in_channels, a.resolution, a.resolution)
        with torch.no_grad():
            y_super = supernet(x)
            static = supernet.extract(a)
            assert isinstance(static, StaticNet)
            assert not any("Dynamic" in type(m).__name__ for m in static.modules())
            y_static = static(x)
        worst = max(worst, (y_super - y_static).abs().max().item())
    assert worst <= 1e-5


def test_extract_copies_not_shares_weights():
    space = Space.preset("fmnist-mbv3")
    net = Supernet(space)
    static = net.extract(space.max_arch())
    ids = {p.data_ptr() for p in net.parameters()}
    assert not any(p.data_ptr() in ids for p in static.parameters())


def test_sort_channels_keeps_the_max_net_function():
    torch.manual_seed(0)
    space = Space.preset("fmnist-mixed")
    net = _scramble(Supernet(space)).eval()
    a = space.max_arch()
    x = torch.randn(2, 1, a.resolution, a.resolution)
    net.set_active(a)
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        after = net(x)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)
    # and the hidden channels are now ordered by importance
    blk = net.stages[1][0]["mb"]
    imp = blk.project_conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


def test_elastic_kernel_uses_transform_matrices():
    conv = DynamicConv2d(4, 4, (3, 5, 7), depthwise=True)
    w7 = conv.get_weight(4, 4, 7)
    w3 = conv.get_weight(4, 4, 3)
    assert w7.shape[-1] == 7 and w3.shape[-1] == 3
    torch.testing.assert_close(w3, conv.weight[:, :, 2:5, 2:5])  # identity transforms: centre crop
    with torch.no_grad():
        conv.transforms["5to3"].mul_(2.0)
    torch.testing.assert_close(conv.get_weight(4, 4, 3), 2 * conv.weight[:, :, 2:5, 2:5])


def test_active_state_lives_on_instances():
    space = Space.preset("fmnist-mbv3")
    a, b = Supernet(space), Supernet(space)
    a.set_min()
    b.set_max()
    assert a.active_arch == space.min_arch() and b.active_arch == space.max_arch()
    x = torch.randn(2, 1, 28, 28)
    assert a(x).shape == b(x).shape == (2, 10)
    n_a = sum(1 for _ in a._path)
    assert n_a == space.min_arch().num_blocks


def test_sample_active_is_reproducible_and_trains():
    space = Space.preset("fmnist-mixed")
    net = Supernet(space).train()
    arch1 = net.sample_active(7)
    arch2 = Supernet(space).sample_active(7)
    assert arch1 == arch2
    x = torch.randn(4, 1, arch1.resolution, arch1.resolution)
    loss = net(x).logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_set_active_rejects_bad_arch():
    net = Supernet("fmnist-mbv3")
    with pytest.raises(ValueError, match="k9"):
        net.set_active("r28|s1w16:mb_k3_e1|s2w24:mb_k9_e4|s3w40:mb_k3_e3|s4w80:mb_k3_e6|s5w96:mb_k7_e4")


# ---- export -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_onnx_torchscript_and_load_agree(supernet, tmp_path):
    import onnxruntime as ort

    space = supernet.space
    rng = random.Random(2)
    archs = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(3)]
    for i, a in enumerate(archs):
        out = export(supernet, a, tmp_path / f"c{i}", formats="safetensors,onnx,torchscript", metrics={"accuracy": 0.5})
        x = torch.randn(2, space.in_channels, a.resolution, a.resolution)
        supernet.set_active(a)
        with torch.no_grad():
            ref = supernet(x)
            loaded = load_subnet(out)
            torch.testing.assert_close(loaded(x), ref, atol=1e-5, rtol=0)
            ts = torch.jit.load(str(out / "model.pt"))
            torch.testing.assert_close(ts(x), ref, atol=1e-4, rtol=0)
        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"input": x.numpy()})[0]
        assert np.abs(y - ref.numpy()).max() <= 1e-4
        assert loaded.arch_string == a.to_string()


def test_export_writes_arch_json_and_refuses_existing_dir(tmp_path):
    import json

    space = Space.preset("fmnist-mbv3")
    net = Supernet(space).eval()
    a = space.sample(3)
    out = export(net, a, tmp_path / "ck", metrics={"latency_ms@cpu": 1.5})
    info = json.loads((out / "arch.json").read_text())
    assert info["arch"] == a.to_string()
    assert info["input_shape"] == [1, 1, a.resolution, a.resolution]
    assert info["metrics"] == {"latency_ms@cpu": 1.5}
    assert info["normalization"]["mean"] == list(space.mean)
    assert "torch" in info["versions"] and "weights.safetensors" in info["files"]
    with pytest.raises(CheckpointError, match="already exists"):
        export(net, a, out)
    export(net, a, out, overwrite=True)  # explicit overwrite works
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary leftovers


def test_load_refuses_truncated_or_altered_checkpoints(tmp_path):
    space = Space.preset("fmnist-mbv3")
    out = export(Supernet(space).eval(), space.sample(4), tmp_path / "ck")
    w = out / "weights.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_subnet(out)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_subnet(out, verify=False)
    (out / "arch.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_subnet(out)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_subnet(tmp_path / "nowhere")


def test_load_never_unpickles(tmp_path):
    """A pickle that would run code on load is ignored: load reads only JSON and safetensors."""
    import pickle

    space = Space.preset("fmnist-mbv3")
    out = export(Supernet(space).eval(), space.sample(5), tmp_path / "ck")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (out / "weights.pt").write_bytes(pickle.dumps(Evil()))
    # replacing the safetensors file with a pickle is refused, and nothing runs
    (out / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_subnet(out, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "n,c,hw,k,stride",
    [
        (8, 16, 4, 7, 1),
        (8, 16, 4, 5, 1),
        (5, 12, 7, 5, 2),
        (6, 8, 14, 7, 2),
        (4, 9, 14, 5, 1),
        (3, 6, 5, 7, 1),
        (2, 4, 3, 5, 2),
    ],
)
def test_depthwise_conv2d_matches_torch_values_and_gradients(n, c, hw, k, stride):
    from hwnas.supernet.ops import depthwise_conv2d

    g = torch.Generator().manual_seed(n * 100 + c)
    x = torch.randn(n, c, hw, hw, generator=g).requires_grad_(True)
    w = torch.randn(c, 1, k, k, generator=g).requires_grad_(True)
    b = torch.randn(c, generator=g).requires_grad_(True)
    ours = depthwise_conv2d(x, w, b, stride)
    assert "_DepthwiseConv" in type(ours.grad_fn.next_functions[0][0]).__name__, (
        "the fast path was not taken"
    )
    ref = torch.nn.functional.conv2d(x, w, b, stride, k // 2, 1, c)
    go = torch.randn(ref.shape, generator=g)
    g_ours = torch.autograd.grad(ours, (x, w, b), go)
    g_ref = torch.autograd.grad(ref, (x, w, b), go)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_depthwise_conv2d_falls_back_without_grad_and_on_large_maps():
    from hwnas.supernet.ops import DW_FAST_MAX_PIXELS, DepthwiseConv2d, depthwise_conv2d

    w = torch.randn(4, 1, 5, 5, requires_grad=True)
    big = torch.randn(1, 4, 17, 17)
    assert 17 * 17 > DW_FAST_MAX_PIXELS
    assert "Convolution" in type(depthwise_conv2d(big, w).grad_fn).__name__
    assert (
        "Convolution"
        in type(depthwise_conv2d(torch.randn(1, 4, 4, 4), w[:, :, 1:4, 1:4]).grad_fn).__name__
    )  # 3x3: PyTorch
    with torch.no_grad():
        assert depthwise_conv2d(torch.randn(1, 4, 4, 4), w).grad_fn is None
    # the module is a drop-in nn.Conv2d: same state-dict keys, same output
    m = DepthwiseConv2d(4, 3, 2)
    plain = torch.nn.Conv2d(4, 4, 3, 2, 1, groups=4, bias=False)
    plain.load_state_dict(m.state_dict())
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(m(x), plain(x))


def test_supernet_training_step_gradients_unchanged_by_fast_depthwise(monkeypatch):
    """One backward pass of the max subnet gives the same gradients with the fast depthwise weight
    gradient as with PyTorch's own (the fast path switched off by a zero pixel limit)."""
    import hwnas.supernet.ops as ops

    torch.manual_seed(0)
    net = Supernet(Space.preset("fmnist-mbv3")).train()
    net.set_active(net.space.max_arch())
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))

    def grads():
        torch.manual_seed(1)  # the same dropout mask in the head both times
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}

    fast = grads()
    monkeypatch.setattr(ops, "DW_FAST_MAX_PIXELS", 0)
    slow = grads()
    assert fast.keys() == slow.keys() and any("transforms" in k or "weight" in k for k in fast)
    for k in fast:
        torch.testing.assert_close(
            fast[k], slow[k], rtol=2e-3, atol=2e-4, msg=lambda m, k=k: f"{k}: {m}"
        )
