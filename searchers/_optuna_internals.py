"""Every use of Optuna's private attributes and SQL tables (and of Ray Tune's OptunaSearch's), in one room.

Optuna's public API does everything hwnas needs, but some of it is slow at the sizes hwnas works
at: reading a 100,000-trial study through `study.get_trials` builds 100,000 FrozenTrials, and a
search loop that counts its trials through it re-reads the whole study every trial. Optuna keeps
faster paths behind private names (`study._storage`, `study._study_id`, `trial._trial_id`, the RDB
storage inside `_CachedStorage._backend`, the GA samplers' generation key) and in its tables
(`trials`, `trial_values`, ...). This module is the only one under `searchers/` that touches them
(`tests/test_optuna_internals.py` scans the others), and each function here

- takes the private path only when it recognises what it is given (the attribute exists and has
  the type this Optuna has, the tables answer the queries), and
- otherwise takes Optuna's public API: a newer Optuna that moves an internal makes hwnas slower,
  never wrong.

Where both paths exist they are separate functions (`_x_private` / `_x_public` or a reader and
`complete_trials_public`), so the tests check that both give the same answer on real studies.

Ray Tune's `OptunaSearch` (ray 2.60) keeps the Optuna trial of each Ray trial in private
attributes and has no public way to reach it; `ray_optuna_trial` / `ray_fail_trial` read them
here and raise a clear error when a Ray version no longer has them (there is no public fallback:
without them a trial would be told COMPLETE without its budgets' constraints).

Over ~400 lines (~1,130) on purpose: the issue that created it asks for every private use in one room,
so a newer Optuna or Ray is checked in one file; each private path sits beside its public fallback.
Its sections (counting and failing, reading archs, one-transaction writes, bulk writes and in-memory
appends, NSGA-II and its batch drawer, the random batch drawer, SQLite tuning, the fast reader, Ray)
are where a package split would cut it; the batch drawers (~200 lines) are the next to move out.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.errors import ConfigError

__all__ = [
    "TrialTable",
    "append_finished_trials",
    "ask_trial",
    "complete_trials",
    "complete_trials_public",
    "count_trials",
    "count_trials_before",
    "enqueued_params",
    "fail_running_trial",
    "finish_trial",
    "in_process_nsga2_sampler",
    "next_trial_number",
    "nsga2_batch_drawer",
    "open_sqlite_study",
    "ray_ask_trial",
    "ray_fail_trial",
    "ray_forget_trial",
    "random_batch_drawer",
    "ray_optuna_trial",
    "set_trial_attrs",
    "suggest_all",
    "trial_archs_since",
    "tune_sqlite",
    "write_trials",
]

log = logging.getLogger("hwnas.searchers")


def _storage_and_id(study: Any) -> tuple[Any, int] | None:
    """(storage, study id) of an Optuna study, or None when this Optuna keeps them elsewhere."""
    import optuna

    storage, sid = getattr(study, "_storage", None), getattr(study, "_study_id", None)
    if isinstance(storage, optuna.storages.BaseStorage) and isinstance(sid, int):
        return storage, sid
    return None


def _rdb_and_id(study: Any) -> tuple[Any, int] | None:
    """(RDBStorage with a session factory, study id) of a study on an RDB storage, else None."""
    found = _storage_and_id(study)
    rdb = _rdb_of(found[0]) if found is not None else None
    if rdb is None or getattr(rdb, "scoped_session", None) is None:
        return None
    return rdb, found[1]


@contextmanager
def _transaction(rdb: Any) -> Iterator[Any]:
    """A session of `rdb` committed at the end of the block, rolled back if it raises."""
    session = rdb.scoped_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _rdb_of(storage: Any) -> Any | None:
    """The RDBStorage behind a storage (Optuna wraps it in `_CachedStorage`), or None."""
    import optuna

    inner = getattr(storage, "_backend", storage)
    return inner if isinstance(inner, optuna.storages.RDBStorage) else None


# ---- counting and failing trials -------------------------------------------------------------------
def count_trials(study: Any, states: Sequence[Any]) -> int:
    """How many trials of `study` are in `states`: one COUNT on the storage (Optuna has no public count)."""
    n = _count_trials_private(study, states)
    return _count_trials_public(study, states) if n is None else n


def count_trials_before(study: Any, states: Sequence[Any], number: int) -> int:
    """How many trials of `study` numbered below `number` are in `states`."""
    n = _count_trials_sql(study, states, before=number)
    if n is not None:
        return n
    return sum(1 for t in study.get_trials(deepcopy=False, states=tuple(states)) if t.number < number)


def _count_trials_private(study: Any, states: Sequence[Any]) -> int | None:
    n = _count_trials_sql(study, states)
    if n is not None:
        return n
    found = _storage_and_id(study)
    if found is None:
        return None
    storage, sid = found
    return int(storage.get_n_trials(sid, tuple(states)))


def _count_trials_sql(study: Any, states: Sequence[Any], *, before: int | None = None) -> int | None:
    """One `SELECT COUNT` on an RDB storage. Optuna's `get_n_trials` is `len(get_all_trials())`:
    through its cache that re-reads every running trial (params and attributes) and sorts the whole
    study, which a worker did 3-4 times a trial (18 % of a trial's cost in `search_scaling`)."""
    found = _rdb_and_id(study)
    if found is None:
        return None
    try:
        from optuna.storages._rdb import models
        from sqlalchemy import func
    except ImportError:
        return None
    tm = getattr(models, "TrialModel", None)
    if tm is None or not all(hasattr(tm, c) for c in ("trial_id", "study_id", "state", "number")):
        return None
    rdb, study_id = found
    session = rdb.scoped_session()
    try:
        q = session.query(func.count(tm.trial_id)).filter(tm.study_id == study_id, tm.state.in_(list(states)))
        if before is not None:
            q = q.filter(tm.number < before)
        return int(q.scalar() or 0)
    finally:
        session.close()


def _count_trials_public(study: Any, states: Sequence[Any]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def ask_trial(study: Any, user_attrs: Mapping[str, Any] | None = None) -> Any:
    """`study.ask()`, without its re-read of every running trial when no trial waits, and with
    `user_attrs` written in the transaction that creates the trial.

    `Study.ask` first looks for a WAITING (enqueued) trial through `get_all_trials(states=WAITING)`,
    and Optuna's cache answers that by re-reading every unfinished trial in full: O(workers) trials a
    ask, 53 % of a worker's time with 32 workers on one PostgreSQL study (`search_scaling`, py-spy).
    On an RDB storage one COUNT says whether any trial waits. If none does, the trial is created
    RUNNING from a template that carries `user_attrs` (a worker's stamp): no other process ever sees
    it without them, so a `--resume` elsewhere cannot take it for a killed worker's trial. A trial
    enqueued in between is popped by the next ask; a popped trial gets `user_attrs` just after."""
    import datetime

    import optuna

    found = _storage_and_id(study)
    storage = found[0] if found is not None else None
    if storage is None or not callable(getattr(storage, "create_new_trial", None)):
        return _ask_public(study, user_attrs)
    waiting = _count_trials_sql(study, (optuna.trial.TrialState.WAITING,)) if _rdb_of(storage) is not None else None
    if waiting is None:
        waiting = _count_trials_public(study, (optuna.trial.TrialState.WAITING,))
    if waiting > 0:
        return _ask_public(study, user_attrs)
    local = getattr(study, "_thread_local", None)
    if local is not None and hasattr(local, "cached_all_trials"):
        local.cached_all_trials = None  # what ask does: the next reads see the storage, not a snapshot
    template = optuna.trial.FrozenTrial(
        number=-1, state=optuna.trial.TrialState.RUNNING, value=None, values=None,
        datetime_start=datetime.datetime.now(), datetime_complete=None, params={}, distributions={},
        user_attrs=dict(user_attrs or {}), system_attrs={}, intermediate_values={}, trial_id=-1)
    return optuna.trial.Trial(study, storage.create_new_trial(found[1], template_trial=template))


def _ask_public(study: Any, user_attrs: Mapping[str, Any] | None) -> Any:
    trial = study.ask()
    for k, v in (user_attrs or {}).items():
        trial.set_user_attr(k, v)
    return trial


def fail_running_trial(study: Any, trial: Any, message: str) -> bool:
    """Mark a RUNNING trial (a FrozenTrial, e.g. left by a killed process) FAIL, `message` as its
    `error` user attribute. False when it finished meanwhile (a live worker told it): not stale."""
    done = _fail_running_trial_private(study, trial, message)
    return _fail_running_trial_public(study, trial) if done is None else done


def _fail_running_trial_private(study: Any, trial: Any, message: str) -> bool | None:
    import optuna

    found, tid = _storage_and_id(study), getattr(trial, "_trial_id", None)
    if found is None or not isinstance(tid, int):
        return None
    storage = found[0]
    try:
        storage.set_trial_user_attr(tid, "error", message)
        storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _fail_running_trial_public(study: Any, trial: Any) -> bool:
    """`study.tell(number, state=FAIL)`. Optuna's public API writes user attributes only through a
    live `Trial`, so this path marks the trial FAIL without the message."""
    import optuna

    try:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    except ValueError as e:  # "Cannot tell a COMPLETE trial.": it finished after it was listed
        if "Cannot tell" in str(e):
            return False
        raise
    return True


# ---- the archs a study holds, read from a trial number on ---------------------------------------------
def trial_archs_since(study: Any, number: int) -> list[tuple[int, str, str | None, str | None]]:
    """(number, state name, `arch` user attribute or None, `error` user attribute or None) of every
    trial numbered `number` or later, in number order: on an RDB storage one SQL query (a worker asks
    this before every trial), else through `study.get_trials`."""
    rows = _trial_archs_sql(study, number)
    return _trial_archs_public(study, number) if rows is None else rows


def _trial_archs_public(study: Any, number: int) -> list[tuple[int, str, str | None, str | None]]:
    trials = study.get_trials(deepcopy=False)
    # Trials are listed in number order with numbers 0, 1, ...: start at `number` without a scan
    # (and with nothing new, return at once instead of scanning from trial 0).
    if number >= len(trials) and (not trials or trials[-1].number == len(trials) - 1):
        return []
    start = number if number < len(trials) and trials[number].number == number else 0
    return [(t.number, t.state.name, t.user_attrs.get("arch"), t.user_attrs.get("error"))
            for t in trials[start:] if t.number >= number]


def _trial_archs_sql(study: Any, number: int) -> list[tuple[int, str, str | None, str | None]] | None:
    found = _storage_and_id(study)
    rdb = _rdb_of(found[0]) if found is not None else None
    engine = getattr(rdb, "engine", None)
    if engine is None:
        return None
    ph = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
    if ph is None:
        return None
    dbapi = getattr(engine.dialect, "loaded_dbapi", None) or getattr(engine.dialect, "dbapi", None)
    db_error = getattr(dbapi, "Error", sqlite3.Error)
    sql = ("SELECT t.number, t.state, a.key, a.value_json FROM trials t LEFT JOIN trial_user_attributes a "
           "ON a.trial_id = t.trial_id AND a.key IN ('arch', 'error') "
           f"WHERE t.study_id = {ph} AND t.number >= {ph} ORDER BY t.number")
    con = engine.raw_connection()
    try:
        cur = con.cursor()
        cur.execute(sql, (found[1], number))
        rows = cur.fetchall()
    except db_error as e:
        log.warning("reading Optuna's trials table failed (%s); reading the study through Optuna instead", type(e).__name__)
        return None
    finally:
        con.close()
    out: dict[int, list[Any]] = {}
    for num, state, key, vj in rows:
        r = out.setdefault(int(num), [int(num), str(getattr(state, "name", state)), None, None])
        if key == "arch":
            r[2] = _json_str(vj)
        elif key == "error":
            r[3] = json.loads(vj)
    return [tuple(r) for r in out.values()]  # type: ignore[misc]


def enqueued_params(trial: Any) -> dict[str, Any] | None:
    """The parameters a trial was enqueued with (`study.enqueue_trial`), or None: Optuna keeps them
    in a system attribute that the trial's suggestions read before asking the sampler."""
    fixed = getattr(trial, "system_attrs", {}).get("fixed_params")
    return dict(fixed) if isinstance(fixed, dict) else None


# ---- a trial's parameters and attributes in one transaction ---------------------------------------------
def suggest_all(trial: Any, distributions: Mapping[str, Any],
                user_attrs: Any = None) -> dict[str, Any]:
    """`trial.suggest_categorical` for every (name, distribution), then `trial.set_user_attr` for each
    item of `user_attrs(params)` (a callable of the suggested params, or None): Optuna's own choice
    of each value (enqueued, relative, independent), with every row written in one transaction on
    an RDB storage. Optuna commits each parameter alone: 25 commits for `fmnist-mbv3`, 44 % of a
    trial's cost on SQLite (`search_scaling`). Other storages take the public calls one by one."""
    storage = getattr(trial, "storage", None)
    if not _buffered_writes_recognised(trial, storage):
        params = {k: trial.suggest_categorical(k, d.choices) for k, d in distributions.items()}
        for k, v in (user_attrs(params) if user_attrs else {}).items():
            trial.set_user_attr(k, v)
        return params
    buf = _RecordedWrites(storage)
    trial.storage = buf  # Trial._suggest writes through `self.storage`: record instead of committing
    try:
        params = {k: trial.suggest_categorical(k, d.choices) for k, d in distributions.items()}
        for k, v in (user_attrs(params) if user_attrs else {}).items():
            trial.set_user_attr(k, v)
    finally:
        trial.storage = storage
    _write_recorded(storage, trial._trial_id, buf)
    return params


def set_trial_attrs(trial: Any, user_attrs: Mapping[str, Any], constraints: Mapping[str, float]) -> None:
    """`trial.set_user_attr` for each of `user_attrs` and `trial.set_constraint` for each of
    `constraints`, in one transaction on an RDB storage."""
    storage = getattr(trial, "storage", None)
    if not _buffered_writes_recognised(trial, storage):
        for k, v in user_attrs.items():
            trial.set_user_attr(k, v)
        for k, v in constraints.items():
            trial.set_constraint(k, v)
        return
    buf = _RecordedWrites(storage)
    trial.storage = buf
    try:
        for k, v in user_attrs.items():
            trial.set_user_attr(k, v)
        for k, v in constraints.items():
            trial.set_constraint(k, v)
    finally:
        trial.storage = storage
    _write_recorded(storage, trial._trial_id, buf)


def _buffered_writes_recognised(trial: Any, storage: Any) -> bool:
    """A live `optuna.Trial` on a `_CachedStorage` over an RDB storage, as this Optuna has them."""
    import optuna

    rdb = _rdb_of(storage) if storage is not None else None
    return (type(trial) is optuna.trial.Trial and isinstance(getattr(trial, "_trial_id", None), int)
            and rdb is not None and rdb is not storage and getattr(rdb, "scoped_session", None) is not None
            and all(hasattr(storage, n) for n in ("_lock", "_studies", "_trial_id_to_study_id_and_number"))
            and callable(getattr(rdb, "check_trial_is_updatable", None)))


class _RecordedWrites:
    """Stands in for a trial's storage while it suggests: records the parameter and attribute writes
    (reads go to the storage), so `_write_recorded` commits them at once."""

    def __init__(self, storage: Any):
        self._storage = storage
        self.params: list[tuple[str, float, Any]] = []
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}

    def set_trial_param(self, trial_id: int, name: str, value_internal: float, distribution: Any) -> None:
        self.params.append((name, value_internal, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.system_attrs[key] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _write_recorded(storage: Any, trial_id: int, rec: _RecordedWrites) -> None:
    """The rows Optuna's `set_trial_param` / `set_trial_user_attr` / `set_trial_system_attr` write,
    with the same checks (the trial is still running, each distribution is compatible with the
    study's), in one transaction: a read of the trial's state and study, one of its attribute keys
    per attribute table, a multi-row INSERT per table, one commit (Optuna: a session, 2-3 queries
    and a commit per row). The cache learns the new distributions as Optuna's does."""
    if not (rec.params or rec.user_attrs or rec.system_attrs):
        return
    from optuna import distributions as od
    from optuna.storages._rdb import models
    from sqlalchemy import insert, select, update

    rdb = storage._backend
    tm = models.TrialModel
    with storage._lock:
        study_id = storage._trial_id_to_study_id_and_number[trial_id][0]
        known = storage._studies[study_id].param_distribution
        with _transaction(rdb) as session:
            found = session.execute(select(tm.state).where(tm.trial_id == trial_id)).one_or_none()
            if found is None:
                raise KeyError(f"no trial with trial_id {trial_id}")
            rdb.check_trial_is_updatable(trial_id, found[0])
            learnt, rows = {}, []
            for name, value, dist in rec.params:
                prev = known.get(name)
                if prev is None:  # first time this process sees the name: the study's, as Optuna reads it
                    pm = models.TrialParamModel
                    first = session.execute(select(pm.distribution_json).join(tm, pm.trial_id == tm.trial_id)
                                            .where(tm.study_id == study_id, pm.param_name == name).limit(1)).first()
                    prev = od.json_to_distribution(first[0]) if first is not None else None
                if prev is not None:
                    od.check_distribution_compatibility(prev, dist)
                learnt.setdefault(name, dist)
                rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                             "distribution_json": od.distribution_to_json(dist)})
            if rows:
                session.execute(insert(models.TrialParamModel), rows)
            for model, attrs in ((models.TrialUserAttributeModel, rec.user_attrs),
                                 (models.TrialSystemAttributeModel, rec.system_attrs)):
                if not attrs:
                    continue
                have = {k for (k,) in session.execute(select(model.key).where(model.trial_id == trial_id))}
                new = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items() if k not in have]
                if new:
                    session.execute(insert(model), new)
                for k, v in attrs.items():  # an attribute set again replaces the old row, as Optuna's setters do
                    if k in have:
                        session.execute(update(model).where(model.trial_id == trial_id, model.key == k)
                                        .values(value_json=json.dumps(v)))
        for name, dist in learnt.items():
            known.setdefault(name, dist)


