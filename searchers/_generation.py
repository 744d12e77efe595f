"""A generation at a time: the in-process search path for objectives that score many archs per call.

Optuna's ask / suggest / tell loop costs milliseconds a trial on a 25-choice space (every
`suggest` copies the trial), and a persistent storage adds a commit per parameter: a 1,000-trial
search over predictors spent ~92 s writing to SQLite. Here the study lives in an Optuna
`InMemoryStorage`. When the sampler can draw without a trial (in-process NSGA-II, `evo`, random:
`DedupSampler.sample_batch`), a generation's params are drawn from the sampler's own state, scored
in one `predict_many` call and stored finished in one append (`append_finished_trials`), then the
sampler is told (`after_trial`): the trials are the ones asking would give (tests/
test_search_batch.py). Otherwise a generation of trials is asked (the `DedupSampler` proposes every
choice at ask time, so no per-parameter suggest is needed), scored in one call, and recorded with
one replacement of each trial (`finish_trial`). The persistent study is written in bulk, one
transaction per checkpoint (`StudySink`): every `checkpoint_trials` trials or `checkpoint_seconds`
seconds and at the end, so a killed search loses at most one interval, and `--resume` loads the
written trials back into memory and continues.

A generation is the sampler's population for the GA samplers (NSGA-II's trials of one generation
are all drawn from the same parents, so asking them together samples exactly what one at a time
does), a fixed batch for random sampling, and one trial for the model-based samplers (TPE, GP),
which learn from every result. The study equals the one written trial by trial (same sampler, same
seed) as long as no trial fails: a failed trial leaves its generation short, which trial by trial
the next trial fills, and here the next generation's batch does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from hwnas.errors import ObjectiveError
from hwnas.search_space import Space
from hwnas.searchers._budgets import Budget
from hwnas.searchers._liveness import WORKER_ATTR, this_worker
from hwnas.searchers._objectives import Objective, ObjectiveFn, check_values, evaluate_many
from hwnas.searchers._optuna_internals import (
    append_finished_trials,
    ask_trial,
    count_trials,
    finish_trial,
    next_trial_number,
    write_trials,
)

__all__ = ["StudySink", "exhausted_message", "generation_size", "run_generations", "batched", "CHECKPOINT_TRIALS", "CHECKPOINT_SECONDS"]

log = logging.getLogger("hwnas.searchers")

# Defaults of the persistent study's checkpoints: a kill -9 loses at most this much work.
CHECKPOINT_TRIALS = 1000
CHECKPOINT_SECONDS = 10.0
_RANDOM_BATCH = 100


def batched(fn: Any) -> bool:
    """Whether `fn` scores many archs per call (`predict_many`): the generation path is worth it."""
    return callable(getattr(fn, "predict_many", None))


def generation_size(sampler: str, population_size: int | None, n_objectives: int = 2) -> int:
    """Trials asked together: a GA's population, a batch for random sampling, 1 for model-based samplers."""
    from hwnas.searchers._evo import EVO_SAMPLERS, default_population

    if sampler in EVO_SAMPLERS:
        return population_size or default_population(sampler, n_objectives)
    if sampler in ("nsga2", "nsga3"):
        from hwnas.searchers._optuna import NSGA_POPULATION

        return population_size or NSGA_POPULATION
    if sampler == "random":
        return _RANDOM_BATCH
    return 1


class StudySink:
    """The persistent study a search in memory is written to, in bulk."""

    def __init__(self, target: Any, *, first: int):
        self.target = target
        self.next = first  # the in-memory trial number written next
        self.written = 0

    def flush(self, study: Any) -> int:
        """Write the finished in-memory trials not written yet (up to the first unfinished one)."""
        trials = study.get_trials(deepcopy=False)
        batch = []
        for t in trials[self.next:]:
            if not t.state.is_finished():
                break
            batch.append(t)
        if batch:
            write_trials(self.target, batch)
            self.next += len(batch)
            self.written += len(batch)
        return len(batch)


