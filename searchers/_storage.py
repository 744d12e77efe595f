"""Optuna storages from URLs, and the study attributes that make a study self-describing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError

__all__ = ["open_storage", "storage_kind", "STUDY_ATTRS"]

# Study user attributes written by `search` so `hwnas pareto` can work from storage alone.
STUDY_ATTRS = ("hwnas.space", "hwnas.objectives", "hwnas.budgets", "hwnas.sampler", "hwnas.n_trials")
_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def storage_kind(url: str | None) -> str:
    """`memory`, `rdb` (sqlite/postgresql/mysql URL) or `journal` (a file path, or `journal:PATH`)."""
    if url is None or url in ("", ":memory:", "memory"):
        return "memory"
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if scheme in ("sqlite", "postgresql", "mysql"):
            return "rdb"
        raise ConfigError(
            f"storage URL scheme {scheme!r} not supported; use sqlite:///PATH, postgresql://..., "
            "mysql://..., a journal file path (*.log/*.journal) or journal:PATH"
        )
    if url.startswith("journal:") or url.endswith(_JOURNAL_SUFFIXES):
        return "journal"
    raise ConfigError(
        f"storage {url!r} not understood; use sqlite:///PATH, postgresql://..., a journal file "
        "(*.log, *.journal) or journal:PATH"
    )


def open_storage(url: str | None) -> Any:
    """An Optuna storage object for `url` (None -> in-memory)."""
    import optuna

    kind = storage_kind(url)
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "rdb":
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # Several worker processes share one SQLite file: wait for locks instead of failing.
            storage = _rdb(url, engine_kwargs={"connect_args": {"timeout": 60}})
            _tune_sqlite(storage.engine)
            return storage
        return _rdb(url, **_server_engine_kwargs(url))
    path = Path(url[len("journal:"):] if url.startswith("journal:") else url).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    # The open(O_EXCL) lock works on every local filesystem (symlink locks do not on some).
    backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    try:
        return optuna.storages.JournalStorage(backend)  # replays the whole journal here
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"journal storage {str(path)!r} is corrupted ({type(e).__name__}: {str(e)[:120]}); "
                          "it is not an Optuna journal file, or was altered") from None


def _rdb(url: str, **kw: Any) -> Any:
    """RDBStorage, with a bad URL / missing driver / unreachable server as a ConfigError, not a traceback."""
    import time

    import optuna
    import sqlalchemy.exc

    for attempt in range(_SCHEMA_RACE_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, **kw)
        except (ImportError, sqlalchemy.exc.SQLAlchemyError) as e:
            # Two processes opening a new database at once (workers starting together, a reader
            # polling a search that is starting) both create Optuna's tables and insert its schema
            # version: the loser sees "UNIQUE constraint failed: alembic_version" or "table ...
            # already exists". The winner's schema is complete a moment later: open again.
            if attempt < _SCHEMA_RACE_RETRIES and _schema_race(e):
                time.sleep(0.2 * (attempt + 1))
                continue
            msg = _first_line(e)
            raise ConfigError(f"cannot open storage {redact_url(url)!r}: {msg}; use sqlite:///PATH, postgresql://USER@HOST/DB "
                              "(driver installed, server reachable), or a journal file") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


_SCHEMA_RACE_RETRIES = 5
# A database server that does not answer (a host that drops packets) fails the connection after this
# many seconds instead of the driver's default (none for libpq: it waits for the OS, minutes).
CONNECT_TIMEOUT_S = 10


def _server_engine_kwargs(url: str) -> dict[str, Any]:
    """Engine arguments for a database server URL: a connect timeout (unless the URL sets one), and
    connections checked before use so a server restart between trials costs a reconnect, not a trial."""
    connect_args = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_S}
    return {"engine_kwargs": {"connect_args": connect_args, "pool_pre_ping": True}}


def redact_url(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*:)[^@/]*@", r"\1***@", url, flags=re.IGNORECASE)


def _first_line(e: Exception) -> str:
    """The first line of a driver's error (libpq's reason: refused, authentication failed, no database)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return re.sub(r"\s+", " ", text.splitlines()[0].replace("FATAL:", "")).strip()


