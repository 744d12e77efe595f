"""Stage 2, profile: each device's lookup table and whole-network timings -> its latency predictor
(`<run>/profiles/<device>/`), checked on held-out random archs timed with the library's one checking
protocol (`hwnas.estimators.latency_check`: interleaved passes, the predictor's statistic), the same
the latency benchmark and `export_latency_check` use."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_text
from hwnas.pipeline._stages import say
from hwnas.pipeline.context import RunContext

__all__ = ["stage_profile", "latency_predictors", "export_latency_check", "ANCHORS"]

ANCHORS = 5  # correction networks re-timed beside the held-out ones: the machine's drift since profiling


def stage_profile(ctx: RunContext) -> dict[str, Any]:
    from dataclasses import replace

    from hwnas.estimators import Device, build_predictors
    from hwnas.estimators.latency_check import (
        DEFAULT_PROTOCOL,
        check_summary,
        heldout_archs,
        heldout_check,
    )

    cfg, space = ctx.cfg, ctx.space
    run_protocol = replace(DEFAULT_PROTOCOL, repeats=cfg.profile_repeats)
    out: dict[str, Any] = {}
    for dev_name in cfg.devices:
        dev = Device.from_name(dev_name)
        d = ctx.run_dir / "profiles" / dev.name
        t0 = time.perf_counter()
        # blocks and correction networks timed with as many samples of the same length as the check
        prof, pred = build_predictors(space, dev, d, n_networks=cfg.profile_networks, progress=ctx.progress,
                                      seed=cfg.seed, settings=run_protocol.settings())
        t_prof = time.perf_counter() - t0
        protocol = replace(run_protocol, statistic=prof.settings.statistic)  # a resumed profile keeps its own
        held = heldout_archs(space, cfg.validate_networks, cfg.seed + 999, exclude=prof.networks["arch"])
        val_path = d / "validation.csv"
        old = _reusable(val_path, held, protocol)
        t0 = time.perf_counter()
        if old is not None:  # a resumed stage: same archs, same protocol (predictions are made anew below)
            vdf, summary = old, {}
        else:
            nets = prof.networks.sort_values(f"{prof.settings.statistic}_ms")
            pick = nets.iloc[np.linspace(0, len(nets) - 1, min(ANCHORS, len(nets))).round().astype(int)]  # fast..slow
            anchors = list(zip(pick["arch"], pick[f"{prof.settings.statistic}_ms"].astype(float)))
            chk = heldout_check(pred, held, protocol=protocol, anchors=anchors, progress=ctx.progress)
            vdf, summary = chk.table, chk.summary
        vdf["predicted_ms"] = pred.predict_many([space.parse(a) for a in vdf["arch"]])
        vdf["rel_error"] = (vdf["predicted_ms"] - vdf["measured_ms"]) / vdf["measured_ms"]
        atomic_write_text(val_path, vdf.to_csv(index=False))
        fig = check_summary(vdf["predicted_ms"], vdf["measured_ms"])
        out[dev.name] = {
            "fingerprint": dev.fingerprint_hash(),
            "rows": int(len(prof.table)),
            "networks": int(len(prof.networks)),
            "profile_seconds": t_prof,
            "check_seconds": time.perf_counter() - t0,
            "validation_archs": len(vdf),
            "statistic": protocol.statistic,
            "protocol": protocol.to_dict(),
            "spearman": fig["spearman"],
            "within_10pct": fig["within_10pct"],
            "within_5pct": fig["within_5pct"],
            "median_abs_rel_err": fig["median_abs_rel_err"],
            "median_rel_err": fig["median_rel_err"],
            **({"drift": summary["drift"]} if "drift" in summary else {}),
        }
        drift = f", machine {100 * (summary['drift'] - 1):+.0f}% vs profiling" if "drift" in summary else ""
        say(f"    {dev.name}: Spearman {fig['spearman']:.3f}, {100 * fig['within_10pct']:.0f}% of {len(vdf)} held-out "
            f"archs within ±10% (median error {100 * fig['median_rel_err']:+.1f}%{drift})")
    return {"devices": out}


def _reusable(path: Path, held: Sequence[Any], protocol: Any) -> Any:
    """validation.csv of an interrupted earlier run when it holds exactly `held`, timed by `protocol`."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        vdf = pd.read_csv(path)
    except Exception:  # pandas raises several parser error types; an unreadable file is re-measured
        return None
    need = {"arch", "measured_ms", "statistic", "rounds"}
    if not need <= set(vdf.columns) or list(vdf["arch"]) != [str(a) for a in held]:
        return None
    if set(vdf["statistic"]) != {protocol.statistic} or set(vdf["rounds"]) != {protocol.rounds}:
        return None
    if "repeats" in vdf.columns and set(vdf["repeats"]) != {protocol.repeats}:
        return None
    return vdf


def latency_predictors(run_dir: Path, devices: Sequence[str]) -> dict[str, Any]:
    """{device: LatencyPredictor} fitted by the profile stage of the run in `run_dir`."""
    from hwnas.estimators import Device, LatencyPredictor

    out = {}
    for dev_name in devices:
        dev = Device.from_name(dev_name)
        out[dev.name] = LatencyPredictor.load(run_dir / "profiles" / dev.name / "latency_predictor.json", device=dev)
    return out


