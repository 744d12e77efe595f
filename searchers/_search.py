"""`search()`: the front door of a multi-objective search, and what starts and runs it.

It checks the inputs (searchers/_checks.py), creates or resumes the study (the study model of
searchers/_optuna.py), starts a fresh one from spread startup trials, and hands it to a runner: the
generation path in process (searchers/_generation.py), the one-process loop or worker processes on
one storage (`_optuna._run_local`), or Ray Tune (searchers/_ray.py).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from hwnas.errors import ConfigError, ObjectiveError
from hwnas.search_space import Arch, Space
from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers._checks import check_search_inputs
from hwnas.searchers._generation import generation_size
from hwnas.searchers._objectives import Objective, ObjectiveFn, make_objective, parse_objectives
from hwnas.searchers._optuna import (
    NSGA_POPULATION,
    SAMPLERS,
    _count,
    _dedup,
    _exhausted,
    _fail_stale,
    _run_local,
    _set_metric_names,
    in_process_nsga2,
    log,
    make_sampler,
    study_spec,
)
from hwnas.searchers._storage import open_storage, redact_url, storage_kind

__all__ = ["search", "startup_archs", "SPREAD_STARTUP"]


def _worker_main(a: dict[str, Any]) -> None:
    """Entry point of one worker process (spawned): reopen the study and run the shared loop."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space.from_dict(a["space"])
    fn = a["fn"] if a["fn"] is not None else make_objective(space, a["providers"], **a["provider_options"])
    sampler = _dedup(make_sampler(a["sampler"], seed=a["seed"], n_objectives=len(a["objectives"]),
                                  population_size=a["population_size"], space=space), space, a["seed"])
    study = optuna.load_study(study_name=a["study_name"], storage=open_storage(a["storage"]), sampler=sampler)
    _run_local(study, space, fn, parse_objectives(a["objectives"]), parse_budgets(a["budgets"]), a["n_trials"],
               shared=True, progress=a["progress"], desc=f"worker {a['index']}")