# ---- finishing a trial and writing many at once ---------------------------------------------------------
def finish_trial(study: Any, trial: Any, params: Mapping[str, Any], distributions: Mapping[str, Any],
                 values: Sequence[float], user_attrs: Mapping[str, Any], constraints: Mapping[str, float]) -> None:
    """Record `params` on a RUNNING trial asked from `study`, with its user attributes and
    constraints, and tell it COMPLETE with `values`: what `trial.suggest_*`, `set_user_attr`,
    `set_constraint` and `study.tell` do, as one replacement of the trial on an in-memory storage
    (those calls copy the trial on every parameter: ~5 ms per trial of a 25-choice space), else
    through those calls."""
    if not _finish_trial_in_memory(study, trial, params, distributions, values, user_attrs, constraints):
        for k, d in distributions.items():
            trial.suggest_categorical(k, d.choices)
        for k, v in user_attrs.items():
            trial.set_user_attr(k, v)
        for k, v in constraints.items():
            trial.set_constraint(k, v)
        study.tell(trial, list(values))


def _finish_trial_in_memory(study: Any, trial: Any, params: Mapping[str, Any], distributions: Mapping[str, Any],
                            values: Sequence[float], user_attrs: Mapping[str, Any], constraints: Mapping[str, float]) -> bool:
    import copy
    from datetime import datetime

    import optuna

    found, tid = _storage_and_id(study), getattr(trial, "_trial_id", None)
    if found is None or not isinstance(tid, int) or not isinstance(found[0], optuna.storages.InMemoryStorage):
        return False
    storage, sid = found
    if not all(callable(getattr(storage, n, None)) for n in ("_get_trial", "_set_trial", "_update_cache")) \
            or not hasattr(storage, "_studies") or not hasattr(storage, "_lock"):
        return False
    fixed = enqueued_params(storage._get_trial(tid)) or {}
    with storage._lock:
        running = storage._get_trial(tid)
        if running.state != optuna.trial.TrialState.RUNNING:
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {running.number} is already finished")
        known = storage._studies[sid].param_distribution
        for k, d in distributions.items():
            if k in known and known[k] is not d:
                optuna.distributions.check_distribution_compatibility(known[k], d)
            known[k] = d
        t = copy.copy(running)
        t.params = {k: fixed.get(k, v) for k, v in params.items()}
        t.distributions = dict(distributions)
        t.user_attrs = {**running.user_attrs, **user_attrs}
        t.system_attrs = {**running.system_attrs, **{f"constraints:{k}": float(v) for k, v in constraints.items()}}
        storage._set_trial(tid, t)
    # As study.tell: the sampler sees the trial (still RUNNING) before its state is set.
    study.sampler.after_trial(study, t, optuna.trial.TrialState.COMPLETE, list(values))
    with storage._lock:
        done = copy.copy(storage._get_trial(tid))
        done.state = optuna.trial.TrialState.COMPLETE
        done.values = [float(v) for v in values]
        done.datetime_complete = datetime.now()
        storage._set_trial(tid, done)
        storage._update_cache(tid, sid)
    return True