def run_generations(study: Any, space: Space, fn: ObjectiveFn, objectives: Sequence[Objective], budgets: Sequence[Budget],
                    n_trials: int, *, batch: int, sink: StudySink | None = None,
                    checkpoint_trials: int = CHECKPOINT_TRIALS, checkpoint_seconds: float = CHECKPOINT_SECONDS,
                    progress: bool = False, desc: str = "search") -> str | None:
    """Ask, score and tell a generation at a time until `study` (in memory, sampled by a
    `DedupSampler`) holds `n_trials` COMPLETE trials; returns a message when the space ran out first."""
    import optuna
    from hwnas.searchers._optuna import _progress

    if batch < 1:
        raise ValueError(f"batch={batch!r} must be >= 1")
    sampler = study.sampler
    held = sampler.held
    dists = sampler.distributions
    names = [o.name for o in objectives]
    needed = names + [b.metric for b in budgets if b.metric not in names]
    C = optuna.trial.TrialState.COMPLETE
    done = count_trials(study, (C,))
    bar = _progress(n_trials, min(done, n_trials), progress, desc)
    since_n, since_t = 0, time.monotonic()
    fails = 0
    exhausted = None
    drawn = False  # a batch was drawn (DedupSampler.sample_batch) and stored by this loop
    try:
        while done < n_trials:
            held.refresh(study)
            if held.exhausted():
                exhausted = exhausted_message(space, held, done, n_trials)
                break
            # Enqueued (warm-start) trials make a batch of their own: a GA counts only sampled trials in its
            # generations, so a generation then starts on a batch boundary, as it does trial by trial.
            # (after a drawn batch none waits: only this process writes the in-memory study, and enqueues nothing)
            waiting = 0 if drawn else count_trials(study, (optuna.trial.TrialState.WAITING,))
            k = min(waiting or batch, n_trials - done)
            first = None if waiting else next_trial_number(study)
            # Drawn without asking a trial each, when the sampler can (in-process NSGA-II, evo): then scored and
            # stored finished, in bulk. Else asked, scored and told one by one.
            batcher = getattr(sampler, "sample_batch", None)
            proposed = None if first is None or batcher is None else batcher(study, first, k)
            before = done
            if proposed is not None:
                completed, fails = _run_proposed(study, fn, proposed, first, needed, names, budgets, dists, fails)
                ran, drawn, done = len(proposed), True, done + completed
            else:
                ran, fails = _run_asked(study, space, fn, k, needed, names, budgets, dists, fails)
                if not ran:
                    continue  # the exhaustion check above ends the search
                done = count_trials(study, (C,))
            since_n += ran
            if bar is not None:
                bar.update(min(done, n_trials) - min(before, n_trials))
            if sink is not None and (since_n >= checkpoint_trials or time.monotonic() - since_t >= checkpoint_seconds):
                sink.flush(study)
                since_n, since_t = 0, time.monotonic()
    finally:
        if bar is not None:
            bar.close()
        if sink is not None:
            sink.flush(study)
    return exhausted


def _scored(fn: ObjectiveFn, items: Sequence[tuple[Any, str]], needed: Sequence[str],
            budgets: Sequence[Budget]) -> Iterator[tuple[int, Any, Any, BaseException | None]]:
    """Score the `(arch, arch string)` items with one objective call (`evaluate_many`); only when
    that call fails, one arch at a time to find the one that fails. Yields `(i, values,
    constraints, None)` for each arch in order, or `(i, None, None, error)`: an `ObjectiveError`
    fails that trial alone, any other error (an interrupt) is the caller's to raise after it has
    failed the trials from `i` on."""
    try:
        raws = evaluate_many(fn, [a for a, _ in items]) if items else []
    except ObjectiveError:
        raws = None
    for i, (arch, s) in enumerate(items):
        try:
            raw = raws[i] if raws is not None else fn(arch)
            values = check_values(raw, needed, s)
            out = (i, values, {str(b): b.violation(values) for b in budgets}, None)
        except BaseException as e:  # not around the yield: a generator's close must pass through
            out = (i, None, None, e)
        yield out


def _failed_again(fails: int, e: ObjectiveError) -> int:
    """One more consecutive failed trial; too many in a row end the search."""
    from hwnas.searchers._optuna import MAX_CONSECUTIVE_FAILURES

    fails += 1
    if fails >= MAX_CONSECUTIVE_FAILURES:
        raise ObjectiveError(f"{fails} consecutive trials failed; the last: {e}") from None
    return fails


