"""Fused Triton kernels against their PyTorch references.

CPU: the kernels run through the Triton interpreter. Triton decides between compiled and
interpreted kernels when a `@triton.jit` function is defined, i.e. when `hwnas.kernels` is first
imported, and other test modules may import it without the variable; so the interpreter checks run
in subprocesses started with TRITON_INTERPRET=1 (two at once, one per core), leaving this process
and the other test modules untouched. GPU: the same checks run on real kernels, in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hwnas.search_space import Space

TOL = 1e-4
SPACE = "fmnist-mbv3"
N_ARCHS = 20


def _start(what: str, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "hwnas.kernels._check", "--space", SPACE, "--what", what, "--device", "cpu",
           "--archs", str(N_ARCHS), "--json", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def interp_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Run the interpreter sweeps once for the module: configs+odd shapes and fuse, in parallel."""
    d = tmp_path_factory.mktemp("kernels")
    jobs = {"configs,odd": _start("configs,odd", d / "a.json"), "fuse": _start("fuse", d / "b.json")}
    recs: dict[str, list[dict]] = {"configs": [], "odd": [], "fuse": []}
    for name, proc in jobs.items():
        _, err = proc.communicate(timeout=900)
        path = d / ("a.json" if name != "fuse" else "b.json")
        if not path.exists():
            pytest.fail(f"interpreter check {name!r} crashed (rc {proc.returncode}):\n{err[-4000:]}")
        for r in json.loads(path.read_text())["records"]:
            # odd-shape records name raw shapes (n..), config records name block keys
            kind = "fuse" if r["check"] == "fuse" else ("odd" if r["what"].startswith("n") else "configs")
            recs[kind].append(r)
    return recs


def _bad(recs: list[dict], rel: bool = False) -> list[str]:
    """Records over tolerance; `rel` scales it by the reference's magnitude where that exceeds 1."""
    return [f"{r['check']} {r['what']}: {r['err']:.3g} (|ref| {r['ref_max']:.3g})" for r in recs
            if not r["err"] <= TOL * (max(1.0, r["ref_max"]) if rel else 1.0)]


