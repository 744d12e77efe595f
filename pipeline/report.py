"""Stage 7, report: `report.md` (machine, stage times, training, profiles, accuracy predictor, search,
re-measured front, exported subnets predicted vs measured), `exported.csv` and
`predicted_vs_measured.png`."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

from hwnas._io import atomic_write_text
from hwnas.pipeline._stages import STAGES
from hwnas.pipeline.config import RunConfig
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.plots import plot_predicted_vs_measured

__all__ = ["stage_report", "report_markdown"]


def stage_report(ctx: RunContext) -> dict[str, Any]:
    import pandas as pd

    cfg, run_dir, S = ctx.cfg, ctx.run_dir, ctx.summaries
    exported = S["export"]["exported"]
    plot_predicted_vs_measured(cfg, run_dir, exported, run_dir / "predicted_vs_measured.png")
    rows = []
    for e in exported:
        r = {"budget": e["title"], "arch": e["arch"].replace("|", "\\|"), "acc val (search)": 100 * e["predicted"]["accuracy"],
             "acc test (measured)": 100 * e["measured"]["accuracy"]}
        for d in cfg.devices:
            pred, meas = e["predicted"][f"latency_ms@{d}"], e["measured"][f"latency_ms@{d}"]
            r[f"{d} ms pred"] = pred
            r[f"{d} ms meas"] = meas
            r[f"{d} err %"] = 100 * (pred - meas) / meas
            drift = e.get("latency_drift", {}).get(d)
            if drift is not None:  # the machine's speed vs profiling time (profile networks re-timed beside it)
                r[f"{d} machine drift %"] = 100 * (drift - 1)
        r["peak mem MB"] = e["peak_mem_mb"]
        r["params"] = e["params"]
        r["MMACs"] = e["macs"] / 1e6
        rows.append(r)
    table = pd.DataFrame(rows)
    atomic_write_text(run_dir / "exported.csv", table.assign(arch=[e["arch"] for e in exported]).to_csv(index=False))
    text = report_markdown(cfg, S, table)
    atomic_write_text(run_dir / "report.md", text)
    return {"report": str(run_dir / "report.md")}


def _machine() -> dict[str, Any]:
    import torch
    from hwnas.estimators.devices import cpu_model
    from hwnas.supernet.checkpoint import versions

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "os": platform.platform(),
            "versions": versions()}


def report_markdown(cfg: RunConfig, S: dict[str, dict[str, Any]], table: Any) -> str:
    """The text of report.md from the config, the stages' summaries and the exported-subnets table."""
    m = _machine()
    t = S["train"].get("report", {})
    prof = S["profile"]["devices"]
    acc = S["accuracy"]
    sea = S["search"]
    par = S["pareto"]
    lines = [
        f"# hwnas run `{cfg.name}`",
        "",
        f"Command: `hwnas run --config <config>` (resolved config: `config.json`). Space `{cfg.space}`, "
        f"devices {', '.join(f'`{d}`' for d in cfg.devices)}, seed {cfg.seed}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['versions'].get('torch')}, "
        f"onnxruntime {m['versions'].get('onnxruntime')}, {m['os']}.",
        "",
        "## Stage times (this invocation; a skipped stage shows its original time)",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    for s in STAGES[:-1]:
        lines.append(f"| {s} | {S.get(s, {}).get('_seconds', 0.0):.1f} |")
    lines += [
        "",
        "## 1. Supernet training",
        "",
        _training_lines(S["train"]),
        "",
        "```json",
        json.dumps(t or S["train"].get("fixed_subnets", {}), indent=1)[:3000],
        "```",
        "",
        "## 2. Device profiles and latency predictors",
        "",
        "Held-out check: random archs never used to fit the predictor, measured end to end in this run "
        "(`profiles/<device>/validation.csv`).",
        "",
        "| device | LUT rows | profiling s | held-out archs | Spearman | within ±10% | median abs rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, p in prof.items():
        lines.append(f"| {d} | {p['rows']} | {p['profile_seconds']:.0f} | {p['validation_archs']} | {p['spearman']:.3f} | "
                     f"{100 * p['within_10pct']:.0f}% | {100 * p['median_abs_rel_err']:.1f}% |")
    lines += [
        "",
        "## 3. Accuracy predictor",
        "",
        f"{acc['pairs']} (arch, accuracy) pairs from the supernet, each BN-recalibrated on {cfg.calib_images} training "
        f"images and scored on {acc['val_images']} images of the held-out search-val split "
        f"(range {100 * acc['min_acc']:.2f}..{100 * acc['max_acc']:.2f}%). Predictor report: `{acc['predictor']}`.",
        "",
        "## 4. Search",
        "",
        f"Optuna `{cfg.sampler}`, {sea['trials']} trials ({sea['feasible']} feasible), objectives "
        f"{', '.join(f'`{o}`' for o in cfg.objectives)}, budgets {', '.join(f'`{b}`' for b in cfg.budgets) or 'none'}. "
        f"Study `{sea['study']}` in `study.db` (every trial: `trials.csv`); its predicted front has {sea['front_size']} members.",
        "",
        f"**Re-measured front.** {par['candidates']} candidates: "
        f"up to {cfg.refine_archs} distinct archs of the search by Pareto rank (the predicted front first; a rank that "
        f"does not fit is spread over `latency_ms@{cfg.primary_device}`; {par['remeasured']} newly measured), plus the "
        f"{acc['pairs']} accuracy pairs; each scored on the search-val split through the supernet after BN "
        "recalibration, as the pairs were. Spearman of predicted vs measured accuracy over the re-measured search "
        f"archs: {par['predicted_front_spearman']:.2f}. The final front (`pareto.csv`, "
        f"{par['front_size']} members) uses the measured search-val accuracy and the predicted latency, memory and energy "
        "(`candidates.csv`: every candidate, both accuracies). The study stores these candidates too: "
        f"`hwnas pareto --storage {_storage_arg(sea)}` lists this front (`accuracy_measured` beside "
        "`accuracy_predicted`, one row per arch with all its trial numbers; `--predicted`: the trials' own values), "
        f"and `hwnas export --storage {_storage_arg(sea)} --pick \"latency_ms@{cfg.primary_device}<=B\" --out DIR` "
        "picks by measured accuracy, as this run did for its budgets below.",
        "",
        "![pareto](pareto.png)",
        "",
        "## 5. Exported subnets (predicted vs measured)",
        "",
        "Picked as the most accurate front member under each latency budget on "
        f"`{cfg.primary_device}`; checkpoints under `exported/`. Accuracy: on search-val at search time (through the "
        "supernet), then measured on the test set after BN recalibration. Latency: predicted by the LUT predictor, measured on this machine at batch 1 "
        "(min of repeated runs over 3 interleaved rounds, the statistic the predictors are fitted on; medians are in each "
        "checkpoint's arch.json); `err %` = (predicted - measured) / measured; `machine drift %`: how much slower (+) "
        "this machine ran than when it was profiled, from 5 of the profile's networks timed in the same passes (a "
        "large drift says the error is the machine's state, not the prediction).",
        "",
        table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False),
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
        "Energy figures in `study.db` / `trials.csv` (`energy_mj@...`) are **estimated** (latency x a stated "
        "power model; no energy counter on this machine), never measured.",
        "",
    ]
    return "\n".join(lines)


def _training_lines(train: dict[str, Any]) -> str:
    """Where the supernet came from: the shipped bundle (hash-verified, nothing trained) or this run."""
    head = f"Policy `{train.get('policy')}`, schedule `{train.get('schedule')}` ({train.get('epochs')} epochs). "
    acc = "Accuracy on the Fashion-MNIST **test set** after BN recalibration"
    if train.get("pretrained"):
        return (f"**Taken from the shipped bundle** `{train['pretrained']}` (every file's SHA-256 verified; weights "
                f"`{str(train.get('sha256'))[:16]}...`, trained at commit `{str(train.get('commit'))[:10]}`); this run "
                f"trained nothing (`hwnas run --retrain` trains one). {head}{acc}, from the bundle's manifest "
                "(`supernet.json`):")
    return f"{head}{acc} (source: `supernet/report.json`):"


def _storage_arg(search_summary: dict[str, Any]) -> str:
    """The study's storage and name as command arguments (a password in a server URL is not written)."""
    from hwnas.searchers._storage import redact_url

    return f"{redact_url(str(search_summary['storage']))} --study {search_summary['study']}"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False
