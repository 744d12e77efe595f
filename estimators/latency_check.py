"""One protocol for checking latency predictions against real timings: the held-out check of the
main job, `benchmarks/latency_predictor.py` and the exported subnets all use it.

Why one protocol: the main job's held-out check used to time each net once, back to back, with the
library's default settings (21 samples of >= 1 ms), right after profiling, while the benchmark timed
the same kind of nets in 3 interleaved passes with 61 samples of >= 0.5 ms; on the same machine the
first reported 45% / 70% within +-10% and the second 96% / 95%. A slow phase of a shared machine
(a neighbour process, frequency scaling) then lands on a few nets entirely instead of on every net a
little, and the min over one short window is not the min the predictor was fitted on.

`CheckProtocol`   how a net is timed: `rounds` interleaved passes (the nets in a fresh random order
                  each pass) of `ceil(repeats / rounds)` samples each; the statistic (the profile's,
                  "min" by default) over all the samples; `settings()` gives the matching profiling
                  settings, so the correction networks are timed with as many samples of the same length.
`network_archs`   the correction model's networks: stratified over MACs and depth (the min and max
                  subnets included), so the deep, large end the exports sit at is covered.
`heldout_archs`   uniform random held-out nets, never one the correction was fitted on.
`measure_interleaved`, `heldout_check`, `measure_exports`: the timing loop, the check's table and
                  summary, and predicted vs measured for exported subnets on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.estimators.devices import Device
from hwnas.estimators.measure import Timing, measure_module, measure_onnx, onnx_bytes

__all__ = ["CheckProtocol", "DEFAULT_PROTOCOL", "LatencyCheck", "network_archs", "heldout_archs",
           "measure_interleaved", "heldout_check", "check_summary", "measure_exports", "NETWORK_SAMPLING"]

NETWORK_SAMPLING = "stratified"  # profile.json's `network_sampling` for profiles whose networks come from here


@dataclass(frozen=True)
class CheckProtocol:
    """How nets are timed when predictions are checked (and the correction networks profiled)."""

    rounds: int = 3
    repeats: int = 61  # samples per net over all rounds (61 x >= 0.5 ms: the benchmark's reference setting)
    warmup: int = 5
    min_sample_ms: float = 0.5
    statistic: str = "min"  # must be the statistic the predictor was fitted on (the profile's)
    seed: int = 0  # the order of the nets in each pass

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= 100:
            raise ValueError(f"rounds={self.rounds} must be in 1..100")
        if self.repeats < 3:
            raise ValueError(f"repeats={self.repeats} must be >= 3 (median and IQR)")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup} must be >= 0")
        if not 0.0 < self.min_sample_ms <= 1000.0:
            raise ValueError(f"min_sample_ms={self.min_sample_ms} must be in (0, 1000]")
        if self.statistic not in ("min", "median"):
            raise ValueError(f"statistic={self.statistic!r}; allowed: min, median")

    @property
    def per_round(self) -> int:
        return max(3, math.ceil(self.repeats / self.rounds))

    def value(self, t: Timing) -> float:
        """The protocol's statistic of a timing, in ms."""
        return t.min_ms if self.statistic == "min" else t.median_ms

    def settings(self) -> Any:
        """The profiling settings that time blocks and correction networks like this protocol does."""
        from hwnas.estimators.profile import MeasureSettings

        return MeasureSettings(warmup=self.warmup, repeats=self.repeats, net_repeats=self.repeats,
                               min_sample_ms=self.min_sample_ms, statistic=self.statistic)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_PROTOCOL = CheckProtocol()


# ---- which nets ----------------------------------------------------------------------------------------
def network_archs(space: Any, n: int, seed: int, *, sampling: str = NETWORK_SAMPLING) -> list[Any]:
    """The `n` whole networks a profile times for the correction model.

    "stratified": spread over log-MACs bins and depths, min and max subnets included (uniform
    sampling concentrates on mid-depth nets: in the reference run's 50 the largest had 9.6 MMACs of
    the space's 17.9, and an export at 10.2 MMACs was predicted 22% too fast). "uniform": the old
    selection, kept for profiles that recorded it. Spaces too small to stratify fall back to uniform."""
    if sampling not in ("stratified", "uniform"):
        raise ValueError(f"sampling={sampling!r}; allowed: stratified, uniform")
    if n <= 0:
        return []
    if sampling == "stratified" and n >= 2:
        from hwnas.estimators.accuracy import stratified_archs

        try:
            return stratified_archs(space, n, seed, bins=min(10, n))
        except ValueError:  # a space with fewer distinct candidates than asked for
            pass
    return space.sample_many(n, rng=seed, unique=True)


