"""Stage 4, search: a multi-objective Optuna study (sqlite in the run directory, or the configured
storage; Ray Tune trials with `ray_address`) of the `predictors` objective provider under the budgets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.pipeline._stages import config_hash
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.profile import latency_predictors

__all__ = ["stage_search", "search_objective", "study_storage"]


def search_objective(space: Any, run_dir: Path, devices: Sequence[str]) -> Any:
    """The objective the run searches: the `predictors` provider (hwnas.searchers) over the accuracy
    predictor and each device's latency, energy and the memory model fitted in `run_dir`."""
    from hwnas.estimators import EnergyPredictor, MemoryModel
    from hwnas.estimators.accuracy import load_accuracy_predictor
    from hwnas.searchers import make_objective

    lat = latency_predictors(run_dir, devices)
    acc = load_accuracy_predictor(run_dir / "accuracy_predictor.json")  # any kind: the bundle's may be a GP, trees...
    energy = {d: EnergyPredictor(p) for d, p in lat.items()}
    return make_objective(space, "predictors", accuracy=acc, latency=lat, memory=MemoryModel(space, batch_size=1),
                          energy=energy)


def study_storage(run_dir: Path) -> str:
    return f"sqlite:///{run_dir / 'study.db'}"


def stage_search(ctx: RunContext) -> dict[str, Any]:
    import optuna
    from hwnas.searchers import ParetoFront, search

    cfg, space, run_dir = ctx.cfg, ctx.space, ctx.run_dir
    fn = search_objective(space, run_dir, cfg.devices)
    storage = cfg.storage or study_storage(run_dir)
    # A search whose settings changed starts a new study; a crashed one resumes.
    name = f"{cfg.name}-{config_hash([cfg.sampler, cfg.objectives, cfg.budgets, cfg.seed, cfg.trials])[:8]}"
    try:
        resume = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except Exception:  # noqa: BLE001 - a storage that does not exist yet holds no study
        resume = False
    study = search(space, fn, objectives=list(cfg.objectives), budgets=list(cfg.budgets), n_trials=cfg.trials,
                   sampler=cfg.sampler, seed=cfg.seed, storage=storage, study_name=name, resume=resume,
                   runner="ray" if cfg.ray_address else "optuna", ray_address=cfg.ray_address, workers=cfg.workers,
                   warm_start=[space.min_arch(), space.max_arch()], progress=ctx.progress)
    study.set_user_attr("supernet", str(ctx.supernet_dir))
    study.set_user_attr("run_dir", str(run_dir))
    front = ParetoFront.from_study(study)
    n_front = int(front.front_mask().sum())
    return {"study": name, "storage": storage, "trials": len(front), "front_size": n_front,
            "feasible": int(front.feasible().sum())}