def _in_memory(study: Any) -> tuple[Any, int] | None:
    """(InMemoryStorage, study id) when `study` is on an in-memory storage whose trial lists this
    module knows how to append to, else None."""
    import optuna

    found = _storage_and_id(study)
    if found is None or not isinstance(found[0], optuna.storages.InMemoryStorage):
        return None
    storage, sid = found
    if not (hasattr(storage, "_lock") and isinstance(getattr(storage, "_studies", None), dict)
            and isinstance(getattr(storage, "_max_trial_id", None), int)
            and isinstance(getattr(storage, "_trial_id_to_study_id_and_number", None), dict)
            and callable(getattr(storage, "_update_cache", None))):
        return None
    entry = storage._studies.get(sid)
    if not isinstance(getattr(entry, "trials", None), list) or not isinstance(getattr(entry, "param_distribution", None), dict):
        return None
    return storage, sid


def next_trial_number(study: Any) -> int | None:
    """The number the next trial of an in-memory study gets (its trial count); None when the study is
    not on an in-memory storage `append_finished_trials` writes to directly."""
    found = _in_memory(study)
    if found is None:
        return None
    storage, sid = found
    with storage._lock:
        return len(storage._studies[sid].trials)


def append_finished_trials(study: Any, trials: Sequence[Any]) -> list[Any]:
    """Append finished FrozenTrials to `study`, numbered in order after its last trial, and return
    them as stored (with their numbers). On an in-memory storage they are stored as given (the
    caller hands them over and never changes them), without the deep copy and the per-trial locking
    of `study.add_trials`, and the distributions are learnt as `set_trial_param` learns them; on any
    other storage `study.add_trials`. Samplers are not told (`after_trial` is the caller's)."""
    if not trials:
        return []
    found = _in_memory(study)
    if found is None:
        first = len(study.get_trials(deepcopy=False))
        study.add_trials(trials)
        return study.get_trials(deepcopy=False)[first:first + len(trials)]
    import optuna

    storage, sid = found
    for t in trials:
        if not t.state.is_finished():
            raise ValueError(f"trial state {t.state.name} is not finished")
    with storage._lock:
        entry = storage._studies[sid]
        known = entry.param_distribution
        for t in trials:
            for k, d in t.distributions.items():
                if k in known and known[k] is not d:
                    optuna.distributions.check_distribution_compatibility(known[k], d)
                known[k] = d
        for t in trials:
            storage._max_trial_id += 1
            t._trial_id = storage._max_trial_id
            t.number = len(entry.trials)
            storage._trial_id_to_study_id_and_number[t._trial_id] = (sid, t.number)
            entry.trials.append(t)
            storage._update_cache(t._trial_id, sid)
    local = getattr(study, "_thread_local", None)
    if local is not None and hasattr(local, "cached_all_trials"):
        local.cached_all_trials = None  # as ask does: later reads see the new trials
    return list(trials)


