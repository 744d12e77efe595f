"""Stage 2, profile: each device's lookup table and whole-network timings -> its latency predictor
(`<run>/profiles/<device>/`), checked on held-out random archs measured end to end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_text
from hwnas.pipeline._stages import say
from hwnas.pipeline.context import RunContext

__all__ = ["stage_profile", "latency_predictors"]


def stage_profile(ctx: RunContext) -> dict[str, Any]:
    import pandas as pd
    from hwnas.estimators import Device, build_predictors, measure
    from hwnas.estimators.latency import spearman, within

    cfg, space = ctx.cfg, ctx.space
    out: dict[str, Any] = {}
    rng_archs = space.sample_many(cfg.validate_networks, cfg.seed + 999, unique=True)
    for dev_name in cfg.devices:
        dev = Device.from_name(dev_name)
        d = ctx.run_dir / "profiles" / dev.name
        t0 = time.perf_counter()
        prof, pred = build_predictors(space, dev, d, n_networks=cfg.profile_networks, progress=ctx.progress, seed=cfg.seed)
        t_prof = time.perf_counter() - t0
        # Held-out validation: archs never used to fit the correction, measured now end to end.
        val_path = d / "validation.csv"
        if val_path.is_file():
            vdf = pd.read_csv(val_path)
            meas = vdf["measured_ms"].to_numpy()
        else:
            timings = [measure(a, dev, space=space) for a in rng_archs]
            meas = np.array([t.min_ms for t in timings])  # the statistic the predictors are fitted on
            vdf = pd.DataFrame({"arch": [str(a) for a in rng_archs], "measured_ms": meas,
                                "measured_median_ms": [t.median_ms for t in timings]})
        predicted = pred.predict_many([space.parse(a) for a in vdf["arch"]])
        vdf["predicted_ms"] = predicted
        atomic_write_text(val_path, vdf.to_csv(index=False))
        out[dev.name] = {
            "fingerprint": dev.fingerprint_hash(),
            "rows": int(len(prof.table)),
            "networks": int(len(prof.networks)),
            "profile_seconds": t_prof,
            "validation_archs": len(vdf),
            "spearman": float(spearman(predicted, meas)),
            "within_10pct": float(within(predicted, meas, 0.10)),
            "median_abs_rel_err": float(np.median(np.abs(predicted - meas) / meas)),
        }
        say(f"    {dev.name}: Spearman {out[dev.name]['spearman']:.3f}, "
            f"{100 * out[dev.name]['within_10pct']:.0f}% of {len(vdf)} held-out archs within ±10%")
    return {"devices": out}


def latency_predictors(run_dir: Path, devices: Sequence[str]) -> dict[str, Any]:
    """{device: LatencyPredictor} fitted by the profile stage of the run in `run_dir`."""
    from hwnas.estimators import Device, LatencyPredictor

    out = {}
    for dev_name in devices:
        dev = Device.from_name(dev_name)
        out[dev.name] = LatencyPredictor.load(run_dir / "profiles" / dev.name / "latency_predictor.json", device=dev)
    return out