def heldout_archs(space: Any, n: int, seed: int, exclude: Iterable[Any] = ()) -> list[Any]:
    """`n` distinct uniform random archs, none of them in `exclude` (archs or arch strings)."""
    if n < 1:
        raise ValueError(f"n={n} held-out archs must be >= 1")
    seen = {str(a) for a in exclude}
    pool = space.sample_many(min(space.size(), 2 * n + len(seen)), rng=seed, unique=True)
    out = [a for a in pool if str(a) not in seen][:n]
    if len(out) < n:
        raise ValueError(f"space {space.name!r} has only {len(out)} archs outside the {len(seen)} excluded; "
                         f"ask for fewer than {n}")
    return out


# ---- the timing loop ------------------------------------------------------------------------------------
def _job(target: Any, device: Device, space: Any) -> Callable[..., Timing]:
    """Prepare one net once (built, exported to ONNX once on onnxruntime); return `time(**kw) -> Timing`.

    `target`: an arch (or arch string, with `space`), an `nn.Module` carrying `.resolution`, a
    `(module, resolution)` pair, or a checkpoint directory (its `model.onnx` on onnxruntime)."""
    from hwnas.estimators.measure import _in_channels
    from torch import nn

    model: Any = None
    if isinstance(target, (str, Path)) and Path(target).is_dir():
        from hwnas.supernet import load_subnet
        from hwnas.supernet.checkpoint import read_info

        info = read_info(target)
        net = load_subnet(target)
        res = int(info["input_shape"][-1]) if "input_shape" in info else int(net.resolution)
        if device.backend == "onnxruntime" and (Path(target) / "model.onnx").is_file():
            model = Path(target) / "model.onnx"
    elif isinstance(target, tuple):
        net, res = target[0], int(target[1])
    elif isinstance(target, nn.Module):
        net, res = target, int(target.resolution)
    else:
        if space is None:
            raise ValueError("timing an arch needs `space`")
        from hwnas.supernet import build_static

        arch = space.parse(target)
        net, res = build_static(space, arch), arch.resolution
    shape = (device.batch_size, _in_channels(net), res, res)
    if device.backend == "onnxruntime":
        model = model if model is not None else onnx_bytes(net, shape)  # once, not once per pass
        return lambda **kw: measure_onnx(model, device, shape, **kw)
    net = net.eval()
    return lambda **kw: measure_module(net, device, shape, **kw)


def _interleaved(jobs: Sequence[Callable[..., Timing]], protocol: CheckProtocol, *, progress: bool, desc: str,
                 on_timing: Callable[[int, int, Timing], None] | None) -> list[Timing]:
    """`protocol.rounds` passes over `jobs`, each in a fresh random order; samples pooled per job."""
    rng = np.random.default_rng(protocol.seed)
    samples: list[list[float]] = [[] for _ in jobs]
    number = [1] * len(jobs)
    kw = {"warmup": protocol.warmup, "repeats": protocol.per_round, "min_sample_ms": protocol.min_sample_ms}
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs) * protocol.rounds, desc=desc, unit="net", dynamic_ncols=True)
    try:
        for r in range(protocol.rounds):
            for i in rng.permutation(len(jobs)):
                t = jobs[int(i)](**kw)
                samples[i] += t.samples_ms
                number[i] = max(number[i], t.number)
                if on_timing is not None:
                    on_timing(r, int(i), t)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return [Timing.from_samples(s, number=k, warmup=protocol.warmup) for s, k in zip(samples, number)]


def measure_interleaved(targets: Sequence[Any], device: Device | str, *, space: Any = None,
                        protocol: CheckProtocol | None = None, progress: bool = False,
                        on_timing: Callable[[int, int, Timing], None] | None = None) -> list[Timing]:
    """Time every target on `device` with `protocol` (see `_job` for what a target may be).

    Each target's `Timing` pools its samples of all rounds (`protocol.value(t)` is the statistic).
    `on_timing(round, index, timing)` is called after each pass over one target, in timing order."""
    protocol = protocol or DEFAULT_PROTOCOL
    device = Device.from_name(device) if isinstance(device, str) else device
    device.check_available()
    jobs = [_job(t, device, space) for t in targets]
    return _interleaved(jobs, protocol, progress=progress, desc=f"check @{device.name}", on_timing=on_timing)


# ---- held-out check -------------------------------------------------------------------------------------
def check_summary(predicted: Any, measured: Any) -> dict[str, float]:
    """The figures of a check: share within +-10% / +-5%, Spearman, median absolute and signed
    relative error (the signed one says whether the predictor is biased, e.g. by a machine that
    got slower since it was profiled), the worst relative error."""
    from hwnas.estimators.latency import spearman, within

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m
    return {"n": int(len(m)), "within_10pct": within(p, m, 0.10), "within_5pct": within(p, m, 0.05),
            "spearman": float(spearman(p, m)) if len(m) > 2 else float("nan"),
            "median_abs_rel_err": float(np.median(np.abs(rel))), "median_rel_err": float(np.median(rel)),
            "max_abs_rel_err": float(np.max(np.abs(rel)))}


@dataclass
class LatencyCheck:
    """A held-out check: one row per arch (`table`, a DataFrame) and its figures (`summary`)."""

    table: Any
    summary: dict[str, Any] = field(default_factory=dict)


