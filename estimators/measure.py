"""Timing real kernels on a `Device`: warm-up, repeated samples, median and IQR, raw samples kept.

What makes a timing trustworthy on a shared machine:
- inputs are allocated once, before timing; the garbage collector is off while timing;
- the intra-op thread count is pinned to the device's (torch and onnxruntime alike);
- each sample runs the callable `number` times (calibrated so one sample lasts >= `min_sample_ms`),
  so sub-millisecond blocks are not drowned by the clock's resolution;
- the median, not the mean, is the estimate (a neighbour process stealing the core shows up as
  outliers in the upper tail), and the IQR and the raw samples are kept for the record;
- on CUDA, CUDA events around the samples and `torch.cuda.synchronize()` before reading them.
"""

from __future__ import annotations

import contextlib
import gc
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.estimators.devices import Device

__all__ = ["Timing", "time_callable", "threads_pinned", "measure", "measure_module", "measure_onnx",
           "onnx_bytes", "ort_session", "DEFAULT_WARMUP", "DEFAULT_REPEATS"]

DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 21


@dataclass(frozen=True)
class Timing:
    """One timed kernel: median and inter-quartile range in milliseconds, plus the raw samples."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    number: int  # calls per sample; each sample is the per-call mean of `number` calls
    warmup: int
    samples_ms: tuple[float, ...] = field(repr=False, default=())

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, number: int, warmup: int) -> Timing:
        a = np.asarray(samples_ms, dtype=np.float64)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        return cls(float(med), float(q3 - q1), float(a.mean()), float(a.min()), len(a), number, warmup,
                   tuple(round(float(x), 6) for x in a))

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "mean_ms": self.mean_ms, "min_ms": self.min_ms,
                "repeats": self.repeats, "number": self.number, "warmup": self.warmup,
                "samples_ms": list(self.samples_ms)}


@contextlib.contextmanager
def threads_pinned(n: int) -> Iterator[None]:
    """Pin torch's intra-op thread count for the duration (restored after)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    """The collector off while timing. Only the young generations are collected first: a full
    collection walks every object torch and pandas allocated (~0.2 s on 2 cores), which was 74 % of
    a profile's time at one call per kernel (py-spy, a 197-kernel profile), and with the collector
    off no collection can land inside a sample either way."""
    was = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_callable(fn: Callable[[], Any], *, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                  min_sample_ms: float = 1.0, max_number: int = 1000, cuda: bool = False) -> Timing:
    """Time `fn()` (which must do all its work synchronously, or on CUDA's current stream when `cuda`)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and repeats={repeats} >= 1")
    if cuda:
        return _time_cuda(fn, warmup=warmup, repeats=repeats, min_sample_ms=min_sample_ms, max_number=max_number)
    with _gc_off():
        for _ in range(warmup):
            fn()
        # calibrate: how many calls make one sample last at least min_sample_ms
        t0 = time.perf_counter()
        fn()
        one = max((time.perf_counter() - t0) * 1e3, 1e-4)
        number = int(min(max_number, max(1, np.ceil(min_sample_ms / one))))
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) * 1e3 / number)
    return Timing.from_samples(samples, number=number, warmup=warmup)


def _time_cuda(fn: Callable[[], Any], *, warmup: int, repeats: int, min_sample_ms: float, max_number: int) -> Timing:
    import torch

    with _gc_off():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        number = int(min(max_number, max(1, np.ceil(min_sample_ms / max(start.elapsed_time(end), 1e-4)))))
        samples = []
        for _ in range(repeats):
            start.record()
            for _ in range(number):
                fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / number)
    return Timing.from_samples(samples, number=number, warmup=warmup)


# ---- torch ---------------------------------------------------------------------------------------
def _prepare_module(module: Any, device: Device) -> Any:
    import torch

    module = module.eval()
    if device.is_gpu:
        module = module.to(device.torch_device(), dtype=device.torch_dtype())
    if device.backend == "triton":
        try:
            from hwnas import kernels
        except ImportError as e:
            raise _profile_error(f"device {device.name!r} needs hwnas.kernels: {e}") from e
        convert = getattr(kernels, "to_triton", None)
        if convert is None:
            raise _profile_error("hwnas.kernels has no `to_triton(module)` converter yet; use device 'cuda'")
        module = convert(module)
    del torch
    return module