def write_trials(study: Any, trials: Sequence[Any]) -> None:
    """Append finished FrozenTrials to `study` (numbered after its last trial, in the given order):
    on an RDB storage in one transaction (~1 ms a trial on SQLite instead of one commit per
    trial), else `study.add_trials`."""
    if trials and not _write_trials_rdb(study, trials):
        study.add_trials(trials)


def _write_trials_rdb(study: Any, trials: Sequence[Any]) -> bool:
    """Optuna's own models, one flush for the trial rows and one multi-row INSERT per child table.

    Optuna's `create_new_trial(template_trial=...)` queries the study row and flushes once per
    parameter and attribute (~60 round trips for a 25-choice trial); the rows written here are the
    ones it writes (`tests/test_search_generation.py` reads both studies back and compares)."""
    found = _rdb_and_id(study)
    if found is None:
        return False
    rdb = found[0]
    try:
        from optuna import distributions as od
        from optuna.storages._rdb import models
        from sqlalchemy import insert
    except ImportError:
        return False
    needed = ("StudyModel", "TrialModel", "TrialParamModel", "TrialValueModel", "TrialUserAttributeModel",
              "TrialSystemAttributeModel")
    if not all(hasattr(models, n) for n in needed) or not callable(getattr(models.TrialValueModel, "value_to_stored_repr", None)):
        return False
    for t in trials:
        t._validate()  # what add_trials checks
        if t.intermediate_values:
            return False  # not written here: Optuna's path writes them
    study_id = found[1]
    with _transaction(rdb) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        rows = [models.TrialModel(study_id=study_id, number=None, state=t.state, datetime_start=t.datetime_start,
                                  datetime_complete=t.datetime_complete) for t in trials]
        session.add_all(rows)
        session.flush()
        base = rows[0].count_past_trials(session)
        for i, r in enumerate(rows):
            r.number = base + i
        params, values, uattrs, sattrs = [], [], [], []
        for r, t in zip(rows, trials):
            tid = r.trial_id
            for k, v in t.params.items():
                d = t.distributions[k]
                params.append({"trial_id": tid, "param_name": k, "param_value": d.to_internal_repr(v),
                               "distribution_json": od.distribution_to_json(d)})
            for j, v in enumerate(t.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(v)
                values.append({"trial_id": tid, "objective": j, "value": stored, "value_type": kind})
            uattrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
            sattrs += [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in t.system_attrs.items()]
        for model, batch in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                             (models.TrialUserAttributeModel, uattrs), (models.TrialSystemAttributeModel, sattrs)):
            if batch:
                session.execute(insert(model), batch)
    return True


