"""Multi-objective search with Optuna: samplers, one study model, in-process and multi-process runners.

One study model for every runner: a trial suggests every elastic choice of the space as a
categorical parameter, builds the Arch with `space.from_choices`, stores its string as the user
attribute `arch` and every returned metric under `metrics`, sets one Optuna constraint per budget
(`trial.set_constraint`, feasible when <= 0) and reports the objectives' values. The study's user
attributes hold the space, objectives and budgets, so a front can be read back from storage alone.

Over ~400 lines (~670): samplers, the study model, the in-process / multi-process loops and the
`search()` front door grew together with de-duplication, `auto`, the generation path and the
spread startup trials; the next split is `search()`, its input checks and its startup trials into
their own module (not done yet).
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing as mp
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas.errors import ConfigError, ObjectiveError
from hwnas.search_space import Arch, Space
from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers._checks import check_search_inputs
from hwnas.searchers._generation import generation_size
from hwnas.searchers._liveness import WORKER_ATTR, this_worker, worker_state
from hwnas.searchers._objectives import (
    Objective,
    ObjectiveFn,
    check_values,
    make_objective,
    parse_objectives,
)
from hwnas.searchers._optuna_internals import (
    ask_trial,
    count_trials,
    count_trials_before,
    fail_running_trial,
    in_process_nsga2_sampler,
    set_trial_attrs,
    suggest_all,
)
from hwnas.searchers._storage import open_storage, redact_url, storage_kind

__all__ = ["SAMPLERS", "make_sampler", "search", "evaluate_trial", "load_study", "study_spec", "StudySpec"]

log = logging.getLogger("hwnas.searchers")

# `auto` resolves to one of the others by trial budget and objective count (searchers/_auto.py).
SAMPLERS = ("nsga2", "tpe", "random", "gp", "nsga3", "evo", "evo-gp", "auto")
# Consecutive failed trials after which a search stops (a broken objective, not bad luck).
MAX_CONSECUTIVE_FAILURES = 25
NSGA_POPULATION = 50  # NSGA-II/III's population when none is given (evo's: _evo.DEFAULT_POPULATION)
# Seconds between checks, while waiting for other workers' last trials, that their workers live.
STALE_CHECK_S = 2.0


def make_sampler(name: str, *, seed: int | None = 0, n_objectives: int = 2, population_size: int | None = None,
                 space: Space | None = None, n_trials: int | None = None) -> Any:
    """An Optuna sampler by name: nsga2 (default), tpe, random, gp, nsga3, evo (searchers/_evo.py;
    `space`: None reads it from the study), evo-gp (evo screening its children with Gaussian-process
    surrogates, searchers/_surrogate.py), or auto (picked by `n_trials` and `n_objectives`)."""
    import optuna
    from hwnas.searchers._auto import resolve_sampler

    name = resolve_sampler(name, n_trials=n_trials, n_objectives=n_objectives)
    from hwnas.searchers._evo import DEFAULT_POPULATION, EVO_SAMPLERS, EvoSampler

    if name in EVO_SAMPLERS:
        return EvoSampler(space, seed=seed, population_size=population_size or DEFAULT_POPULATION,
                          surrogate=EVO_SAMPLERS[name])
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size or NSGA_POPULATION)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population_size or NSGA_POPULATION)
    if name == "tpe":
        # multivariate + constant_liar: joint choices matter, and workers should not collide.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=20)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=20)
    raise ConfigError(f"unknown sampler {name!r}; allowed: {list(SAMPLERS)}")


def in_process_nsga2(space: Space, *, seed: int | None = 0, population_size: int | None = None) -> Any:
    """NSGA-II for one process on an in-memory study (the fast path of `search`).

    Samples exactly as `optuna.samplers.NSGAIISampler` with the same seed does on a study whose
    every trial suggests the same fixed distributions (what `search` does), with three per-trial
    scans of the whole study replaced by state kept as trials finish: the relative search space is
    the space's distributions (Optuna recomputes their intersection over all trials and deep-copies
    it), a new trial's generation comes from a count of completed trials per generation, updated
    in `after_trial` (Optuna rescans every completed trial), and a generation's parents are kept
    once selected (Optuna rebuilds them from all trials each time). The counts only see trials told
    in this process, which is why it is only used with in-memory storage. It overrides Optuna's
    GA hooks (`_optuna_internals`); an Optuna whose hooks it does not recognise gets its own
    `NSGAIISampler`, which samples the same, only slower.
    """
    return in_process_nsga2_sampler(_distributions(space), seed=seed, population_size=population_size or NSGA_POPULATION)


@dataclass(frozen=True)
class StudySpec:
    """What a study searches: space, objectives, budgets (read back from the study's attributes)."""

    space: Space
    objectives: tuple[Objective, ...]
    budgets: tuple[Budget, ...] = ()
    sampler: str = "nsga2"
    n_trials: int | None = None
    metrics: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]


