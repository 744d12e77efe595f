"""Benchmark: lookup-table latency predictor vs measured latency of held-out subnets.

For each device (torch eager CPU batch 1, onnxruntime CPU batch 1): profile the space (every
distinct block + N whole subnets for the correction), fit `LatencyPredictor`, then time M held-out
random subnets end to end in the same process and compare. Reports the share within +-10%,
Spearman, the FLOPs-proxy baseline's Spearman, the profiling time, and predictor throughput.
Writes JSON + one scatter PNG per device under results/benchmarks/.

    .venv/bin/python benchmarks/latency_predictor.py --space fmnist-mbv3 --devices cpu,ort-cpu --heldout 200
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--devices", default="cpu,ort-cpu", help="comma-separated device names (default: cpu,ort-cpu)")
    ap.add_argument("--networks", type=int, default=50, help="whole subnets measured for the correction (default 50)")
    ap.add_argument("--heldout", type=int, default=200, help="held-out subnets measured for validation (default 200)")
    ap.add_argument("--repeats", type=int, default=31, help="timing samples per kernel (default 31)")
    ap.add_argument("--min-sample-ms", type=float, default=2.0, help="minimum duration of one sample (default 2)")
    ap.add_argument("--statistic", default="min", choices=["min", "median"],
                    help="timing statistic used by predictor and ground truth alike (default min; see docs)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="held-out nets are timed in this many interleaved passes (shared-machine drift; default 3)")
    ap.add_argument("--energy", type=int, default=3,
                    help="held-out nets whose energy is measured by a hardware counter when one exists (default 3)")
    ap.add_argument("--work-dir", default="results/runs/bench-latency", help="where profiles are written")
    ap.add_argument("--out", default="results/benchmarks", help="where JSON and PNG go")
    ap.add_argument("--fresh", action="store_true", help="delete existing profiles first (time the profiling)")
    args = ap.parse_args(argv)

    from hwnas.estimators import (
        Device,
        LatencyPredictor,
        MacsProxy,
        MeasureSettings,
        measure_module,
        measure_onnx,
        profile,
    )
    from hwnas.estimators.latency import spearman, within
    from hwnas.search_space import Space
    from hwnas.supernet import build_static

    space = Space.preset(args.space)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(repeats=args.repeats, net_repeats=args.repeats, min_sample_ms=args.min_sample_ms,
                               statistic=args.statistic)
    report = {"benchmark": "latency_predictor", "space": space.name, "networks": args.networks,
              "heldout": args.heldout, "settings": settings.__dict__, "machine": platform.node(), "devices": {}}
    for name in args.devices.split(","):
        dev = Device.from_name(name)
        work = Path(args.work_dir) / dev.name
        if args.fresh and work.exists():
            shutil.rmtree(work)
        prof = profile(space, dev, work, n_networks=args.networks, settings=settings, progress=True)
        pred = LatencyPredictor.from_profile(prof)
        flops = MacsProxy(space).fit(prof.network_archs(), prof.network_latency_ms())
        seen = set(prof.networks["arch"])
        held = [a for a in space.sample_many(args.heldout * 2, rng=12345, unique=True) if a.to_string() not in seen]
        held = held[: args.heldout]
        t0 = time.perf_counter()
        from hwnas.estimators.measure import Timing
        from tqdm.auto import tqdm

        # interleaved passes: a slow phase of the shared machine hits every net a little, not a few nets a lot
        nets = [build_static(space, a) for a in held]
        shapes = [(dev.batch_size, space.in_channels, a.resolution, a.resolution) for a in held]
        if dev.backend == "onnxruntime":  # export each net once, not once per pass
            from hwnas.estimators.measure import onnx_bytes

            nets = [onnx_bytes(n_, s_) for n_, s_ in zip(nets, shapes)]
        samples: list[list[float]] = [[] for _ in held]
        per_round = max(3, settings.net_repeats // args.rounds)
        rng = np.random.default_rng(0)
        with tqdm(total=len(held) * args.rounds, desc=f"held-out @{dev.name}", unit="net") as bar:
            for _ in range(args.rounds):
                for i in rng.permutation(len(held)):
                    kw = dict(warmup=settings.warmup, repeats=per_round, min_sample_ms=settings.min_sample_ms)
                    if dev.backend == "onnxruntime":
                        t = measure_onnx(nets[i], dev, shapes[i], **kw)
                    else:
                        t = measure_module(nets[i], dev, shapes[i], **kw)
                    samples[i] += list(t.samples_ms)
                    bar.update(1)
        timings = [Timing.from_samples(s_, number=1, warmup=settings.warmup) for s_ in samples]
        meas = [t.min_ms if args.statistic == "min" else t.median_ms for t in timings]
        meas_med = [t.median_ms for t in timings]
        iqr_rel = [t.iqr_ms / t.median_ms for t in timings]
        meas, meas_med = np.asarray(meas), np.asarray(meas_med)
        t_meas = time.perf_counter() - t0
        p = pred.predict_many(held)
        lut_only = np.array([pred.lut_sum(a) for a in held])
        pf = flops.predict_many(held)
        many = space.sample_many(20000, rng=7)
        t0 = time.perf_counter()
        pred.predict_many(many)
        rate = len(many) / (time.perf_counter() - t0)
        rel = (p - meas) / meas
        r = {
            "device": dev.to_dict(), "settings": prof.settings.__dict__, "rounds": args.rounds,
            "fingerprint": prof.fingerprint, "fingerprint_hash": prof.fingerprint_hash,
            "lut_rows": int(len(prof.table)), "profile_seconds": round(prof.seconds, 1),
            "profile_measured_now": prof.measured_now,
            "profile_note": "profile_seconds covers this run only; 0 rows measured now means it was reused",
            "heldout_measure_seconds": round(t_meas, 1),
            "within_10pct": within(p, meas), "within_5pct": within(p, meas, 0.05),
            "spearman": spearman(p, meas), "mape": float(np.mean(np.abs(rel))),
            "median_abs_rel_error": float(np.median(np.abs(rel))),
            "lut_sum_only_within_10pct": within(lut_only, meas), "lut_sum_only_spearman": spearman(lut_only, meas),
            "flops_proxy_spearman": spearman(pf, meas), "flops_proxy_within_10pct": within(pf, meas),
            "predictor": {"affine": list(pred.affine), "ridge": pred.ridge is not None, "fit": pred.fit_report},
            "predict_many_archs_per_s": round(rate),
            "measured_ms_range": [float(meas.min()), float(meas.max())],
            "statistic": args.statistic,
            "heldout_iqr_over_median_median": float(np.median(iqr_rel)),
            "median_statistic_check": _median_check(prof, held, meas_med),
            "pairs": [{"arch": a.to_string(), "measured_ms": float(m), "predicted_ms": float(q)}
                      for a, m, q in zip(held, meas, p)],
        }
        r["energy"] = _energy(space, pred, held[: args.energy])
        report["devices"][dev.name] = r
        print(f"{dev.name}: within10={r['within_10pct']:.3f} spearman={r['spearman']:.4f} "
              f"flops_spearman={r['flops_proxy_spearman']:.4f} profile={r['profile_seconds']}s rate={rate:.0f}/s")
        _plot(out / f"latency_predictor_{space.name}_{dev.name}.png", meas, p, pf, dev.name, r)
    path = out / f"latency_predictor_{space.name}.json"
    if path.exists():  # keep other devices' results when only some devices were re-run
        old = json.loads(path.read_text())
        report["devices"] = {**{k: v for k, v in old.get("devices", {}).items() if k not in report["devices"]},
                             **report["devices"]}
    path.write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", path)
    return 0


def _energy(space, pred, archs) -> dict:
    """Energy: counter-measured where the device has one (NVML/RAPL), else the labelled estimate."""
    from hwnas.estimators import EnergyPredictor

    est = EnergyPredictor(pred)
    out = {"estimated_power_w": est.power.watts, "estimated_power_source": est.power.source,
           "estimated_mj": [float(v) for v in est.predict_many(archs)]}
    cal = EnergyPredictor(pred).calibrate(space, archs, min_seconds=1.0)
    out["method"] = cal.method
    if cal.method != "estimated":
        out.update({"measured_avg_power_w": cal.power.watts, "measured_power_source": cal.power.source,
                    "calibrated_mj": [float(v) for v in cal.predict_many(archs)]})
    return out


def _median_check(prof, held, meas_med) -> dict:
    """The same evaluation with medians (predictor refit on median columns) for the record."""
    from hwnas.estimators import LatencyPredictor
    from hwnas.estimators.latency import spearman, within

    p = LatencyPredictor.from_profile(prof, statistic="median").predict_many(held)
    return {"within_10pct": within(p, meas_med), "spearman": spearman(p, meas_med)}


def _plot(path: Path, meas: np.ndarray, pred: np.ndarray, flops: np.ndarray, name: str, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
    lo, hi = meas.min() * 0.9, meas.max() * 1.1
    for a, y, title in ((ax[0], pred, f"LUT + correction: {r['within_10pct']:.0%} within ±10%, "
                         f"ρ={r['spearman']:.3f}"), (ax[1], flops, f"FLOPs proxy: ρ={r['flops_proxy_spearman']:.3f}")):
        a.scatter(meas, y, s=8, alpha=0.7)
        a.plot([lo, hi], [lo, hi], "k-", lw=1)
        a.plot([lo, hi], [lo * 1.1, hi * 1.1], "k--", lw=0.7)
        a.plot([lo, hi], [lo * 0.9, hi * 0.9], "k--", lw=0.7)
        a.set_xlabel(f"measured latency (ms, {r['statistic']} of samples)")
        a.set_ylabel("predicted latency (ms)")
        a.set_title(title, fontsize=9)
    fig.suptitle(f"{len(meas)} held-out subnets on {name} (batch 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