# ---- NSGA-II without per-trial scans of the study ---------------------------------------------------
def _ga_hooks_recognised() -> bool:
    import optuna

    cls = optuna.samplers.NSGAIISampler
    return all(callable(getattr(cls, name, None)) for name in
               ("_get_generation_key", "get_trial_generation", "get_parent_population", "get_population",
                "infer_relative_search_space", "after_trial"))


def in_process_nsga2_sampler(distributions: Mapping[str, Any], *, seed: int | None, population_size: int) -> Any:
    """NSGA-II that keeps per-generation state instead of rescanning the study (see
    `hwnas.searchers._optuna.in_process_nsga2` for when it is used and why it samples the same);
    Optuna's own `NSGAIISampler` when this Optuna's GA hooks are not the ones it overrides."""
    import optuna
    from optuna.trial import TrialState

    if not _ga_hooks_recognised():
        log.info("optuna %s: NSGA-II hooks not recognised; using optuna.samplers.NSGAIISampler", optuna.__version__)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)

    class InProcessNSGAIISampler(optuna.samplers.NSGAIISampler):
        def __init__(self, distributions: Mapping[str, Any], **kw: Any):
            super().__init__(**kw)
            # Optuna's intersection search space is sorted by name; single values are sampled independently
            self._relative = {k: d for k, d in sorted(distributions.items()) if not d.single()}
            self._complete_per_generation: dict[int, int] = {}
            self._complete_numbers: dict[int, list[int]] = {}  # generation -> numbers of its COMPLETE trials
            self._parents: dict[int, list[Any]] = {}

        def get_population(self, study: Any, generation: int) -> list[Any]:
            # Optuna filters every COMPLETE trial of the study by its generation attribute: the trials
            # counted in `after_trial` instead, taken from the study by number (in trial order, as Optuna's)
            numbers = sorted(self._complete_numbers.get(generation, ()))
            trials = study.get_trials(deepcopy=False)
            if all(n < len(trials) and trials[n].number == n and trials[n].state == TrialState.COMPLETE for n in numbers):
                return [trials[n] for n in numbers]
            return super().get_population(study, generation)

        def get_parent_population(self, study: Any, generation: int) -> list[Any]:
            # Optuna selects a generation's parents once and caches their ids in the study, then
            # rebuilds the list from all trials on every later call (in trial order): the same
            # list, kept here instead.
            cached = self._parents.get(generation)
            if cached is not None:
                return list(cached)
            parents = super().get_parent_population(study, generation)
            if generation > 0:
                self._parents[generation] = sorted(parents, key=lambda t: t.number)
            return parents

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return dict(self._relative)

        def get_trial_generation(self, study: Any, trial: Any) -> int:
            key = self._get_generation_key()
            generation = trial.system_attrs.get(key)
            if generation is not None:
                return generation
            generation = self.next_generation()
            study._storage.set_trial_system_attr(trial._trial_id, key, generation)  # as Optuna's own does
            return generation

        def next_generation(self) -> int:
            """The generation a trial asked now belongs to (from the counts of completed trials)."""
            counts = self._complete_per_generation
            top = max(counts) if counts else 0
            return top if counts.get(top, 0) < self.population_size else top + 1

        def batch_drawer(self, study: Any, distributions: Mapping[str, Any]) -> Any:
            """A drawer of the next trials' params without a trial each (`nsga2_batch_drawer`); None
            when this sampler's strategies are not the defaults it replays."""
            return nsga2_batch_drawer(self, study, distributions)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            super().after_trial(study, trial, state, values)
            generation = trial.system_attrs.get(self._get_generation_key())
            if state == TrialState.COMPLETE and generation is not None and generation >= 0:
                self._complete_per_generation[generation] = self._complete_per_generation.get(generation, 0) + 1
                self._complete_numbers.setdefault(generation, []).append(trial.number)

    # Optuna names a GA sampler's trial and study keys after its class: take NSGAIISampler's, so the study
    # reads the same to it (a study resumed by NSGAIISampler sees these generations and parents).
    base = optuna.samplers.NSGAIISampler
    InProcessNSGAIISampler._GENERATION_KEY = base._get_generation_key()
    if callable(getattr(base, "_get_parent_cache_key_prefix", None)):
        InProcessNSGAIISampler._PARENT_CACHE_KEY_PREFIX = base._get_parent_cache_key_prefix()
    return InProcessNSGAIISampler(distributions, seed=seed, population_size=population_size)