def study_spec(study: Any) -> StudySpec:
    """The StudySpec stored in a study's user attributes by `search`."""
    ua = study.user_attrs
    if "hwnas.space" not in ua or "hwnas.objectives" not in ua:
        raise ConfigError(
            f"study {study.study_name!r} was not created by hwnas search (no hwnas.space / "
            "hwnas.objectives attributes)"
        )
    return StudySpec(
        space=Space.from_dict(ua["hwnas.space"]),
        objectives=parse_objectives(ua["hwnas.objectives"]),
        budgets=parse_budgets(ua.get("hwnas.budgets", [])),
        sampler=ua.get("hwnas.sampler", "nsga2"),
        n_trials=ua.get("hwnas.n_trials"),
    )


def load_study(study_name: str | None, storage: str | Any) -> Any:
    """Load an existing study; with one study in the storage, `study_name` may be None."""
    import optuna

    if isinstance(storage, str):
        # Reading must not create an empty database/journal as a side effect of a typo'd path.
        from hwnas.searchers._storage import existing_storage_path, sqlite_path_hint

        f = existing_storage_path(storage)
        if f is not None and f.is_dir():
            raise ConfigError(f"storage {storage!r} names {str(f.absolute())!r}, which is a directory; give the storage file")
        if f is not None and not f.is_file():
            raise ConfigError(f"storage file {str(f)!r} does not exist (from {storage!r}; that is {str(f.absolute())!r}"
                              f"{sqlite_path_hint(storage)}); give the storage a search wrote")
        # Optuna creates its tables in a database without them: refuse one that holds no study instead.
        from hwnas.searchers._storage import require_optuna_tables

        require_optuna_tables(storage)
    st = open_storage(storage, reading=True) if isinstance(storage, str) or storage is None else storage
    if isinstance(st, optuna.storages.InMemoryStorage):
        raise ConfigError("an in-memory storage holds no saved study; pass --storage sqlite:///... or a journal file")
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)] if study_name is None else None
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"storage holds {len(names)} studies {names}; name one with --study")
        study_name = names[0]
    try:
        return optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        raise ConfigError(f"study {study_name!r} not found in storage; studies there: {names}") from None


def _set_metric_names(study: Any, objectives: Sequence[Objective]) -> None:
    """Name the study's values (`accuracy`, `latency_ms@cpu`) so optuna-dashboard and
    `trials_dataframe()` show them instead of "Objective 0" / `values_0`."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use; the warning is noise to users
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in objectives])


@functools.lru_cache(maxsize=64)
def _distributions(space: Space) -> dict[str, Any]:
    """The space's Optuna distributions, built once per (frozen, hashable) space: a trial asks for
    them (hashing the space: ~4 us; building them: ~50 us). Callers only read the dict."""
    from optuna.distributions import CategoricalDistribution

    return {k: CategoricalDistribution(list(v)) for k, v in space.choices().items()}


class _Duplicate(Exception):
    """The trial's arch is held by an earlier trial (another worker proposed it in the same instant)."""