def export_latency_check(run_dir: Path, devices: Sequence[str], nets: Sequence[Any], *, space: Any = None,
                         progress: bool = False, repeats: int | None = None,
                         fresh_process: bool = False, anchors: int = 0) -> list[dict[str, Any]]:
    """Predicted vs measured latency of exported subnets on every device of the run, timed with the
    held-out check's protocol (the predictor's statistic, interleaved passes over every (net, device)).

    `nets`: checkpoint directories (`<run>/exported/budget<i>/`) or `(static module, arch)` pairs
    (with `space`); `repeats`: samples per net (the run's `profile.repeats`; default the protocol's).
    `fresh_process`: time them in a new Python process (`hwnas.pipeline._time_exports`), as a user's
    deployment would run them, not in a process that has trained, searched and scored for minutes
    (see `_time_in_fresh_process`). `anchors` (with `space`): that many of the profile's correction
    networks (fastest to slowest) are timed in the same passes; per device, the median of their
    measured / profiled time is the machine's `drift` since profiling (1.3: 30 % slower now), given
    with each row beside `drift_corrected_rel_error` (the prediction scaled by the drift), so a
    slow phase of a shared machine is told apart from a wrong prediction. Returns, per net,
    `{"arch", "devices": {device: {"predicted_ms", "measured_ms", "measured_min_ms",
    "measured_median_ms", "rel_error", "within_10pct"[, "drift", "drift_corrected_rel_error"]}}}`
    (`hwnas.estimators.latency_check.measure_exports`)."""
    from dataclasses import replace

    if fresh_process:
        return _time_in_fresh_process(run_dir, devices, nets, space=space, progress=progress, repeats=repeats,
                                      anchors=anchors)

    from hwnas.estimators.latency_check import DEFAULT_PROTOCOL, measure_exports

    preds = latency_predictors(run_dir, devices)
    stats = {p.fit_report.get("statistic", "min") for p in preds.values()}  # predictors before the key: min
    if len(stats) != 1:
        raise ValueError(f"the run's predictors were fitted on different statistics {sorted(stats)}; "
                         "one export check needs one")
    protocol = replace(DEFAULT_PROTOCOL, statistic=stats.pop(), repeats=repeats or DEFAULT_PROTOCOL.repeats)
    ref = _anchor_archs(run_dir, devices, anchors, protocol.statistic) if anchors and space is not None else {}
    extra = list(next(iter(ref.values()), {}))
    rows = measure_exports([*nets, *extra], devices, predictors=preds, space=space, protocol=protocol, progress=progress)
    if not extra:
        return rows
    rows, anchor_rows = rows[:len(nets)], rows[len(nets):]
    for dev in preds:
        drift = float(np.median([r["devices"][dev]["measured_ms"] / ref[dev][a] for a, r in zip(extra, anchor_rows)]))
        for r in rows:
            m = r["devices"][dev]
            m["drift"] = drift
            m["drift_corrected_rel_error"] = (m["predicted_ms"] * drift - m["measured_ms"]) / m["measured_ms"]
    return rows


def _anchor_archs(run_dir: Path, devices: Sequence[str], n: int, statistic: str) -> dict[str, dict[str, float]]:
    """{device: {arch: profiled ms}} for `n` correction networks every device profiled, fastest to
    slowest on the first device; empty when the run's profiles hold no common networks."""
    import pandas as pd
    from hwnas.estimators import Device

    tables = {}
    for d in devices:
        name = Device.from_name(d).name
        path = run_dir / "profiles" / name / "networks.csv"
        if not path.is_file():
            return {}
        df = pd.read_csv(path)
        col = f"{statistic}_ms" if f"{statistic}_ms" in df.columns else "min_ms"
        tables[name] = dict(zip(df["arch"].astype(str), df[col].astype(float)))
    first = next(iter(tables.values()))
    common = sorted((a for a in first if all(a in t for t in tables.values())), key=first.__getitem__)
    if not common:
        return {}
    pick = [common[i] for i in sorted(set(np.linspace(0, len(common) - 1, min(n, len(common))).round().astype(int)))]
    return {name: {a: t[a] for a in pick} for name, t in tables.items()}


def _time_in_fresh_process(run_dir: Path, devices: Sequence[str], nets: Sequence[Any], *, space: Any,
                           progress: bool, repeats: int | None, anchors: int = 0) -> list[dict[str, Any]]:
    """`export_latency_check` in a child Python process: the nets travel as their arch plus their
    weights (safetensors, in a temporary folder) or as their checkpoint folder; the child rebuilds
    them and answers in JSON.

    Why: on the 2026-11-30 reference run the export stage, timing in the main job's process after
    the accuracy, search and pareto stages, put 2 of 3 exports 25-35 % over their prediction; the same
    checkpoints timed by the same protocol in a fresh process came within -5..+15 %."""
    import json
    import subprocess
    import sys
    import tempfile

    from safetensors.torch import save_file

    items: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hwnas-time-exports-") as tmp:
        for i, n in enumerate(nets):
            if isinstance(n, (str, Path)) and Path(n).is_dir():
                items.append({"checkpoint": str(Path(n).resolve())})
            elif isinstance(n, tuple):
                module, arch = n
                w = Path(tmp) / f"net{i}.safetensors"
                save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(w))
                items.append({"arch": str(arch), "weights": str(w)})
            else:
                items.append({"arch": str(n)})
        if space is None and any("checkpoint" not in it for it in items):
            raise ValueError("timing an arch needs `space`")
        spec = {"run_dir": str(Path(run_dir).resolve()), "devices": list(devices), "nets": items,
                "space": space.to_dict() if space is not None else None, "repeats": repeats, "anchors": anchors,
                "progress": bool(progress), "out": str(Path(tmp) / "timings.json")}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        # stderr is the child's own: its progress bar and, on failure, its traceback reach the user
        proc = subprocess.run([sys.executable, "-m", "hwnas.pipeline._time_exports", str(spec_path)],
                              stdout=subprocess.DEVNULL, check=False)
        out = Path(spec["out"])
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"timing {len(items)} exported subnets in a fresh process failed (exit "
                               f"{proc.returncode}); its error is printed above")
        return json.loads(out.read_text())
