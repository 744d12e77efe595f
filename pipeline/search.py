"""Stage 4, search: a multi-objective Optuna study (sqlite in the run directory, or the configured
storage; Ray Tune trials with `ray_address`) of the `predictors` objective provider under the budgets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.pipeline._stages import config_hash
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.profile import latency_predictors

__all__ = ["stage_search", "search_objective", "study_storage", "predictors_objective", "accuracy_predictor_of"]


def search_objective(space: Any, run_dir: Path, devices: Sequence[str]) -> Any:
    """The objective the run searches: the `predictors` provider (hwnas.searchers) over the accuracy
    predictor and each device's latency, energy and the memory model fitted in `run_dir`."""
    lat = latency_predictors(run_dir, devices)
    return _predictors(space, accuracy_predictor_of(run_dir, space), lat)


def predictors_objective(space: Any, supernet: str | Path, profiles: Sequence[str | Path]) -> Any:
    """What `hwnas search --supernet BUNDLE_OR_RUN --profile DIR ...` searches: the main job's
    objective (`predictors` provider) from the accuracy predictor of a bundle or a run directory and
    the latency predictor of each profile directory (`<run>/profiles/<device>/`, or what `hwnas
    profile` wrote): accuracy, latency / peak memory / energy per profiled device, MACs and params.

    A profile is used whatever machine it was measured on (a search for a phone runs on a laptop);
    its device is the one recorded in it."""
    from hwnas.errors import ConfigError
    from hwnas.estimators import LatencyPredictor

    if not profiles:
        raise ConfigError("--supernet needs at least one --profile DIR (a device's profile directory with "
                          "latency_predictor.json)")
    lat: dict[str, Any] = {}
    for d in profiles:
        f = Path(d).expanduser() / "latency_predictor.json"
        if not f.is_file():
            raise ConfigError(f"--profile {str(d)!r}: no latency_predictor.json there; give a device's profile "
                              "directory (a run's profiles/<device>/, or what `hwnas profile --out DIR` wrote)")
        pred = LatencyPredictor.load(f)
        if pred.space != space:
            raise ConfigError(f"--profile {str(d)!r} was measured on space {pred.space.name!r}, the search is over "
                              f"{space.name!r}")
        if pred.device.name in lat:
            raise ConfigError(f"--profile {str(d)!r}: device {pred.device.name!r} is profiled twice")
        lat[pred.device.name] = pred
    return _predictors(space, accuracy_predictor_of(supernet, space), lat)


def accuracy_predictor_of(supernet: str | Path, space: Any) -> Any:
    """The accuracy predictor of a run directory (`accuracy_predictor.json` in it) or of a bundle
    (a path or a shipped name, hashes verified)."""
    from hwnas.estimators.accuracy import load_accuracy_predictor

    p = Path(supernet).expanduser()
    if (p / "accuracy_predictor.json").is_file() and not (p / "supernet.json").is_file():
        return load_accuracy_predictor(p / "accuracy_predictor.json")  # a run directory
    from hwnas.estimators.bundle import load_bundle

    return load_bundle(supernet, space=space).predictor()


def _predictors(space: Any, acc: Any, lat: dict[str, Any]) -> Any:
    from hwnas.estimators import EnergyPredictor, MemoryModel
    from hwnas.searchers import make_objective

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