def evaluate_trial(trial: Any, space: Space, fn: ObjectiveFn, objectives: Sequence[Objective], budgets: Sequence[Budget],
                   held: Any = None) -> list[float]:
    """Run one trial of the study model (suggest, build the arch, evaluate, set constraints).

    With `held` (the study's `HeldArchs`), a trial whose arch an earlier trial holds raises
    `_Duplicate` before the objective runs."""
    # Every choice is suggested, also the block slots deeper than the stage's sampled depth (their
    # values are then unused; the arch string says what runs). The samplers need the fixed search
    # space: NSGA-II (and in_process_nsga2) crosses over and mutates the intersection of all
    # trials' distributions, TPE multivariate models the same intersection, and Ray's OptunaSearch
    # is given the fixed distributions; a slot suggested only by deep archs would drop out of that
    # intersection and be sampled at random, so a stage could not inherit its parents' deep blocks.
    # One transaction on an RDB storage: the params, the arch and the worker (a --resume elsewhere
    # then leaves the trial running).
    built: list[Any] = []

    def attrs(p: Any) -> dict[str, str]:  # the arch is built once, here, and used below
        built.append(space.from_choices(p))
        return {WORKER_ATTR: this_worker(), "arch": built[-1].to_string()}

    suggest_all(trial, _distributions(space), attrs)
    arch = built[-1]  # suggest_all calls attrs on both its paths
    s = arch.to_string()
    if held is not None:
        other = held.claim(trial.study, s, trial.number)
        if other is not None:
            raise _Duplicate(f"duplicate: trial {other} holds this arch")
    values = record_values(trial, s, fn(arch), objectives, budgets)
    return [values[o.name] for o in objectives]


def record_values(trial: Any, arch: str, raw: Any, objectives: Sequence[Objective], budgets: Sequence[Budget]) -> dict[str, float]:
    """Validate an objective's output, store it on the trial and set one constraint per budget."""
    values = check_values(raw, [o.name for o in objectives] + [b.metric for b in budgets], arch)
    set_trial_attrs(trial, {"metrics": values}, {str(b): b.violation(values) for b in budgets})
    return values


def _fail(study: Any, trial: Any, err: Exception) -> None:
    # A Ctrl-C has no message: say what happened rather than "failed: " with nothing after it.
    why = "interrupted (the search was stopped while it ran)" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    if not _fail_with(study, trial, why):
        return  # another process closed it already (a --resume that saw its worker gone)
    log.warning("trial %d %s", trial.number, "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {err}")


class _ClosedTrial(Exception):
    """Another process closed this trial (Optuna says so with a ValueError)."""


def _tell(study: Any, trial: Any, values: Any = None, **kw: Any) -> None:
    import optuna

    try:
        study.tell(trial, values, **kw)
    except optuna.exceptions.UpdateFinishedTrialError as e:
        raise _ClosedTrial(str(e)) from None
    except ValueError as e:  # Optuna 5 raises ValueError("Cannot tell a FAIL trial.") for a closed trial
        if str(e).startswith("Cannot tell a"):
            raise _ClosedTrial(str(e)) from None
        raise


