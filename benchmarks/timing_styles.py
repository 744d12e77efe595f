"""Diagnostic: do the profile and the held-out check time the same net alike?

The profile times each correction network right after building it (and, on onnxruntime, right
after exporting it to ONNX), in one session of `repeats` samples; the held-out check exports every
net first and then times them in `rounds` interleaved passes, a fresh session each pass, pooling
the samples. If the two styles disagreed, a predictor fitted on profile timings would be biased
against the check (and the exports). Per device, on the same nets, in one process:

- `profile`: the profile's style (build / export just before, one session, `repeats` samples);
- `profile_again`: the same, run last (how much the machine moved during the benchmark);
- `prebuilt`: one session of `repeats` samples, nets built / exported beforehand;
- `check`: the check's style (`latency_check.measure_interleaved`, the default protocol);
- `sessions`: three separate one-session timings of each net (max / min: session-to-session spread).

Each style's per-net statistic (min, the predictors' statistic) is divided by the check's; the
JSON gives the median and range of those ratios. Numbers mean something only on a quiet machine.

    .venv/bin/python benchmarks/timing_styles.py                 # fmnist-mbv3, cpu + ort-cpu, 16 nets
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _prepare(space: Any, arch: Any, device: Any) -> Any:
    """Build `arch` (and export it to ONNX on onnxruntime) now; return `time(**kw) -> Timing`."""
    from hwnas.estimators.measure import measure_module, measure_onnx, onnx_bytes
    from hwnas.supernet import build_static

    net = build_static(space, arch).eval()
    shape = (device.batch_size, space.in_channels, arch.resolution, arch.resolution)
    if device.backend == "onnxruntime":
        model = onnx_bytes(net, shape)
        return lambda **kw: measure_onnx(model, device, shape, **kw)
    return lambda **kw: measure_module(net, device, shape, **kw)


def _one_session(job: Any, protocol: Any) -> float:
    return job(warmup=protocol.warmup, repeats=protocol.repeats, min_sample_ms=protocol.min_sample_ms).min_ms


def styles(space: Any, device: Any, n: int, seed: int) -> dict[str, Any]:
    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL, measure_interleaved, network_archs

    p = DEFAULT_PROTOCOL
    archs = network_archs(space, n, seed)
    profile = np.array([_one_session(_prepare(space, a, device), p) for a in archs])  # built / exported just before
    jobs = [_prepare(space, a, device) for a in archs]
    prebuilt = np.array([_one_session(j, p) for j in jobs])
    check = np.array([t.min_ms for t in measure_interleaved(archs, device, space=space, protocol=p)])
    sessions = np.array([[_one_session(j, p) for _ in range(3)] for j in jobs])
    again = np.array([_one_session(_prepare(space, a, device), p) for a in archs])

    def ratio(x: np.ndarray) -> dict[str, float]:
        r = x / check
        return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}

    spread = sessions.max(1) / sessions.min(1)
    return {"nets": n, "check_ms": {"min": float(check.min()), "max": float(check.max())},
            "profile_over_check": ratio(profile), "prebuilt_over_check": ratio(prebuilt),
            "profile_again_over_check": ratio(again),
            "session_spread": {"median": float(np.median(spread)), "max": float(spread.max())},
            "protocol": p.to_dict()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--devices", default="cpu,ort-cpu", help="comma-separated device names (default: cpu,ort-cpu)")
    ap.add_argument("--nets", type=int, default=16, help="networks timed in each style (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "results/benchmarks/timing_styles.json")
    args = ap.parse_args(argv)
    if not 2 <= args.nets <= 1000:
        ap.error(f"--nets {args.nets}: choose 2..1000")

    import torch
    from hwnas._io import atomic_write_json
    from hwnas.estimators import Device
    from hwnas.search_space import Space

    torch.set_num_threads(2)  # as the main job's runner pins it on 2 cores
    space = Space.preset(args.space)
    doc: dict[str, Any] = {"benchmark": "timing_styles", "space": space.name, "machine": platform.processor()
                           or platform.machine(), "devices": {}}
    t0 = time.perf_counter()
    for name in args.devices.split(","):
        dev = Device.from_name(name.strip())
        r = styles(space, dev, args.nets, args.seed)
        doc["devices"][dev.name] = r
        print(f"{dev.name}: profile/check {r['profile_over_check']['median']:.3f}, prebuilt/check "
              f"{r['prebuilt_over_check']['median']:.3f}, profile again/check {r['profile_again_over_check']['median']:.3f}, "
              f"session spread {r['session_spread']['median']:.3f} (max {r['session_spread']['max']:.3f})", flush=True)
    doc["seconds"] = time.perf_counter() - t0
    doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
