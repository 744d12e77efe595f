"""Stage 1, train: the run's once-for-all supernet.

Train once, specialise many times: by default (`train.pretrained: auto`) the run takes the shipped
bundle of its space (`results/supernets/<space>/`, hash-verified) and trains nothing; the accuracy
stage then takes the bundle's pairs and predictor too. `hwnas run --retrain` (or
`train.pretrained: null`) trains a supernet under `<run>/supernet` (`hwnas.supernet.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas.pipeline._stages import jsonable
from hwnas.pipeline.config import REPO, RunConfig
from hwnas.pipeline.context import RunContext

__all__ = ["train_config", "stage_train", "pretrained_bundle", "bundle_stamp"]


def pretrained_bundle(cfg: RunConfig) -> Path | None:
    """The bundle folder the run uses instead of training, or None to train.

    `auto` takes the shipped bundle named after the run's space when there is one; a name or folder
    must be a bundle (CheckpointError otherwise); None trains."""
    from hwnas.supernet.checkpoint import BUNDLE_ROOT, bundle_names, resolve_supernet

    if cfg.pretrained is None:
        return None
    if cfg.pretrained == "auto":
        return BUNDLE_ROOT / cfg.space if cfg.space in bundle_names() else None
    p = Path(cfg.pretrained)
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        p = REPO / p  # a config's relative path resolves against the repository root, like train.config
    return resolve_supernet(p if p.exists() else cfg.pretrained)


def bundle_stamp(path: Path) -> dict[str, Any]:
    """What a run's stages depend on when they come from a bundle: its folder and the SHA-256 its
    manifest gives the weights and the pairs (a re-made bundle re-runs the stages after it)."""
    from hwnas._io import read_json

    files = (read_json(path / "supernet.json") or {}).get("files") or {}
    return {"bundle": str(path), "sha256": {k: files.get(k) for k in ("supernet.safetensors", "accuracy_pairs.csv")}}


def train_config(cfg: RunConfig) -> Any:
    """The run's `TrainConfig`: its train YAML and schedule, with the run's space, seed, data and
    policy laid over the YAML's overrides."""
    from hwnas.supernet import load_config

    path = Path(cfg.train_config)
    path = path if path.is_absolute() else REPO / path
    over = dict(cfg.train_overrides)
    over.setdefault("space", cfg.space)
    over.setdefault("seed", cfg.seed)
    over.setdefault("dataset", cfg.dataset)
    if cfg.subset is not None:
        over["subset"] = cfg.subset
    if cfg.data_dir:
        over["data_dir"] = str(cfg.data_dir)
    if cfg.policy:
        over["policy"] = cfg.policy
    return load_config(path, schedule=cfg.schedule, overrides=over)


def stage_train(ctx: RunContext) -> dict[str, Any]:
    from hwnas.supernet import train

    cfg = ctx.cfg
    if ctx.bundle is not None:
        return _stage_from_bundle(ctx)
    tcfg = train_config(cfg)
    res = train(tcfg, ctx.run_dir / "supernet", resume=True, progress=ctx.progress)
    report = jsonable(getattr(res, "report", {}) or {})
    return {"report": report, "epochs": tcfg.epochs, "policy": tcfg.policy, "schedule": cfg.schedule}


def _stage_from_bundle(ctx: RunContext) -> dict[str, Any]:
    """Verify the bundle (every file against its SHA-256, and its space against the run's) and
    record where the supernet came from; nothing is trained or copied."""
    from hwnas.pipeline._stages import say

    b = ctx.pretrained()
    m = b.manifest
    tc = m.get("config") or {}
    say(f"    supernet: the shipped bundle {b.path} (SHA-256 of its {len(m.get('files') or {})} files verified; "
        f"trained with policy {tc.get('policy')!r}, schedule {tc.get('schedule')!r}, commit "
        f"{str(m.get('commit'))[:10]}); nothing trained. hwnas run --retrain trains one instead")
    return {"pretrained": str(b.path), "sha256": (m.get("files") or {}).get("supernet.safetensors"),
            "commit": m.get("commit"), "policy": tc.get("policy"), "schedule": tc.get("schedule"),
            "epochs": tc.get("epochs"), "fixed_subnets": jsonable(m.get("fixed_subnets") or {}),
            "accuracy": jsonable(m.get("accuracy") or {}), "report": jsonable(m.get("train_report") or {})}
