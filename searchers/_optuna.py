"""Multi-objective search with Optuna: samplers, one study model, in-process and multi-process runners.

One study model for every runner: a trial suggests every elastic choice of the space as a
categorical parameter, builds the Arch with `space.from_choices`, stores its string as the user
attribute `arch` and every returned metric under `metrics`, sets one Optuna constraint per budget
(`trial.set_constraint`, feasible when <= 0) and reports the objectives' values. The study's user
attributes hold the space, objectives and budgets, so a front can be read back from storage alone.

`search()`, the front door that checks the inputs, starts a study from spread startup trials and
picks a runner, is in searchers/_search.py.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas.errors import ConfigError, ObjectiveError
from hwnas.search_space import Space
from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers._liveness import WORKER_ATTR, this_worker, worker_state
from hwnas.searchers._objectives import (
    Objective,
    ObjectiveFn,
    check_values,
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
from hwnas.searchers._storage import open_storage

__all__ = ["SAMPLERS", "make_sampler", "evaluate_trial", "load_study", "study_spec", "StudySpec"]

log = logging.getLogger("hwnas.searchers")

# `auto` resolves to one of the others by trial budget and objective count (searchers/_auto.py).
SAMPLERS = ("nsga2", "tpe", "random", "gp", "nsga3", "evo", "evo-gp", "evo-hvi", "auto")
# Consecutive failed trials after which a search stops (a broken objective, not bad luck).
MAX_CONSECUTIVE_FAILURES = 25
NSGA_POPULATION = 50  # NSGA-II/III's population when none is given (evo's: _evo.default_population)
# Seconds between checks, while waiting for other workers' last trials, that their workers live.
STALE_CHECK_S = 2.0


def make_sampler(name: str, *, seed: int | None = 0, n_objectives: int = 2, population_size: int | None = None,
                 space: Space | None = None, n_trials: int | None = None) -> Any:
    """An Optuna sampler by name: nsga2 (default), tpe, random, gp, nsga3, evo (searchers/_evo.py;
    `space`: None reads it from the study), evo-gp (evo screening its children with Gaussian-process
    surrogates, searchers/_surrogate.py), evo-hvi (the same surrogates, children picked by predicted
    hypervolume gain), or auto (picked by `n_trials` and `n_objectives`)."""
    import optuna
    from hwnas.searchers._auto import resolve_sampler

    name = resolve_sampler(name, n_trials=n_trials, n_objectives=n_objectives)
    from hwnas.searchers._evo import EVO_SAMPLERS, EvoSampler, default_population

    if name in EVO_SAMPLERS:
        return EvoSampler(space, seed=seed, population_size=population_size or default_population(name, n_objectives),
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