@pytest.fixture()
def exact_cuda():
    """Reference convs and matmuls in true fp32 (PyTorch lets cuDNN use TF32 by default)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.slow
def test_every_block_config_matches_reference(interp_records: dict[str, list[dict]]) -> None:
    recs = interp_records["configs"]
    keys = {r["what"].split("/")[0] for r in recs}
    expected = {c.key for c in Space.preset(SPACE).distinct_block_configs()}
    assert keys == expected, f"configs not checked: {sorted(expected - keys)[:5]}"
    checks = {r["check"] for r in recs}
    # every kernel took part: depthwise (+ its SE pool), pointwise/dense GEMM, SE gate, head
    assert {"depthwise", "depthwise_pool", "conv_gemm", "se_gate", "head"} <= checks, checks
    assert not _bad(recs), _bad(recs)[:10]
    # the references are not trivially zero: errors are measured against real magnitudes
    assert max(r["ref_max"] for r in recs) > 0.5


@pytest.mark.slow
def test_odd_shapes_match_reference(interp_records: dict[str, list[dict]]) -> None:
    recs = interp_records["odd"]
    assert {"depthwise", "conv_gemm", "conv_gemm_pool", "se_gate", "se_scale"} <= {r["check"] for r in recs}
    whats = " ".join(r["what"] for r in recs)
    for needle in ("n1_", "n7_", "_c1_", "nhwc", "nchw", "_s2_", "swish", "relu6", "hswish"):
        assert needle in whats, needle
    assert not _bad(recs), _bad(recs)


@pytest.mark.slow
def test_fuse_equals_extract_on_random_archs(interp_records: dict[str, list[dict]]) -> None:
    recs = interp_records["fuse"]
    assert len(recs) == N_ARCHS and len({r["what"] for r in recs}) > 1
    assert not _bad(recs), _bad(recs)
    assert min(r["ref_max"] for r in recs) > 1e-2


def test_fuse_without_kernels_warns_and_keeps_pytorch_ops() -> None:
    """Without CUDA or the interpreter, fuse says so and runs folded PyTorch ops, still equal."""
    from hwnas.kernels import fuse, kernels_available
    from hwnas.kernels._check import randomize_
    from hwnas.supernet import build_static

    if kernels_available():
        pytest.skip("CUDA or TRITON_INTERPRET present: the PyTorch fallback is not used here")
    space = Space.preset("fmnist-mixed")  # every block kind: mb, fmb, conv, SE on some stages
    for seed in range(3):
        arch = space.sample(seed)
        static = randomize_(build_static(space, arch), seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fused = fuse(static)
        assert any("no CUDA" in str(w.message) for w in caught)
        x = torch.randn(3, 1, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert (fused(x) - static(x)).abs().max().item() <= TOL


class _RecordingKernel:
    """Stands in for a `@triton.jit` function in the launch-cache unit test: records every launch
    (grid and arguments) the way Triton's compiled-kernel runner receives it."""

    arg_names = ["x_ptr", "C", "BLOCK"]

    def __init__(self) -> None:
        self.jit_calls: list[tuple] = []
        self.direct_calls: list[tuple] = []

    def __getitem__(self, grid: tuple):
        def jit_entry(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.jit_calls.append((tuple(grid), args, kwargs))
            return _RecordingCompiled(self)

        return jit_entry


class _RecordingCompiled:
    function = "compiled"

    def __init__(self, owner: _RecordingKernel) -> None:
        self.owner = owner

    def __getitem__(self, grid: tuple):
        return lambda *args: self.owner.direct_calls.append((tuple(grid), args))


def test_launch_cache_keys_on_every_specialisation_and_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached launch plan is reused only for the same signature; a fixed grid is part of it (a
    per-sample kernel's batch is no kernel argument: reusing a batch-2 grid at batch 4 left two
    samples' gates unwritten on the GPU)."""
    from hwnas.kernels._common import Launcher

    monkeypatch.setenv("HWNAS_KERNELS_FAST_LAUNCH", "1")
    k = _RecordingKernel()
    lau = Launcher(k)
    x = torch.zeros(8)
    lau(None, (2,), (x, 8), {"BLOCK": 16}, num_warps=4)   # compiles (JIT entry point)
    lau(None, (2,), (x, 8), {"BLOCK": 16}, num_warps=4)   # same signature: direct call
    lau(None, (4,), (x, 8), {"BLOCK": 16}, num_warps=4)   # other grid: entry point again
    lau(None, (4,), (x, 8), {"BLOCK": 16}, num_warps=4)
    lau(None, (4,), (x, 9), {"BLOCK": 16}, num_warps=4)   # other int argument
    lau(None, (4,), (x, 9), {"BLOCK": 32}, num_warps=4)   # other constexpr
    lau(None, (4,), (x.double(), 9), {"BLOCK": 32}, num_warps=4)  # other dtype
    lau(None, (4,), (x[1:], 9), {"BLOCK": 32}, num_warps=4)  # misaligned pointer
    assert [c[0] for c in k.jit_calls] == [(2,), (4,), (4,), (4,), (4,), (4,)]
    # direct calls pass the runtime arguments, then the constexprs in signature order, with the
    # grid padded to three axes as Triton's runner expects
    assert [(g, a[1:]) for g, a in k.direct_calls] == [((2, 1, 1), (8, 16)), ((4, 1, 1), (8, 16))]
    assert len(lau.plans) == 6
    monkeypatch.setenv("HWNAS_KERNELS_FAST_LAUNCH", "0")  # off: always the entry point
    lau(None, (2,), (x, 8), {"BLOCK": 16}, num_warps=4)
    assert len(k.jit_calls) == 7 and len(k.direct_calls) == 2


def test_fused_block_rejects_unknown_modules() -> None:
    from hwnas.kernels import fused_block

    with pytest.raises(ValueError, match="cannot fuse"):
        fused_block(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="allowed"):
        from hwnas.kernels._common import act_code

        act_code("gelu")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@pytest.mark.slow
@cuda
def test_gpu_kernels_match_reference(exact_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from hwnas.kernels._check import check_odd_shapes, check_space_configs

    # One launch config per family: with autotuning every kernel variant compiles three times
    # (about a second each on an H100 host) and every new shape is timed; two device runs of
    # this test with autotuning did not finish in 110 s.
    monkeypatch.setenv("HWNAS_KERNELS_AUTOTUNE", "0")
    recs = [r.__dict__ for r in check_odd_shapes(device="cuda")]
    recs += [r.__dict__ for r in check_space_configs(SPACE, batch=2, device="cuda")]
    assert not _bad(recs), _bad(recs)[:10]


@pytest.mark.gpu
@pytest.mark.slow
@cuda
def test_gpu_fuse_equals_extract(exact_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from hwnas.kernels._check import check_fuse_archs

    monkeypatch.setenv("HWNAS_KERNELS_AUTOTUNE", "0")
    recs = [r.__dict__ for r in check_fuse_archs(SPACE, n_archs=N_ARCHS, batch=4, device="cuda")]
    assert not _bad(recs), _bad(recs)
    # the ImageNet-sized space, channels-last input; its logits reach tens, so the bound is relative
    big = [r.__dict__ for r in check_fuse_archs("ofa-mbv3", n_archs=2, batch=2, device="cuda", channels_last=True)]
    assert not _bad(big, rel=True), _bad(big, rel=True)


@pytest.mark.gpu
@cuda
def test_gpu_cuda_graph_replay_equals_fused() -> None:
    from hwnas.kernels import fuse
    from hwnas.kernels._check import randomize_
    from hwnas.supernet import build_static

    space = Space.preset(SPACE)
    arch = space.sample(3)
    static = randomize_(build_static(space, arch), 3).cuda()
    plain, graphed = fuse(static), fuse(static, cuda_graph=True)
    for _ in range(2):  # the second call replays the captured graph on new data
        x = torch.randn(2, 1, arch.resolution, arch.resolution, device="cuda")
        assert (graphed(x) - plain(x)).abs().max().item() <= 1e-5


@pytest.mark.gpu
@cuda
def test_gpu_fast_launch_reuses_compiled_kernels(exact_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second launch of a shape calls the cached compiled kernel: same results as the JIT entry point."""
    from hwnas.kernels import depthwise as dw
    from hwnas.kernels import pointwise as pw
    from hwnas.kernels import se

    monkeypatch.setenv("HWNAS_KERNELS_AUTOTUNE", "0")
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(24, 1, 5, 5, generator=g) / 5).cuda()
    b = torch.randn(24, generator=g).cuda()
    wg = (torch.randn(16, 24, 1, 1, generator=g) / 5).cuda()
    w1, b1 = torch.randn(8, 24, generator=g).cuda(), torch.randn(8, generator=g).cuda()
    w2, b2 = torch.randn(24, 8, generator=g).cuda(), torch.randn(24, generator=g).cuda()
    taps, gemm = dw.prepare_depthwise_weight(w), pw.prepare_gemm_weight(wg)

    def block(x: torch.Tensor) -> torch.Tensor:
        pool = torch.zeros(x.shape[0], 24, device="cuda")
        y = dw.depthwise_conv(x, taps, b, 5, 2, "hswish", pool)
        gate = se.se_gate(pool, y.shape[2] * y.shape[3], w1, b1, w2, b2)
        return pw.conv_gemm(se.se_scale(y, gate), gemm, None, 1, 1, "relu")

    def ref(x: torch.Tensor) -> torch.Tensor:
        y, s = dw.depthwise_ref(x, w, b, 2, "hswish", pool=True)
        gate = se.se_gate_ref(s, y.shape[2] * y.shape[3], w1, b1, w2, b2)
        return pw.conv_gemm_ref(se.se_scale_ref(y, gate), wg, None, 1, "relu")[0]

    launchers = (dw._launch, pw._launch, se._launch_fc, se._launch_scale)
    x0 = torch.randn(3, 24, 13, 13, device="cuda")
    block(x0)
    plans = [len(lau.plans) for lau in launchers]
    assert all(p >= 1 for p in plans), plans
    for seed in range(3):  # new data, same shapes: every launch takes a cached plan
        x = torch.randn(3, 24, 13, 13, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        assert (block(x) - ref(x)).abs().max().item() <= TOL
    assert [len(lau.plans) for lau in launchers] == plans
    for n in (1, 5):  # another batch is another signature: a cached grid must not cover too few samples
        x = torch.randn(n, 24, 13, 13, device="cuda")
        assert (block(x) - ref(x)).abs().max().item() <= TOL
    monkeypatch.setenv("HWNAS_KERNELS_FAST_LAUNCH", "0")  # through Triton's entry point (SE sums use atomics: not bitwise)
    slow = block(x)
    monkeypatch.setenv("HWNAS_KERNELS_FAST_LAUNCH", "1")
    assert (block(x) - slow).abs().max().item() <= 1e-5