def _nsga2_replayable(sampler: Any, distributions: Mapping[str, Any]) -> bool:
    """Whether `nsga2_batch_drawer` can replay `sampler`'s draws: Optuna's default child generation
    (uniform crossover, no mutation operator, random re-draw of mutated params) and random sampler,
    categorical distributions only."""
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import RandomSampler
    from optuna.samplers.nsgaii import UniformCrossover
    from optuna.samplers.nsgaii._child_generation_strategy import NSGAIIChildGenerationStrategy

    strat = getattr(sampler, "_child_generation_strategy", None)
    rs = getattr(sampler, "_random_sampler", None)
    return (type(strat) is NSGAIIChildGenerationStrategy and type(rs) is RandomSampler
            and type(getattr(strat, "_crossover", None)) is UniformCrossover
            and getattr(strat, "_mutation", 0) is None and getattr(strat, "_constraints_func", 0) is None
            and all(hasattr(strat, n) for n in ("_crossover_prob", "_mutation_prob", "_swapping_prob", "_rng"))
            and hasattr(getattr(rs, "_rng", None), "rng")
            and all(type(d) is CategoricalDistribution for d in distributions.values()))


def nsga2_batch_drawer(sampler: Any, study: Any, distributions: Mapping[str, Any]) -> Any:
    """`draw(number) -> (params, None, system_attrs)`: what a trial asked now would be given by
    `DedupSampler(sampler)` (its relative sample, then an independent draw of every parameter the
    child lacks, in `distributions` order), without creating the trial; None when not replayable.

    It replays `NSGAIIChildGenerationStrategy` and `RandomSampler.sample_independent` call for call
    on the same random states (so the trials are the ones Optuna's NSGAIISampler draws, tested): a
    generation's parents, their parameters and the dominance between two of them are looked up once
    instead of per child, and the per-parameter draws are one array draw (`RandomState.rand(n)` is
    the stream of n calls to `rand()`). Trials of one batch share a generation, as asked ones do
    when none is told in between."""
    from optuna.samplers.nsgaii._constraints_evaluation import _constrained_dominates
    from optuna.study._constrained_optimization import _is_constrained_optimization
    from optuna.study._multi_objective import _dominates, _normalize_value
    from optuna.trial import TrialState

    if not _nsga2_replayable(sampler, distributions):
        return None
    strat = sampler._child_generation_strategy
    generation = sampler.next_generation()
    sys_attrs = {sampler._get_generation_key(): generation}
    rel_names = list(sampler.infer_relative_search_space(study, None))
    n_rel = len(rel_names)
    directions = study.directions
    rows: dict[int, list[Any]] = {}  # a parent's trial id -> its relative params
    beats: dict[tuple[int, int], bool] = {}  # (trial id, trial id) -> whether the first dominates
    dominates = None
    constrained = False
    seen: dict[int, tuple[list[float], bool, float]] = {}  # trial id -> normalised values, feasible, violation
    cprob, swap = strat._crossover_prob, strat._swapping_prob
    mprob = strat._mutation_prob if strat._mutation_prob is not None else 1.0 / max(1.0, n_rel)
    indep = [(k, d.choices) for k, d in distributions.items()]

    def tournament(rng: Any, pool: list[Any]) -> Any:
        # `rng.choice(n)` of an int n is `rng.randint(0, n)` (the same draw; tested), at a third of the cost
        a, b = pool[rng.randint(0, len(pool))], pool[rng.randint(0, len(pool))]
        won = beats.get((a._trial_id, b._trial_id))
        if won is None:
            won = beats[(a._trial_id, b._trial_id)] = _dominates_fast(a, b)
        return a if won else b

    def summary(t: Any) -> tuple[list[float], bool, float]:
        got = seen.get(t._trial_id)
        if got is None:
            c = t.constraints.values()
            got = seen[t._trial_id] = ([_normalize_value(v, d) for v, d in zip(t.values, directions)],
                                       all(v <= 0 for v in c), sum(v for v in c if v > 0))
        return got

    def _dominates_fast(a: Any, b: Any) -> bool:
        """`dominates(a, b, directions)` from each trial's normalised values and constraints, read once."""
        if a.state != TrialState.COMPLETE or b.state != TrialState.COMPLETE or len(a.values) != len(b.values) \
                or len(a.values) != len(directions):
            return bool(dominates(a, b, directions))  # Optuna's own answer (and errors) for anything else
        (va, fa, xa), (vb, fb, xb) = summary(a), summary(b)
        if constrained and not (fa and fb):
            return fa if fa != fb else xa < xb
        return va != vb and all(x <= y for x, y in zip(va, vb))

    def row(t: Any) -> list[Any]:
        r = rows.get(t._trial_id)
        if r is None:
            r = rows[t._trial_id] = [t.params[k] for k in rel_names]
        return r

    def draw(number: int) -> tuple[dict[str, Any], None, dict[str, Any]]:
        nonlocal dominates, constrained
        rel: dict[str, Any] = {}
        # Asked each draw, as Optuna's sample_relative does: a generation's first call returns the parents
        # in selection order, later ones in trial order.
        parents = sampler.get_parent_population(study, generation) if n_rel else []
        if parents:
            if dominates is None:
                constrained = _is_constrained_optimization(parents)
                dominates = _constrained_dominates if constrained else _dominates
            rng = strat._rng.rng
            if rng.rand() < cprob:
                first = tournament(rng, parents)
                second = tournament(rng, [t for t in parents if t is not first])
                take_second = rng.rand(n_rel) >= swap
                a, b = row(first), row(second)
                child = [b[i] if take_second[i] else a[i] for i in range(n_rel)]
            else:
                child = row(parents[rng.randint(0, len(parents))])
            kept = rng.rand(n_rel) >= mprob
            rel = {k: v for k, v, keep in zip(rel_names, child, kept) if keep}
        irng = sampler._random_sampler._rng.rng
        params = {k: rel[k] if k in rel else choices[int(irng.random_sample(len(choices)).argmax())]
                  for k, choices in indep}
        return params, None, dict(sys_attrs)

    return draw


def random_batch_drawer(sampler: Any, distributions: Mapping[str, Any]) -> Any:
    """`draw(number) -> (params, None, {})` for Optuna's `RandomSampler` wrapped by a DedupSampler:
    `RandomSampler.sample_independent` of every parameter in `distributions` order, replayed on its
    random state (a categorical draw is the argmax of one uniform draw per choice); None when the
    sampler is not a plain RandomSampler or a distribution is not categorical."""
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import RandomSampler

    if type(sampler) is not RandomSampler or not hasattr(getattr(sampler, "_rng", None), "rng") \
            or not all(type(d) is CategoricalDistribution for d in distributions.values()):
        return None
    indep = [(k, d.choices) for k, d in distributions.items()]

    def draw(number: int) -> tuple[dict[str, Any], None, dict[str, Any]]:
        rng = sampler._rng.rng
        return {k: choices[int(rng.random_sample(len(choices)).argmax())] for k, choices in indep}, None, {}

    return draw