def _fail_with(study: Any, trial: Any, error: str) -> bool:
    """Record `error` and fail the trial; False when another process had closed it (it stays closed)."""
    import optuna

    try:
        trial.set_user_attr("error", error)
        _tell(study, trial, state=optuna.trial.TrialState.FAIL)
    except (_ClosedTrial, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def _count(study: Any, *states: Any) -> int:
    return count_trials(study, states)


def _surplus(study: Any, number: int, n_trials: int) -> bool:
    """Whether n_trials trials numbered before `number` are already complete or running."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    return count_trials_before(study, states, number) >= n_trials


def _fail_stale(study: Any, *, why: str = "failed on resume") -> tuple[int, int]:
    """Mark RUNNING trials whose worker is gone (a killed search) as FAIL; a live worker's trials
    stay. Returns (failed, left running by another host's worker, which cannot be checked here)."""
    import optuna

    n = other_host = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        state = worker_state(t)
        if state == "unknown":
            other_host += 1
        elif state == "dead":
            # False: a live worker finished it meanwhile, so it was not stale
            n += fail_running_trial(study, t, f"interrupted: the search stopped while it ran; {why}")
    return n, other_host


def _progress(total: int, initial: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="trial", dynamic_ncols=True)


def _run_local(study: Any, space: Space, fn: ObjectiveFn, objectives: Sequence[Objective], budgets: Sequence[Budget],
               n_trials: int, *, shared: bool, progress: bool, desc: str = "search") -> str | None:
    """Ask/tell loop until the study holds `n_trials` COMPLETE trials; returns a message when the
    space ran out of archs the study does not hold first.

    With `shared` (several processes on one storage) a worker also counts RUNNING trials, so
    the workers together stop at exactly `n_trials` completed trials.
    """
    import optuna
    from hwnas.searchers._dedup import HeldArchs
    from hwnas.searchers._generation import exhausted_message

    C, R = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING
    held = getattr(study.sampler, "held", None) or HeldArchs(space)
    done = _count(study, C)
    bar = _progress(n_trials, min(done, n_trials), progress, desc)
    fails = 0
    next_stale_check = time.monotonic() + STALE_CHECK_S
    try:
        while done < n_trials:
            if held.space_size - len(held) <= n_trials:  # a space this search could exhaust: look
                held.refresh(study)
                if held.exhausted():
                    return _exhausted(study, exhausted_message(space, held, done, n_trials))
            if shared:
                running = _count(study, R)
                if done + running >= n_trials:
                    time.sleep(0.05)  # others hold the last trials; wait in case one fails
                    if time.monotonic() >= next_stale_check:  # or its worker was killed: fail it
                        _fail_stale(study, why="its worker is gone")
                        next_stale_check = time.monotonic() + STALE_CHECK_S
                    done = _count(study, C)
                    continue
            trial = ask_trial(study, {WORKER_ATTR: this_worker()})  # stamped as it is created
            # _surplus reads every trial: only pay for it when the counts say the slots could be over-asked.
            if shared and _count(study, C, R) > n_trials and _surplus(study, trial.number, n_trials):
                # Another worker asked in the same instant and holds the last slot: give this
                # one back (as FAIL, so it never counts) and re-check.
                _fail_with(study, trial, "surplus: n_trials were already complete or running")
                done = _count(study, C)
                continue
            try:
                values = evaluate_trial(trial, space, fn, objectives, budgets, held)
            except _Duplicate as e:  # not the objective's failure: no count towards MAX_CONSECUTIVE_FAILURES
                _fail_with(study, trial, str(e))
                continue
            except optuna.exceptions.UpdateFinishedTrialError:
                # Another process finished this trial under us (a `--resume` elsewhere marks RUNNING
                # trials FAIL): it never counts; carry on with the next one instead of crashing.
                log.warning("trial %d was closed by another process; skipped", trial.number)
                done = _count(study, C) if shared else done
                continue
            except ObjectiveError as e:
                _fail(study, trial, e)
                fails += 1
                if fails >= MAX_CONSECUTIVE_FAILURES:
                    raise ObjectiveError(f"{fails} consecutive trials failed; the last: {e}") from None
                continue
            except BaseException as e:
                _fail(study, trial, e)
                raise
            fails = 0
            try:
                _tell(study, trial, values)
            except _ClosedTrial:
                log.warning("trial %d was closed by another process; skipped", trial.number)
                done = _count(study, C) if shared else done
                continue
            before = done
            done = _count(study, C) if shared else done + 1
            if bar is not None:
                bar.update(min(done, n_trials) - min(before, n_trials))
    finally:
        if bar is not None:
            bar.close()
    return None


def _exhausted(study: Any, message: str) -> str:
    """Record on the study (so every worker and the caller see it) and log that the space ran out."""
    log.warning("%s", message)
    try:
        study.set_user_attr("hwnas.exhausted", message)
    except Exception as e:  # noqa: BLE001 - a read-only or vanished storage: the log line still says it
        log.info("could not record the exhaustion on the study: %s", e)
    return message


def _dedup(inner: Any, space: Space, seed: int | None) -> Any:
    from hwnas.searchers._dedup import DedupSampler

    return DedupSampler(inner, space, seed=seed)


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
                             batch=generation_size(sampler, population_size), checkpoint_trials=ckpt_n,
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