def search(
    space: Space | str,
    objective_fn: ObjectiveFn | str | None = None,
    *,
    objectives: str | Sequence[str | Objective],
    budgets: str | Sequence[str | Budget] | None = (),
    n_trials: int,
    sampler: str = "nsga2",
    seed: int | None = 0,
    storage: str | None = None,
    study_name: str | None = None,
    runner: str = "optuna",
    workers: int = 1,
    ray_address: str | None = None,
    resources_per_trial: Mapping[str, float] | None = None,
    resume: bool = False,
    warm_start: Sequence[Arch | str] = (),
    population_size: int | None = None,
    provider_options: Mapping[str, Any] | None = None,
    ray_storage_path: str | None = None,
    progress: bool = False,
    generation: bool | None = None,
    checkpoint_trials: int | None = None,
    checkpoint_seconds: float | None = None,
) -> Any:
    """Multi-objective search of `space` under hard `budgets`; returns the `optuna.Study`.

    `objective_fn` is any callable `Arch -> dict[str, float]` returning every objective and
    budget metric, or provider name(s) (`"flops"`, `"analytic"`, registered ones). `n_trials` is
    the total number of COMPLETE trials the study should hold when done (resume counts what is
    there). `storage`: None (in memory), `sqlite:///PATH`, `postgresql://...`, or a journal file.
    `runner="optuna"` runs in this process (`workers > 1`: that many processes share the study,
    which needs a persistent storage); `runner="ray"` runs trials as Ray Tune trials, `workers`
    at a time, on the cluster at `ray_address` (None: a local Ray instance). `sampler`: one of
    SAMPLERS; `auto` picks by `n_trials` and the objective count (searchers/_auto.py) and the study
    records the pick.

    No trial repeats an arch the study holds (the sampler re-draws repeats); a space with fewer
    archs than `n_trials` ends the search with every arch tried once and a logged message (also
    the study's `hwnas.exhausted` attribute). `generation`: score a generation of trials per
    objective call in an in-memory study written to `storage` in bulk (`searchers/_generation.py`);
    None (default) does so in process (one worker) when the objective has `predict_many` (every
    registered provider has). The persistent study is then written every `checkpoint_trials`
    trials or `checkpoint_seconds` seconds (defaults 1000 and 10) and at the end.
    """
    import optuna

    if isinstance(space, str):
        space = Space.preset(space)
    objs = parse_objectives(objectives)
    buds = parse_budgets(budgets)
    check_search_inputs(space, (objective_fn or "flops") if objective_fn is None or isinstance(objective_fn, str) else None,
                        objs, buds, n_trials, seed, population_size, warm_start)
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; allowed: {list(SAMPLERS)}")
    from hwnas.searchers._auto import resolve_sampler

    sampler = resolve_sampler(sampler, n_trials=n_trials, n_objectives=len(objs))  # auto: the study records its pick
    if runner not in ("optuna", "ray"):
        raise ConfigError(f"runner={runner!r} not allowed; allowed: ['optuna', 'ray']")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be an int >= 1")
    kind = storage_kind(storage)
    if runner == "optuna" and workers > 1 and kind == "memory":
        raise ConfigError("several workers need a shared storage: pass storage='sqlite:///PATH' or a journal file")
    if resume and kind == "memory":
        raise ConfigError("--resume needs a persistent storage (sqlite:///PATH, a journal file, postgresql://...)")
    if sampler == "gp" and buds and len(objs) > 1:
        log.info("GPSampler handles constraints for single objectives best; multi-objective GP is slow")
    providers = None
    if objective_fn is None or isinstance(objective_fn, str):
        providers = objective_fn or "flops"
        fn = make_objective(space, providers, **dict(provider_options or {}))
    elif callable(objective_fn):
        fn = objective_fn
    else:
        raise ConfigError(f"objective_fn must be callable or a provider name, got {type(objective_fn).__name__}")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_storage(storage)
    name = study_name or f"hwnas-{space.name}"
    existing = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    from hwnas.searchers._generation import CHECKPOINT_SECONDS, CHECKPOINT_TRIALS, batched

    if generation is None:
        generation = runner == "optuna" and workers == 1 and batched(fn)
    elif generation and (runner != "optuna" or workers != 1):
        raise ConfigError(f"generation=True runs in this process: it needs runner='optuna' and workers=1, "
                          f"got runner={runner!r}, workers={workers}")
    ckpt_n = CHECKPOINT_TRIALS if checkpoint_trials is None else checkpoint_trials
    ckpt_s = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    if not isinstance(ckpt_n, int) or ckpt_n < 1:
        raise ConfigError(f"checkpoint_trials={ckpt_n!r} must be an int >= 1")
    if not isinstance(ckpt_s, (int, float)) or not ckpt_s > 0:
        raise ConfigError(f"checkpoint_seconds={ckpt_s!r} must be a number > 0")
    fresh_in_memory = name not in existing and (kind == "memory" or generation)
    # What a fresh study is started from. Spread startup trials in one process only: worker processes
    # popping enqueued trials from one SQLite study can take the same one (a UNIQUE error on its
    # params), so those runners start from the samplers' own random draws, as before.
    one = runner == "optuna" and workers == 1
    startup = [] if name in existing else startup_archs(space, sampler if one else "", seed, population_size,
                                                        warm_start, n_trials)
    if sampler == "nsga2" and fresh_in_memory and runner == "optuna" and workers == 1:
        # its per-generation counts see only trials told in this process: a fresh in-memory study
        samp = in_process_nsga2(space, seed=seed, population_size=population_size)
    else:
        samp = make_sampler(sampler, seed=seed, n_objectives=len(objs), population_size=population_size, space=space)
    samp = _dedup(samp, space, seed)
    if name in existing:
        if not resume:
            raise ConfigError(f"study {name!r} already exists in {redact_url(storage)}; pass --resume to continue it or pick another --study")
        study = optuna.load_study(study_name=name, storage=st, sampler=samp)
        spec = study_spec(study)
        if [o.spec() for o in spec.objectives] != [o.spec() for o in objs] or spec.space != space:
            raise ConfigError(
                f"study {name!r} searches {[o.spec() for o in spec.objectives]} over {spec.space.name!r}; "
                f"asked for {[o.spec() for o in objs]} over {space.name!r}"
            )
        if [str(b) for b in spec.budgets] != [str(b) for b in buds]:
            raise ConfigError(f"study {name!r} has budgets {[str(b) for b in spec.budgets]}; asked for {[str(b) for b in buds]}")
        if study.metric_names is None:  # a study from before hwnas named its metrics
            _set_metric_names(study, objs)
        stale, other_host = _fail_stale(study)
        if stale:
            log.warning("resume: marked %d interrupted trial(s) as FAIL", stale)
        if other_host:
            log.warning("resume: %d trial(s) run by workers on other hosts are left running (their liveness "
                        "cannot be checked from here); if those workers are gone, resume from their host", other_host)
        study.set_user_attr("hwnas.n_trials", n_trials)
    else:
        study = optuna.create_study(study_name=name, storage=st, sampler=samp, directions=[o.direction for o in objs])
        _set_metric_names(study, objs)
        study.set_user_attr("hwnas.space", space.to_dict())
        study.set_user_attr("hwnas.objectives", [o.spec() for o in objs])
        study.set_user_attr("hwnas.budgets", [str(b) for b in buds])
        study.set_user_attr("hwnas.sampler", sampler)
        study.set_user_attr("hwnas.n_trials", n_trials)
        if not generation:
            _enqueue(study, space, startup)
    if generation:
        _run_generation_path(study, st, space, fn, objs, buds, n_trials, sampler=samp, name=name, startup=startup,
                             batch=generation_size(sampler, population_size, len(objs)), checkpoint_trials=ckpt_n,
                             checkpoint_seconds=ckpt_s, progress=progress)
        return study
    if runner == "ray":
        from hwnas.searchers._ray import run_ray

        run_ray(study, st, space, fn, objs, buds, n_trials, workers=workers, address=ray_address,
                resources=resources_per_trial, storage_path=ray_storage_path, progress=progress)
    elif workers == 1:
        _run_local(study, space, fn, objs, buds, n_trials, shared=kind != "memory", progress=progress)
    else:
        _run_workers(study, space, fn if providers is None else None, providers, dict(provider_options or {}),
                     storage, name, objs, buds, n_trials, sampler, seed, population_size, workers, progress)
    return study