# ---- SQLite tuning ------------------------------------------------------------------------------------
def tune_sqlite(storage: Any) -> None:
    """WAL journal + synchronous=NORMAL on every connection of an RDBStorage's SQLite engine.

    Optuna commits once per parameter; with SQLite's default rollback journal each commit is an
    fsync, about 1 s per trial here. WAL with synchronous=NORMAL keeps every committed trial across
    a killed process (only an OS crash may lose the last commits) and is ~50x faster. Optuna does
    not document `RDBStorage.engine`: without one, Optuna's defaults stay (slower, as safe).
    """
    engine = getattr(_rdb_of(storage), "engine", None)
    if engine is None:
        log.info("no SQLAlchemy engine on %s; SQLite keeps its default journal", type(storage).__name__)
        return
    from sqlalchemy import event

    def on_connect(dbapi_con: Any, _record: Any) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened during schema setup did not get the pragmas


# ---- reading a study's COMPLETE trials at once ---------------------------------------------------------
@dataclass(frozen=True)
class TrialTable:
    """A study's COMPLETE trials as arrays, in trial-number order."""

    numbers: np.ndarray  # (n,) trial numbers
    archs: list[str]
    values: np.ndarray  # (n, m) objective values as reported (native directions)
    metrics: dict[str, np.ndarray]  # every metric recorded (NaN where a trial lacks it)
    violations: np.ndarray  # (n, b) Optuna constraint values (<= 0 met), columns = budget keys


def complete_trials(study: Any, m: int, budget_keys: Sequence[str]) -> TrialTable:
    """The COMPLETE trials of an Optuna study: on an RDB storage one SQL query per table (a
    100,000-trial study in well under a second), else through `study.get_trials`."""
    table = _complete_trials_sql(study, m, budget_keys)
    return complete_trials_public(study, m, budget_keys) if table is None else table


def complete_trials_public(study: Any, m: int, budget_keys: Sequence[str]) -> TrialTable:
    """`complete_trials` through Optuna's public API only (any storage; slow on large studies)."""
    import optuna

    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    n = len(trials)
    numbers = np.fromiter((t.number for t in trials), dtype=np.int64, count=n)
    vals = np.array([t.values for t in trials], dtype=float).reshape(n, m)
    archs = [t.user_attrs.get("arch", "") for t in trials]
    mets = [t.user_attrs.get("metrics", {}) for t in trials]
    viol = np.full((n, len(budget_keys)), np.nan)
    for i, t in enumerate(trials):
        c = t.constraints
        for j, k in enumerate(budget_keys):
            if k in c:
                viol[i, j] = c[k]
    return TrialTable(numbers, archs, vals, _metrics_columns(mets), viol)


