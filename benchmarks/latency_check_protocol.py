"""Diagnostic: the main job's old in-run latency check vs the shared protocol, side by side in one run.

Why the in-run check (45% / 70% within +-10% on 20 held-out subnets) and benchmarks/latency_predictor.py
(96% / 95%) disagreed, measured instead of guessed. Per device, in one process:

- two profiles of the same space: "old" as the main job made it before (library default settings,
  21 samples of >= 1 ms; uniform random correction networks) and "new" (the shared protocol's
  settings; correction networks stratified over MACs and depth), each with its predictor;
- the same held-out archs (outside both correction sets), timed twice: "old" as the in-run check
  did (`measure(arch)` once per arch, back to back, min of its samples) and "new"
  (`latency_check.heldout_check`: interleaved passes, the predictor's statistic), plus anchors
  (correction networks re-timed in the same passes: how much the machine drifted since profiling);
- the 2 x 2 grid (predictor old/new x timing old/new): within +-10%, the median signed error
  (bias) and the median absolute error, overall and per MACs tercile (the deep end is where
  the exports sit), and each arch's old/new timing ratio.

Writes results/benchmarks/latency_check_protocol.json. Numbers mean something only on a quiet machine.

    .venv/bin/python benchmarks/latency_check_protocol.py                  # fmnist-mbv3, cpu + ort-cpu, 50 held out
    .venv/bin/python benchmarks/latency_check_protocol.py --quick          # a narrowed space, few nets: checks it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def _quick_space(space: Any) -> Any:
    """The space narrowed to one resolution and two kernels / expands per stage (far fewer blocks)."""
    from hwnas.search_space import Space

    d = space.to_dict()
    d["name"] = f"{space.name}-quick"
    d["resolutions"] = d["resolutions"][:1]
    for st in d["stages"]:
        st["kernels"], st["expands"] = st["kernels"][:2], st["expands"][:2]
    return Space.from_dict(d)


def _grid(pred: np.ndarray, meas: np.ndarray, macs: np.ndarray) -> dict[str, Any]:
    from hwnas.estimators.latency_check import check_summary

    out: dict[str, Any] = check_summary(pred, meas)
    cuts = np.quantile(macs, [1 / 3, 2 / 3])
    for name, k in (("macs_low", macs <= cuts[0]), ("macs_mid", (macs > cuts[0]) & (macs <= cuts[1])),
                    ("macs_high", macs > cuts[1])):
        if k.sum() >= 1:
            rel = (pred[k] - meas[k]) / meas[k]
            out[name] = {"n": int(k.sum()), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
                         "median_rel_err": float(np.median(rel))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--devices", default="cpu,ort-cpu", help="comma-separated device names (default: cpu,ort-cpu)")
    ap.add_argument("--networks", type=int, default=50, help="correction networks per profile (default 50)")
    ap.add_argument("--heldout", type=int, default=50, help="held-out subnets (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default="results/runs/bench-latency-protocol", help="where the profiles go")
    ap.add_argument("--out", default="results/benchmarks", help="where the JSON goes")
    ap.add_argument("--fresh", action="store_true", help="delete the profiles first")
    ap.add_argument("--quick", action="store_true",
                    help="narrowed space, 8 networks, 6 held out, few short samples: checks the script runs")
    args = ap.parse_args(argv)

    from hwnas.estimators import Device, LatencyPredictor, MeasureSettings, measure, profile
    from hwnas.estimators.flops import arch_macs_many
    from hwnas.estimators.latency_check import (
        DEFAULT_PROTOCOL,
        CheckProtocol,
        heldout_archs,
        heldout_check,
    )
    from hwnas.search_space import Space

    space = Space.preset(args.space)
    old_settings, protocol = MeasureSettings(), DEFAULT_PROTOCOL  # the in-run check's before / after
    old_kw: dict[str, Any] = {}  # measure()'s defaults: what the in-run check called
    work = Path(args.work_dir)
    if args.quick:
        space = _quick_space(space)
        args.networks, args.heldout = min(args.networks, 8), min(args.heldout, 6)
        old_settings = MeasureSettings(warmup=1, repeats=5, net_repeats=5, min_sample_ms=0.2)
        protocol = CheckProtocol(rounds=3, repeats=9, warmup=1, min_sample_ms=0.2)
        old_kw = {"warmup": 1, "repeats": 5, "min_sample_ms": 0.2}
        work = work.with_name(work.name + "-quick")
    report: dict[str, Any] = {
        "benchmark": "latency_check_protocol", "space": space.name, "quick": args.quick, "machine": platform.node(),
        "networks": args.networks, "heldout": args.heldout, "old_settings": old_settings.__dict__,
        "old_timing": {"call": "measure(arch, device, space=space)", **(old_kw or {"warmup": 5, "repeats": 21,
                                                                                    "min_sample_ms": 1.0})},
        "new_protocol": protocol.to_dict(), "devices": {},
    }
    for name in args.devices.split(","):
        dev = Device.from_name(name)
        d = work / dev.name
        if args.fresh and d.exists():
            shutil.rmtree(d)
        t0 = time.perf_counter()
        profs = {
            "old": profile(space, dev, d / "old", n_networks=args.networks, seed=args.seed, settings=old_settings,
                           network_sampling="uniform", progress=True),
            "new": profile(space, dev, d / "new", n_networks=args.networks, seed=args.seed,
                           settings=protocol.settings(), progress=True),
        }
        t_prof = time.perf_counter() - t0
        preds = {k: LatencyPredictor.from_profile(p) for k, p in profs.items()}
        seen = set(profs["old"].networks["arch"]) | set(profs["new"].networks["arch"])
        held = heldout_archs(space, args.heldout, args.seed + 999, exclude=seen)
        macs = arch_macs_many(space, held).astype(float)
        # old timing: one contiguous measurement per arch, back to back, right after profiling
        t0 = time.perf_counter()
        old_t = [measure(a, dev, space=space, **old_kw) for a in held]
        t_old = time.perf_counter() - t0
        meas = {"old": np.array([t.min_ms for t in old_t])}
        nets = profs["new"].networks.sort_values("min_ms")
        pick = nets.iloc[np.linspace(0, len(nets) - 1, min(5, len(nets))).round().astype(int)]
        t0 = time.perf_counter()
        chk = heldout_check(preds["new"], held, protocol=protocol, progress=True,
                            anchors=list(zip(pick["arch"], pick["min_ms"].astype(float))))
        t_new = time.perf_counter() - t0
        meas["new"] = chk.table["measured_ms"].to_numpy(float)
        grid = {f"predictor_{pk}/timing_{mk}": _grid(preds[pk].predict_many(held), meas[mk], macs)
                for pk in ("old", "new") for mk in ("old", "new")}
        fit = {k: {"train_within_10pct": p.fit_report.get("train_within_10pct"), "affine": list(p.affine),
                   "network_macs_range": [float(v) for v in np.percentile(
                       arch_macs_many(space, profs[k].network_archs()), [0, 50, 100])],
                   "network_blocks_range": [int(profs[k].networks["num_blocks"].min()),
                                            int(profs[k].networks["num_blocks"].max())]}
               for k, p in preds.items()}
        ratio = meas["new"] / meas["old"]
        r = {
            "device": dev.to_dict(), "profile_seconds": round(t_prof, 1),
            "old_timing_seconds": round(t_old, 1), "new_timing_seconds": round(t_new, 1),
            "heldout_macs_range": [float(macs.min()), float(macs.max())],
            "space_max_macs": float(arch_macs_many(space, [space.max_arch()])[0]),
            "fit": fit, "grid": grid, "drift_new_profile": chk.summary.get("drift"),
            "timing_new_over_old": {"median": float(np.median(ratio)), "p10": float(np.percentile(ratio, 10)),
                                    "p90": float(np.percentile(ratio, 90))},
            "pairs": [{"arch": str(a), "macs": float(m), "old_ms": float(o), "new_ms": float(n),
                       "pred_old_ms": float(po), "pred_new_ms": float(pn)}
                      for a, m, o, n, po, pn in zip(held, macs, meas["old"], meas["new"],
                                                    preds["old"].predict_many(held), preds["new"].predict_many(held))],
        }
        report["devices"][dev.name] = r
        for k, g in grid.items():
            print(f"{dev.name} {k}: within10={g['within_10pct']:.2f} bias={g['median_rel_err']:+.3f} "
                  f"|err|={g['median_abs_rel_err']:.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("latency_check_protocol_quick.json" if args.quick else "latency_check_protocol.json")
    path.write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