# Samplers whose first trials are random draws (TPE's and GP's startup trials, NSGA-II/III's first
# generation): a fresh study starts them from archs spread over the space's size instead (the first
# generation `evo` makes itself; `random` stays the plain baseline). benchmarks/search_quality.py,
# fmnist-mbv3 with the main job's predictors, 3 seeds: TPE 0.924 / 0.975 of the best-known front's
# hypervolume at 300 / 1,000 trials from random startup trials, 0.940 / 0.983 from spread ones.
SPREAD_STARTUP = {"tpe": 20, "gp": 20, "nsga2": NSGA_POPULATION, "nsga3": NSGA_POPULATION}


def startup_archs(space: Space, sampler: str, seed: int | None, population_size: int | None,
                  warm_start: Sequence[Arch | str] = (), n_trials: int | None = None) -> list[tuple[Arch, dict]]:
    """The `(arch, user attributes)` a fresh study of `sampler` is started from: `warm_start`
    (`{"warm_start": True}`), then archs spread over the space's size (`searchers/_evo.spread_archs`,
    `{"startup": "spread"}`) in place of the sampler's random first draws (no more than `n_trials`
    spread ones with the warm start)."""
    import random

    from hwnas.searchers._evo import spread_archs, warm_archs

    out = warm_archs(space, warm_start)
    n = SPREAD_STARTUP.get(sampler, 0)
    if sampler in ("nsga2", "nsga3"):
        n = population_size or NSGA_POPULATION
    if n_trials is not None:
        n = min(n, max(0, n_trials - len(out)))
    held = {str(a) for a in out}
    spread = []
    for a in spread_archs(space, n, random.Random(f"hwnas-startup:{seed}")):
        if str(a) not in held:
            held.add(str(a))
            spread.append(a)
    return [(a, {"warm_start": True}) for a in out] + [(a, {"startup": "spread"}) for a in spread]


