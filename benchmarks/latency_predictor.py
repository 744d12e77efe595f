"""Benchmark: lookup-table latency predictor vs measured latency of held-out subnets.

For each device (torch eager CPU batch 1, onnxruntime CPU batch 1): profile the space (every
distinct block + N whole subnets for the correction, stratified over MACs and depth), fit
`LatencyPredictor`, then time M held-out random subnets end to end in the same process and compare,
with the library's one checking protocol (`hwnas.estimators.latency_check.heldout_check`: the
main job's in-run check runs the same code, only on fewer subnets). Reports the share within +-10%,
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
    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--devices", default="cpu,ort-cpu", help="comma-separated device names (default: cpu,ort-cpu)")
    ap.add_argument("--networks", type=int, default=50, help="whole subnets measured for the correction (default 50)")
    ap.add_argument("--heldout", type=int, default=200, help="held-out subnets measured for validation (default 200)")
    ap.add_argument("--repeats", type=int, default=DEFAULT_PROTOCOL.repeats,
                    help=f"timing samples per kernel (default {DEFAULT_PROTOCOL.repeats}, the main job's)")
    ap.add_argument("--min-sample-ms", type=float, default=DEFAULT_PROTOCOL.min_sample_ms,
                    help=f"minimum duration of one sample (default {DEFAULT_PROTOCOL.min_sample_ms})")
    ap.add_argument("--statistic", default="min", choices=["min", "median"],
                    help="timing statistic used by predictor and ground truth alike (default min; see docs)")
    ap.add_argument("--rounds", type=int, default=DEFAULT_PROTOCOL.rounds,
                    help="held-out nets are timed in this many interleaved passes (shared-machine drift; "
                         f"default {DEFAULT_PROTOCOL.rounds})")
    ap.add_argument("--energy", type=int, default=3,
                    help="held-out nets whose energy is measured by a hardware counter when one exists (default 3)")
    ap.add_argument("--work-dir", default="results/runs/bench-latency", help="where profiles are written")
    ap.add_argument("--out", default="results/benchmarks", help="where JSON and PNG go")
    ap.add_argument("--fresh", action="store_true", help="delete existing profiles first (time the profiling)")
    args = ap.parse_args(argv)

    from hwnas.estimators import Device, LatencyPredictor, MacsProxy, profile
    from hwnas.estimators.latency import spearman, within
    from hwnas.estimators.latency_check import CheckProtocol, heldout_archs, heldout_check
    from hwnas.search_space import Space

    space = Space.preset(args.space)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = CheckProtocol(rounds=args.rounds, repeats=args.repeats, min_sample_ms=args.min_sample_ms,
                             statistic=args.statistic)
    settings = protocol.settings()
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
        # same seed and selection as before the shared protocol: the held-out nets did not change
        held = heldout_archs(space, args.heldout, 12345, exclude=prof.networks["arch"])
        t0 = time.perf_counter()
        chk = heldout_check(pred, held, protocol=protocol, progress=True)
        meas = chk.table["measured_ms"].to_numpy(float)
        meas_med = chk.table["measured_median_ms"].to_numpy(float)
        iqr_rel = (chk.table["iqr_ms"] / chk.table["measured_median_ms"]).to_numpy(float)
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
            "protocol": protocol.to_dict(), "network_sampling": prof.meta.get("network_sampling", "uniform"),
            "median_rel_error": chk.summary["median_rel_err"],
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