def _complete_trials_sql(study: Any, m: int, budget_keys: Sequence[str]) -> TrialTable | None:
    """Straight from Optuna's RDB tables (DB-API fetchall); None when the storage or tables are not recognised."""
    found = _storage_and_id(study)
    rdb = _rdb_of(found[0]) if found is not None else None
    engine = getattr(rdb, "engine", None)
    if engine is None:
        return None
    dbapi = getattr(engine.dialect, "loaded_dbapi", None) or getattr(engine.dialect, "dbapi", None)
    db_error = getattr(dbapi, "Error", sqlite3.Error)
    con = engine.raw_connection()
    try:
        return _read_tables(con, engine.dialect.paramstyle, found[1], m, budget_keys)
    except db_error as e:  # a table or column this Optuna does not have: its public API still reads the study
        log.warning("reading Optuna's tables failed (%s: %s); reading the study through Optuna instead",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None
    finally:
        con.close()


def _metrics_columns(dicts: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    names: dict[str, None] = {}
    for d in dicts[:64]:
        names.update(dict.fromkeys(d))
    cols = {}
    for k in names:
        cols[k] = np.fromiter((d.get(k, math.nan) for d in dicts), dtype=float, count=len(dicts))
    return cols


def _json_str(vj: str) -> str:
    # Arch strings hold no quotes or backslashes: strip the JSON quotes without a full parse.
    return vj[1:-1] if "\\" not in vj else json.loads(vj)


def _read_tables(con: Any, paramstyle: str, study_id: int, m: int, budget_keys: Sequence[str]) -> TrialTable | None:
    """The reading itself, on any DB-API connection to Optuna's tables (None: unknown paramstyle)."""
    where = "t.study_id = ? AND t.state = 'COMPLETE'"
    cur = con.cursor()
    if paramstyle != "qmark":  # postgresql/mysql drivers use %s / named styles
        where = where.replace("?", "%s") if paramstyle in ("format", "pyformat") else None
    if where is None:
        return None

    def q(sql: str) -> list[tuple]:
        cur.execute(sql.format(where=where), (study_id,))
        return cur.fetchall()

    rows = q("SELECT t.trial_id, t.number FROM trials t WHERE {where} ORDER BY t.number")
    if not rows:
        return TrialTable(np.zeros(0, int), [], np.zeros((0, m)), {}, np.zeros((0, len(budget_keys))))
    ids = np.array(rows, dtype=np.int64)
    tid, numbers = ids[:, 0], ids[:, 1]
    pos = np.full(int(tid.max()) + 1, -1, dtype=np.int64)
    pos[tid] = np.arange(len(tid))
    vals = np.full((len(rows), m), np.nan)
    vrows = q("SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
              "JOIN trials t ON t.trial_id = v.trial_id WHERE {where}")
    if vrows:
        vt = np.array([r[0] for r in vrows], dtype=np.int64)
        vo = np.array([r[1] for r in vrows], dtype=np.int64)
        vv = np.array([r[2] if r[3] == "FINITE" else (math.inf if r[3] == "INF_POS" else -math.inf)
                       for r in vrows], dtype=float)
        ok = vo < m
        vals[pos[vt[ok]], vo[ok]] = vv[ok]
    archs = [""] * len(rows)
    raw_metrics = [""] * len(rows)
    for t_id, key, vj in q("SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                           "JOIN trials t ON t.trial_id = a.trial_id WHERE {where} "
                           "AND a.key IN ('arch', 'metrics')"):
        if key == "arch":
            archs[pos[t_id]] = _json_str(vj)
        else:
            raw_metrics[pos[t_id]] = vj
    # One parse of all metric dicts as a JSON array (much faster than 100,000 json.loads).
    mets = json.loads("[" + ",".join(r or "{}" for r in raw_metrics) + "]")
    viol = np.full((len(rows), len(budget_keys)), np.nan)
    if budget_keys:
        col = {f"constraints:{k}": i for i, k in enumerate(budget_keys)}
        for t_id, key, vj in q("SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a "
                               "JOIN trials t ON t.trial_id = a.trial_id WHERE {where} "
                               "AND a.key LIKE 'constraints:%%'" if "%s" in where else
                               "SELECT a.trial_id, a.key, a.value_json FROM trial_system_attributes a "
                               "JOIN trials t ON t.trial_id = a.trial_id WHERE {where} "
                               "AND a.key LIKE 'constraints:%'"):
            c = col.get(key)
            if c is not None:
                viol[pos[t_id], c] = float(vj)
    return TrialTable(numbers, archs, vals, _metrics_columns(mets), viol)


@dataclass(frozen=True)
class SqliteStudy:
    """One study of an Optuna SQLite file, open for reading with Python's sqlite3 alone."""

    study_name: str
    directions: list[str]  # "minimize" / "maximize"
    user_attrs: dict[str, Any]
    _con: sqlite3.Connection
    _study_id: int

    def complete_trials(self, m: int, budget_keys: Sequence[str]) -> TrialTable | None:
        """As `complete_trials`; None when the tables are not Optuna's as this module knows them."""
        try:
            return _read_tables(self._con, "qmark", self._study_id, m, budget_keys)
        except (sqlite3.Error, ValueError, KeyError):  # another schema, values that are not Optuna's JSON
            return None


@contextmanager
def open_sqlite_study(path: str | Path, study_name: str | None) -> Iterator[SqliteStudy | None]:
    """A SQLite study read with sqlite3 alone: no SQLAlchemy/Alembic import, no Optuna storage
    set-up (about 0.8 s of a `hwnas pareto` call on a 100,000-trial study).

    Yields None whenever the file is not plainly a readable Optuna study with that name (a missing
    file, another schema, an ambiguous or unknown name), so the caller takes Optuna's path and its
    errors. With `study_name=None` the file must hold exactly one study.
    """
    path = Path(path)
    if not path.is_file():
        yield None
        return
    try:
        con = sqlite3.connect(str(path), timeout=60)
    except sqlite3.Error:
        yield None
        return
    try:
        study = _sqlite_study(con, study_name)
    except (sqlite3.Error, ValueError, KeyError):  # not a database, another schema, attributes that are not JSON
        study = None
    try:
        yield study
    finally:
        con.close()


def _sqlite_study(con: sqlite3.Connection, study_name: str | None) -> SqliteStudy | None:
    studies = con.execute("SELECT study_id, study_name FROM studies").fetchall()
    match = [sid for sid, name in studies if name == study_name] if study_name is not None else \
        [sid for sid, _ in studies] if len(studies) == 1 else []
    if len(match) != 1:
        return None
    sid = match[0]
    name = study_name if study_name is not None else studies[0][1]
    directions = [str(d).lower() for _, d in con.execute(
        "SELECT objective, direction FROM study_directions WHERE study_id = ? ORDER BY objective", (sid,))]
    attrs = {k: json.loads(v) for k, v in con.execute(
        "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", (sid,))}
    return SqliteStudy(name, directions, attrs, con, sid)


# ---- Ray Tune's OptunaSearch -------------------------------------------------------------------------------
def _ray_state(searcher: Any) -> tuple[set, dict]:
    completed, asked = getattr(searcher, "_completed_trials", None), getattr(searcher, "_ot_trials", None)
    if not isinstance(completed, set) or not isinstance(asked, dict):
        import ray

        raise ConfigError(f"ray {ray.__version__}: OptunaSearch keeps no _ot_trials / _completed_trials, which "
                          "hwnas needs to store each trial's arch, metrics and budget constraints; use ray 2.60 "
                          "(the version hwnas is tested with) or runner='optuna'")
    return completed, asked


def ray_optuna_trial(searcher: Any, trial_id: str) -> Any | None:
    """The Optuna trial that Ray Tune's OptunaSearch asked for Ray trial `trial_id`; None when it
    never asked or has already completed it (OptunaSearch then handles the call itself)."""
    completed, asked = _ray_state(searcher)
    if trial_id in completed or trial_id not in asked:
        return None
    return asked[trial_id]


def ray_fail_trial(searcher: Any, trial_id: str, optuna_trial: Any) -> None:
    """Tell Optuna the trial FAILED and mark it done in OptunaSearch, as OptunaSearch does for the ones it tells."""
    import optuna

    completed, _ = _ray_state(searcher)
    optuna_trial.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
    completed.add(trial_id)


def ray_forget_trial(searcher: Any, trial_id: str) -> None:
    """Drop Ray trial `trial_id`'s Optuna trial from OptunaSearch (told already), so that asking for
    the same Ray trial again asks Optuna for a new trial."""
    completed, asked = _ray_state(searcher)
    asked.pop(trial_id, None)
    completed.discard(trial_id)


def ray_ask_trial(searcher: Any, trial_id: str, distributions: Mapping[str, Any], user_attrs: Any = None,
                  created_attrs: Mapping[str, Any] | None = None) -> Any | None:
    """Ask the Optuna trial for Ray trial `trial_id` as OptunaSearch's `suggest` would
    (`study.ask(fixed_distributions=...)`), but through `ask_trial` and `suggest_all` (one COUNT instead
    of re-reading every running trial; the params and `user_attrs(params)` in one transaction), and
    hand it to OptunaSearch, whose `suggest` then returns its params. None when OptunaSearch has no
    study to ask (its own `suggest` then asks as it always does). `created_attrs` are written with the
    trial's creation (see `ask_trial`)."""
    _, asked = _ray_state(searcher)
    study = getattr(searcher, "_ot_study", None)
    if trial_id in asked or study is None or not callable(getattr(study, "ask", None)):
        return None
    trial = ask_trial(study, created_attrs)
    suggest_all(trial, distributions, user_attrs)
    asked[trial_id] = trial
    return trial
