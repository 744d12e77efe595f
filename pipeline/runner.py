"""`run`: the stages in order, each skipped when its stamp matches the config, resumable after a crash."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwnas._io import atomic_write_json
from hwnas.errors import ConfigError
from hwnas.pipeline._stages import STAGES, StageStamps, say
from hwnas.pipeline.accuracy import stage_accuracy
from hwnas.pipeline.config import DEFAULT_PROFILE_REPEATS, RunConfig
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.export import stage_export
from hwnas.pipeline.pareto import stage_pareto
from hwnas.pipeline.profile import stage_profile
from hwnas.pipeline.report import stage_report
from hwnas.pipeline.search import stage_search
from hwnas.pipeline.train import bundle_stamp, pretrained_bundle, stage_train, train_config

__all__ = ["run"]

Stage = Callable[[RunContext], dict[str, Any]]


def _steps(cfg: RunConfig, bundle: Path | None) -> list[tuple[str, dict[str, Any], Stage]]:
    """(stage, what its stamp depends on, the stage function) in the order of STAGES.

    The dependency dicts are hashed into the stamps: changing one (even renaming a key) makes every
    existing run re-run that stage and all after it."""
    trained = {"space": cfg.space, "train": train_config(cfg).to_dict(), "subset": cfg.subset}
    pretrained = None if bundle is None else {"space": cfg.space, **bundle_stamp(bundle)}
    return [
        ("train", trained if bundle is None else pretrained, stage_train),
        # repeats joins the key only when not the default, so runs made before it keep their stamps
        ("profile", {"devices": cfg.devices, "networks": cfg.profile_networks, "validate": cfg.validate_networks,
                     "seed": cfg.seed, **({"repeats": cfg.profile_repeats} if cfg.profile_repeats != DEFAULT_PROFILE_REPEATS else {})},
         stage_profile),
        ("accuracy", {"archs": cfg.accuracy_archs, "val": cfg.val_images, "calib": cfg.calib_images, "seed": cfg.seed}
         if bundle is None else pretrained, stage_accuracy),
        ("search", {"sampler": cfg.sampler, "trials": cfg.trials, "objectives": cfg.objectives, "budgets": cfg.budgets,
                    "seed": cfg.seed, "storage": cfg.storage}, stage_search),
        ("pareto", {"v": 2, "refine": cfg.refine_archs, "val": cfg.val_images, "calib": cfg.calib_images}, stage_pareto),
        # finetune_steps joins the key only when on, so runs made before it existed keep their stamps
        ("export", {"budgets": cfg.latency_budgets, "formats": cfg.export_formats,
                    **({"finetune_steps": cfg.finetune_steps} if cfg.finetune_steps else {})}, stage_export),
        ("report", {"v": 1}, stage_report),
    ]


def run(cfg: RunConfig, *, force: Sequence[str] = (), stop_after: str | None = None, progress: bool = True) -> Path:
    """Run (or resume) the whole main job; returns the run directory.

    Torch's thread count is pinned for the run and restored after it: a library call leaves the
    process as it found it."""
    from hwnas.estimators.measure import threads_pinned

    with threads_pinned(max(1, min(os.cpu_count() or 1, 8))):
        return _run(cfg, force=force, stop_after=stop_after, progress=progress)


def _run(cfg: RunConfig, *, force: Sequence[str], stop_after: str | None, progress: bool) -> Path:
    from hwnas.search_space import Space

    for s in force:
        if s not in STAGES:
            raise ConfigError(f"--force {s!r}: unknown stage; stages: {list(STAGES)}")
    if stop_after is not None and stop_after not in STAGES:
        raise ConfigError(f"--stop-after {stop_after!r}: unknown stage; stages: {list(STAGES)}")
    space = Space.preset(cfg.space)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    stamps = StageStamps(run_dir, force=force)
    bundle = pretrained_bundle(cfg)
    if bundle is None and cfg.pretrained == "auto":
        say(f"no shipped supernet bundle for space {cfg.space!r} (results/supernets/): the run trains one")
    ctx = RunContext(cfg=cfg, space=space, run_dir=run_dir, progress=progress, bundle=bundle)
    t_all = time.perf_counter()
    steps = _steps(cfg, bundle)
    assert tuple(name for name, _, _ in steps) == STAGES  # internal: the stamps' upstream order is STAGES'
    for i, (name, deps, fn) in enumerate(steps, start=1):
        key = stamps.key(name, deps)
        summary = stamps.done(name, key)
        if summary is not None:
            say(f"[{i}/{len(steps)}] {name}: up to date, skipped")
            ctx.summaries[name] = summary
            continue
        say(f"[{i}/{len(steps)}] {name} ...")
        t0 = time.perf_counter()
        summary = fn(ctx)
        dt = time.perf_counter() - t0
        summary["_seconds"] = dt
        ctx.summaries[name] = summary
        stamps.finish(name, key, summary, dt)
        say(f"[{i}/{len(steps)}] {name}: done in {dt:.1f} s")
        if stop_after == name:
            say(f"stopping after {name} as asked; run again to continue")
            return run_dir
    say(f"all stages done in {time.perf_counter() - t_all:.1f} s -> {run_dir}")
    return run_dir
