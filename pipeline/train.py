"""Stage 1, train: the once-for-all supernet of the run (`hwnas.supernet.train`) under `<run>/supernet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas.pipeline._stages import jsonable
from hwnas.pipeline.config import REPO, RunConfig
from hwnas.pipeline.context import RunContext

__all__ = ["train_config", "stage_train"]


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
    tcfg = train_config(cfg)
    res = train(tcfg, ctx.run_dir / "supernet", resume=True, progress=ctx.progress)
    report = jsonable(getattr(res, "report", {}) or {})
    return {"report": report, "epochs": tcfg.epochs, "policy": tcfg.policy, "schedule": cfg.schedule}
