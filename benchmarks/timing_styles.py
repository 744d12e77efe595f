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


def styles(space: Any, device: Any, n: int, seed: int) -> dict[str, Any]:
    from dataclasses import replace

    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL, measure_interleaved, network_archs

    p = DEFAULT_PROTOCOL
    one = replace(p, rounds=1)  # one session of all `repeats` samples per net, as the profile times
    archs = network_archs(space, n, seed)

    def profile_style() -> np.ndarray:  # each net built (and exported) just before it is timed
        return np.array([measure_interleaved([a], device, space=space, protocol=one)[0].min_ms for a in archs])

    def prebuilt() -> np.ndarray:  # every net built first, then one session each
        return np.array([t.min_ms for t in measure_interleaved(archs, device, space=space, protocol=one)])

    profile = profile_style()
    pre = prebuilt()
    check = np.array([t.min_ms for t in measure_interleaved(archs, device, space=space, protocol=p)])
    sessions = np.stack([prebuilt() for _ in range(3)], axis=1)
    again = profile_style()

    def ratio(x: np.ndarray) -> dict[str, float]:
        r = x / check
        return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}

    spread = sessions.max(1) / sessions.min(1)
    return {"nets": n, "check_ms": {"min": float(check.min()), "max": float(check.max())},
            "profile_over_check": ratio(profile), "prebuilt_over_check": ratio(pre),
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