def _enqueue(study: Any, space: Space, startup: Sequence[tuple[Arch, dict]]) -> None:
    for a, attrs in startup:
        study.enqueue_trial(space.to_choices(a), user_attrs=attrs)


def _run_generation_path(study: Any, st: Any, space: Space, fn: ObjectiveFn, objs: Sequence[Objective],
                         buds: Sequence[Budget], n_trials: int, *, sampler: Any, name: str,
                         startup: Sequence[tuple[Arch, dict]], batch: int, checkpoint_trials: int,
                         checkpoint_seconds: float, progress: bool) -> None:
    """The generation path (`_generation.py`): `study` itself when it is in memory, else a copy in
    memory written back to `study` in bulk. `startup`: what a fresh study is started from (empty
    when resuming; `startup_archs`)."""
    import optuna
    from hwnas.searchers._generation import StudySink, run_generations

    if isinstance(st, optuna.storages.InMemoryStorage):
        mem, sink = study, None
        _enqueue(mem, space, startup)
    else:
        mem = optuna.create_study(study_name=name, sampler=sampler, directions=[o.direction for o in objs])
        # Resume: every finished trial back in memory (the sampler learns from them, and no arch repeats).
        prior = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        mem.add_trials(prior)
        _enqueue(mem, space, startup)
        sink = StudySink(study, first=len(prior))
    message = run_generations(mem, space, fn, objs, buds, n_trials, batch=batch, sink=sink,
                              checkpoint_trials=checkpoint_trials, checkpoint_seconds=checkpoint_seconds,
                              progress=progress)
    if message is not None:
        _exhausted(study, message)


def _run_workers(study: Any, space: Space, fn: ObjectiveFn | None, providers: Any, provider_options: dict, storage: str,
                 name: str, objs: Sequence[Objective], buds: Sequence[Budget], n_trials: int, sampler: str,
                 seed: int | None, population_size: int | None, workers: int, progress: bool) -> None:
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(workers):
        payload = {
            "space": space.to_dict(), "fn": fn, "providers": providers, "provider_options": provider_options,
            "storage": storage, "study_name": name, "objectives": [o.spec() for o in objs],
            "budgets": [str(b) for b in buds], "n_trials": n_trials, "sampler": sampler,
            # Distinct seeds: workers with one seed would propose the same archs.
            "seed": None if seed is None else seed + 1000 * i, "population_size": population_size,
            "progress": progress and i == 0, "index": i,
        }
        try:  # the spawn context pickles the arguments; check here for a clear error before starting
            pickle.dumps(payload)
        except Exception as e:  # lambdas / closures cannot cross a process boundary
            raise ConfigError(f"the objective function cannot be sent to worker processes ({e}); "
                              "use a module-level function or class, or a registered provider") from None
        p = ctx.Process(target=_worker_main, args=(payload,), name=f"hwnas-search-{i}")
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise ObjectiveError(f"{len(bad)} search worker(s) exited with codes {bad}; see their messages above")
    if math.isfinite(n_trials):
        import optuna

        done = _count(study, optuna.trial.TrialState.COMPLETE)
        if done < n_trials and not study.user_attrs.get("hwnas.exhausted"):
            raise ObjectiveError(f"workers stopped with {done} of {n_trials} trials complete")