def _schema_race(e: Exception) -> bool:
    text = str(e).lower()
    return "alembic_version" in text or "already exists" in text or "database is locked" in text


def existing_storage_path(url: str | None) -> Path | None:
    """The local file a sqlite / journal storage URL names (None for servers and memory)."""
    kind = storage_kind(url)
    if kind == "rdb" and url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).expanduser()
    if kind == "journal":
        return Path(url[len("journal:"):] if url.startswith("journal:") else url).expanduser()
    return None


def _tune_sqlite(engine: Any) -> None:
    """WAL journal + synchronous=NORMAL on every connection.

    Optuna commits once per parameter; with SQLite's default rollback journal each commit is an
    fsync, about 1 s per trial here. WAL with synchronous=NORMAL keeps every committed trial across
    a killed process (only an OS crash may lose the last commits) and is ~50x faster.
    """
    from sqlalchemy import event

    def on_connect(dbapi_con: Any, _record: Any) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened during schema setup did not get the pragmas


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def write_synthetic_study(space: Any, n: int, path: str | Path, *, distinct: int | None = None, seed: int = 0) -> str:
    """A real Optuna SQLite study named "big" holding `n` COMPLETE trials, for load tests and benchmarks.

    The study is created through Optuna (schema, study, directions, hwnas attributes); its trials are
    bulk-inserted into Optuna's tables, which takes seconds where Optuna's per-trial commits would
    take hours. Metrics are real: the analytic `flops` provider on `distinct` random archs (default
    `n`; fewer are repeated cyclically), objectives `flops` and `params:max`, budget `params<=1e6`.
    `optuna.load_study` reads the result like any study. Returns the storage URL.
    """
    import sqlite3

    import numpy as np
    import optuna
    from hwnas.searchers._budgets import Budget
    from hwnas.searchers._objectives import make_objective
    from hwnas.searchers._optuna import _distributions

    path = Path(path)
    url = f"sqlite:///{path}"
    fn = make_objective(space, "flops")
    study = optuna.create_study(study_name="big", storage=url, directions=["minimize", "maximize"])
    budget = Budget.parse("params<=1e6")
    for k, v in {"hwnas.space": space.to_dict(), "hwnas.objectives": ["flops", "params:max"],
                 "hwnas.budgets": [str(budget)], "hwnas.sampler": "random", "hwnas.n_trials": n}.items():
        study.set_user_attr(k, v)
    dists = _distributions(space)
    dist_json = {k: optuna.distributions.distribution_to_json(d) for k, d in dists.items()}
    pre = []  # per distinct arch: metrics and every row value but the trial id
    for a in space.sample_many(distinct or n, np.random.default_rng(seed)):
        m = fn(a)
        ch = space.to_choices(a)
        pre.append((m, json.dumps(str(a)), json.dumps(m), json.dumps(budget.violation(m)),
                    [(k, float(d.to_internal_repr(ch[k])), dist_json[k]) for k, d in dists.items()]))
    sid, now = study._study_id, "2026-01-01 00:00:00.000000"  # noqa: SLF001
    trials, values, uattrs, sattrs, params = [], [], [], [], []
    for i in range(n):
        m, a, mj, vj, ps = pre[i % len(pre)]
        tid = i + 1
        trials.append((tid, i, sid, "COMPLETE", now, now))
        values += [(tid, 0, m["flops"], "FINITE"), (tid, 1, m["params"], "FINITE")]
        uattrs += [(tid, "arch", a), (tid, "metrics", mj)]
        sattrs.append((tid, f"constraints:{budget}", vj))
        params += [(tid, k, v, d) for k, v, d in ps]
    con = sqlite3.connect(path)
    try:
        with con:
            con.executemany("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, datetime_complete) "
                            "VALUES (?, ?, ?, ?, ?, ?)", trials)
            con.executemany("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, ?, ?, ?)", values)
            con.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", uattrs)
            con.executemany("INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", sattrs)
            con.executemany("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                            "VALUES (?, ?, ?, ?)", params)
    finally:
        con.close()
    return url