def _profile_error(msg: str) -> Exception:
    from hwnas.errors import ProfileError

    return ProfileError(msg)


def measure_module(module: Any, device: Device, input_shape: tuple[int, ...], *, warmup: int = DEFAULT_WARMUP,
                   repeats: int = DEFAULT_REPEATS, min_sample_ms: float = 1.0) -> Timing:
    """Time `module(x)` for one pre-allocated input of `input_shape` (batch dimension included)."""
    import torch

    if device.backend == "onnxruntime":
        return measure_onnx(onnx_bytes(module, input_shape), device, input_shape, warmup=warmup, repeats=repeats,
                            min_sample_ms=min_sample_ms)
    module = _prepare_module(module, device)
    x = torch.randn(*input_shape, device=device.torch_device(), dtype=device.torch_dtype())
    with threads_pinned(device.threads), torch.inference_mode():
        return time_callable(lambda: module(x), warmup=warmup, repeats=repeats, min_sample_ms=min_sample_ms,
                             cuda=device.is_gpu)


# ---- onnxruntime ---------------------------------------------------------------------------------
def onnx_bytes(module: Any, input_shape: tuple[int, ...], *, opset: int = 17) -> bytes:
    """Export `module` (eval mode, fixed input shape) to an in-memory ONNX model."""
    import warnings

    import torch

    module = module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*input_shape),), buf, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"])
    return buf.getvalue()


def ort_session(model: bytes | str | Path, device: Device) -> Any:
    """An onnxruntime CPU session with intra-op threads pinned to the device's and full graph optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = device.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def measure_onnx(model: bytes | str | Path, device: Device, input_shape: tuple[int, ...], *,
                 warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS, min_sample_ms: float = 1.0) -> Timing:
    """Time an ONNX model in onnxruntime on the CPU with the device's thread count."""
    sess = ort_session(model, device)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    feed = {name: x}
    return time_callable(lambda: sess.run(None, feed), warmup=warmup, repeats=repeats, min_sample_ms=min_sample_ms)


# ---- one entry point -------------------------------------------------------------------------------
def measure(target: Any, device: Device | str, *, space: Any = None, arch: Any = None, resolution: int | None = None,
            warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS, min_sample_ms: float = 1.0) -> Timing:
    """Time a block, a whole network, an arch, or an exported checkpoint on `device`.

    `target` may be: an `nn.Module` (a block or a `StaticNet`; give `resolution` and, for blocks,
    the input channels through `space`... or simply pass a StaticNet), an `Arch`/arch string with
    `space` (a fresh static net is built), or a checkpoint directory written by `hwnas.supernet.export`
    (its `model.onnx` is used on onnxruntime, the weights otherwise).
    """
    import torch
    from torch import nn

    device = Device.from_name(device) if isinstance(device, str) else device
    device.check_available()
    kw = dict(warmup=warmup, repeats=repeats, min_sample_ms=min_sample_ms)
    if isinstance(target, (str, Path)) and Path(target).is_dir():
        from hwnas.supernet import load_subnet
        from hwnas.supernet.checkpoint import read_info

        ckpt = Path(target)
        info = read_info(ckpt)
        net = load_subnet(ckpt)
        res = resolution or (int(info["input_shape"][-1]) if "input_shape" in info else net.resolution)
        shape = (device.batch_size, _in_channels(net), res, res)
        if device.backend == "onnxruntime" and (ckpt / "model.onnx").is_file():
            return measure_onnx(ckpt / "model.onnx", device, shape, **kw)
        return measure_module(net, device, shape, **kw)
    if not isinstance(target, nn.Module):
        if space is None:
            raise ValueError("measuring an arch needs `space`")
        from hwnas.supernet import build_static

        arch = space.parse(target)
        target, resolution = build_static(space, arch), arch.resolution
    if resolution is None:
        resolution = getattr(target, "resolution", None)
    if resolution is None:
        raise ValueError("give `resolution` to time a module that does not carry one")
    shape = (device.batch_size, _in_channels(target), int(resolution), int(resolution))
    del torch
    return measure_module(target, device, shape, **kw)


def _in_channels(module: Any) -> int:
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ValueError("cannot infer the input channels of a module without Conv2d/Linear layers")