def heldout_check(predictor: Any, archs: Sequence[Any], *, protocol: CheckProtocol | None = None,
                  anchors: Sequence[tuple[Any, float]] = (), progress: bool = False,
                  on_timing: Callable[[int, int, Timing], None] | None = None) -> LatencyCheck:
    """Time `archs` on the predictor's device with `protocol` and compare with its predictions.

    `anchors`: (arch, ms at profiling time) of some correction networks, timed in the same passes;
    `summary["drift"]` is the median of now / then over them: ~1 when the machine runs as it did
    while profiling, 1.1 when it is 10% slower now (then no predictor fitted earlier can be within
    +-10%, and the check says so instead of only failing)."""
    import pandas as pd
    from hwnas.estimators.flops import arch_macs_many

    protocol = protocol or DEFAULT_PROTOCOL
    space = predictor.space
    archs = [space.parse(a) for a in archs]
    anchor_archs = [space.parse(a) for a, _ in anchors]
    timings = measure_interleaved(archs + anchor_archs, predictor.device, space=space, protocol=protocol,
                                  progress=progress, on_timing=on_timing)
    held, anc = timings[: len(archs)], timings[len(archs):]
    meas = np.array([protocol.value(t) for t in held])
    pred = predictor.predict_many(archs)
    table = pd.DataFrame({
        "arch": [str(a) for a in archs], "num_blocks": [a.num_blocks for a in archs],
        "macs": arch_macs_many(space, archs).astype(np.int64),
        "measured_ms": meas, "measured_min_ms": [t.min_ms for t in held],
        "measured_median_ms": [t.median_ms for t in held], "iqr_ms": [t.iqr_ms for t in held],
        "samples": [t.repeats for t in held], "predicted_ms": pred, "rel_error": (pred - meas) / meas,
        "statistic": protocol.statistic, "rounds": protocol.rounds, "repeats": protocol.repeats,
    })
    summary: dict[str, Any] = {**check_summary(pred, meas), "statistic": protocol.statistic,
                               "protocol": protocol.to_dict(), "device": predictor.device.name}
    if anchors:
        ratios = [protocol.value(t) / float(ms) for t, (_, ms) in zip(anc, anchors)]
        summary.update({"drift": float(np.median(ratios)), "drift_anchors": len(ratios)})
    return LatencyCheck(table, summary)


# ---- exported subnets -------------------------------------------------------------------------------------
def measure_exports(nets: Sequence[Any], devices: Sequence[Device | str], *, predictors: Mapping[str, Any] | None = None,
                    space: Any = None, protocol: CheckProtocol | None = None, progress: bool = False,
                    on_timing: Callable[[int, int, Timing], None] | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured latency of exported static subnets on every device, one protocol.

    `nets`: checkpoint directories (written by `hwnas.supernet.export`; `model.onnx` is what runs on
    onnxruntime), or `(static module, arch)` pairs, or archs (built fresh, with `space`). All (net,
    device) pairs are timed in the same interleaved passes. `predictors`: {device name:
    LatencyPredictor}; without one for a device its predicted value and error are None.

    Returns, per net: {"arch": str, "devices": {device: {"predicted_ms", "measured_ms",
    "measured_min_ms", "measured_median_ms", "rel_error", "within_10pct"}}}."""
    protocol = protocol or DEFAULT_PROTOCOL
    predictors = dict(predictors or {})
    devs = [Device.from_name(d) if isinstance(d, str) else d for d in devices]
    for d in devs:
        d.check_available()
    archs, targets = [], []
    for n in nets:
        if isinstance(n, (str, Path)) and Path(n).is_dir():
            from hwnas.supernet.checkpoint import read_info

            archs.append(str(read_info(n)["arch"]))
            targets.append(n)
        elif isinstance(n, tuple):
            module, arch = n
            arch = space.parse(arch) if space is not None else arch
            archs.append(str(arch))
            targets.append((module, int(getattr(arch, "resolution", None) or module.resolution)))
        else:
            if space is None:
                raise ValueError("timing an arch needs `space`")
            archs.append(str(space.parse(n)))
            targets.append(n)
    jobs = [_job(t, d, space) for t in targets for d in devs]
    timings = _interleaved(jobs, protocol, progress=progress, desc="exports", on_timing=on_timing)
    out: list[dict[str, Any]] = []
    for i, arch in enumerate(archs):
        per: dict[str, Any] = {}
        for j, d in enumerate(devs):
            t = timings[i * len(devs) + j]
            m = protocol.value(t)
            p = predictors.get(d.name)
            pv = float(p.predict(arch)) if p is not None else None
            rel = None if pv is None else (pv - m) / m
            per[d.name] = {"predicted_ms": pv, "measured_ms": m, "measured_min_ms": t.min_ms,
                           "measured_median_ms": t.median_ms, "rel_error": rel,
                           "within_10pct": None if rel is None else bool(abs(rel) <= 0.10)}
        out.append({"arch": arch, "devices": per})
    return out