def _run_asked(study: Any, space: Space, fn: ObjectiveFn, k: int, needed: Sequence[str], names: Sequence[str],
               budgets: Sequence[Budget], dists: dict[str, Any], fails: int) -> tuple[int, int]:
    """Ask up to `k` trials, score them in one call and tell them (`finish_trial`); returns (trials
    asked and scored, consecutive failures)."""
    import optuna

    held = study.sampler.held
    asked = []
    for _ in range(k):
        t = ask_trial(study, {WORKER_ATTR: this_worker()})  # stamped as it is created
        params = t.relative_params  # the DedupSampler proposes every choice at once
        arch = space.from_choices(params)
        s = arch.to_string()
        other = held.claim(study, s, t.number)
        if other is not None:  # only when the space has no unseen arch left (or a warm start repeats)
            t.set_user_attr("arch", s)
            t.set_user_attr("error", f"duplicate: trial {other} holds this arch")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            break
        asked.append((t, params, arch, s))
    if not asked:
        return 0, fails
    for i, values, constraints, e in _scored(fn, [(a, s) for _, _, a, s in asked], needed, budgets):
        t, params, _, s = asked[i]
        if isinstance(e, ObjectiveError):
            t.set_user_attr("arch", s)
            t.set_user_attr("error", f"{type(e).__name__}: {e}")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d failed: %s", t.number, e)
            fails = _failed_again(fails, e)
            continue
        if e is not None:
            for u, *_ in asked[i:]:
                u.set_user_attr("error", f"{type(e).__name__}: {e}")
                study.tell(u, state=optuna.trial.TrialState.FAIL)
            raise e
        fails = 0
        finish_trial(study, t, params, dists, [values[n] for n in names], {"arch": s, "metrics": values}, constraints)
    return len(asked), fails


def _run_proposed(study: Any, fn: ObjectiveFn, proposed: Sequence[tuple[dict, Any, str, dict]], first: int,
                  needed: Sequence[str], names: Sequence[str], budgets: Sequence[Budget], dists: dict[str, Any],
                  fails: int) -> tuple[int, int]:
    """Score trials drawn by `DedupSampler.sample_batch` (numbered from `first`) and store them
    finished, in one append, with what asking, `finish_trial` and `tell` store trial by trial
    (params, `arch`, `metrics`, the worker stamp, the sampler's system attributes, one constraint per
    budget; a failed trial: `arch` and `error`, no params), then tell the sampler. Returns (trials
    stored COMPLETE, consecutive failures)."""
    import optuna

    FrozenTrial, S = optuna.trial.FrozenTrial, optuna.trial.TrialState
    sampler = study.sampler
    stamp = {WORKER_ATTR: this_worker()}
    start = datetime.now()
    proposed = list(proposed)
    last_params, last_arch, last_s, last_attrs = proposed[-1]
    duplicate = None
    if sampler.held.owner[last_s] != first + len(proposed) - 1:  # the space had no unseen arch left
        duplicate = (last_s, last_attrs, f"duplicate: trial {sampler.held.owner[last_s]} holds this arch")
        proposed.pop()
    trials: list[Any] = []

    def failed(s: str | None, attrs: dict, error: str) -> Any:
        ua = {**stamp, "error": error} if s is None else {**stamp, "arch": s, "error": error}
        return FrozenTrial(number=-1, state=S.FAIL, value=None, values=None, datetime_start=start,
                           datetime_complete=datetime.now(), params={}, distributions={}, user_attrs=ua,
                           system_attrs=dict(attrs), intermediate_values={}, trial_id=-1)

    try:
        for i, values, constraints, e in _scored(fn, [(a, s) for _, a, s, _ in proposed], needed, budgets):
            params, _, s, attrs = proposed[i]
            if isinstance(e, ObjectiveError):
                trials.append(failed(s, attrs, f"{type(e).__name__}: {e}"))
                log.warning("trial %d failed: %s", first + i, e)
                fails = _failed_again(fails, e)
                continue
            if e is not None:
                trials += [failed(None, a, f"{type(e).__name__}: {e}") for _, _, _, a in proposed[i:]]
                raise e
            fails = 0
            sa = dict(attrs)
            sa.update((f"constraints:{k}", float(v)) for k, v in constraints.items())
            trials.append(FrozenTrial(number=-1, state=S.COMPLETE, value=None, values=[float(values[n]) for n in names],
                                      datetime_start=start, datetime_complete=datetime.now(), params=params,
                                      distributions=dict(dists), user_attrs={**stamp, "arch": s, "metrics": values},
                                      system_attrs=sa, intermediate_values={}, trial_id=-1))
        if duplicate is not None:
            trials.append(failed(*duplicate))
    finally:
        stored = append_finished_trials(study, trials)
        if stored and stored[0].number != first:  # the numbers the sampler drew for (this process alone writes)
            raise RuntimeError(f"trials stored from number {stored[0].number}, drawn for {first}")
        for t in stored:
            sampler.after_trial(study, t, t.state, t.values)
    return sum(t.state == S.COMPLETE for t in stored), fails


def exhausted_message(space: Space, held: Any, done: int, n_trials: int) -> str:
    return (f"space {space.name!r} holds {held.space_size} archs and the study has tried every one; "
            f"stopping with {done} of {n_trials} trials complete (no trial repeats an arch)")
