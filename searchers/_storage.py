"""Optuna storages from URLs, and the study attributes that make a study self-describing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError
from hwnas.searchers._optuna_internals import tune_sqlite

__all__ = ["open_storage", "storage_kind", "require_optuna_tables", "STUDY_ATTRS"]

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


def open_storage(url: str | None, *, reading: bool = False) -> Any:
    """An Optuna storage object for `url` (None -> in-memory).

    `reading`: the caller only reads an existing study, so a SQLite file keeps its journal mode
    (WAL is set for searches, and persists in the file: switching a study another tool wrote would
    change the file a query only reads) and no folder is created.
    """
    import optuna

    kind = storage_kind(url)
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "rdb":
        if url.startswith("sqlite:///"):
            if not reading:
                Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # Several worker processes share one SQLite file: wait for locks instead of failing.
            storage = _rdb(url, engine_kwargs={"connect_args": {"timeout": 60}})
            if not reading:
                tune_sqlite(storage)
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
            raise _open_error(url, e) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _open_error(url: str, e: Exception) -> ConfigError:
    """The one-line error for a storage that cannot be opened (the driver's reason first line)."""
    msg = _first_line(e)
    low = msg.lower()
    if url.startswith("sqlite:///") and ("not a database" in low or "malformed" in low or "unsupported file format" in low):
        # The URL is fine: the file it names is damaged, or some other program's file.
        f = existing_storage_path(url)
        return ConfigError(f"SQLite file {str(f)!r} is corrupt or not a database ({msg}); restore it from a copy or "
                           "give another storage")
    return ConfigError(f"cannot open storage {redact_url(url)!r}: {msg}; use sqlite:///PATH, postgresql://USER@HOST/DB "
                       "(driver installed, server reachable), or a journal file")


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


# Tables every Optuna RDB storage has (alembic_version: Optuna's schema version, set when it creates them).
_OPTUNA_TABLES = ("studies", "alembic_version")


def require_optuna_tables(url: str) -> None:
    """Refuse, before Optuna opens it, an existing database that holds no Optuna study.

    Optuna's RDBStorage creates its 13 tables when it opens a database without them: a query
    (`hwnas pareto`, `hwnas export --pick`, `load_study`) pointed at an empty file or at another
    program's database would change it and then report "0 studies". Reading must leave what it
    reads as it was, so the file is checked with sqlite3 opened read-only (`mode=ro`), and a
    server database with SQLAlchemy's inspector (it only reads the catalog). A missing file, a
    server that does not answer, or a journal file: nothing to check here (the callers and
    Optuna say what is wrong with those without writing anything).
    """
    if storage_kind(url) != "rdb":
        return
    path = existing_storage_path(url)
    if path is None:
        _require_server_tables(url)
        return
    if not path.is_file():
        return
    where = f"storage file {str(path.resolve())!r} (from {redact_url(url)!r})"
    left = "left unchanged; give the storage a search wrote"
    # Never open() the file here: closing any descriptor of a SQLite file drops every POSIX lock this
    # process holds on it, so a reader that still has Optuna connections to a study (a notebook, a
    # test polling a search) would let another process reset the WAL under them: "database disk image
    # is malformed" afterwards. SQLite's own connections share their descriptors safely; stat() opens
    # nothing.
    if path.stat().st_size == 0:
        raise ConfigError(f"{where} is an empty file, not an Optuna study database ({left})")
    import sqlite3

    def list_tables(uri: str) -> set[str]:
        con = sqlite3.connect(uri, uri=True, timeout=60)
        try:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()

    try:
        tables = list_tables(path.resolve().as_uri() + "?mode=ro")  # a foreign database stays byte-identical
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise ConfigError(f"{where} is not a database (no SQLite header: corrupt, or another kind of file; "
                              f"{left})") from None
        # A WAL-mode study whose writer was killed: read-only, SQLite cannot recover its shared-memory
        # index and reports the file as malformed. A plain connection recovers it, as Optuna's would,
        # and only reads.
        try:
            tables = list_tables(path.resolve().as_uri())
        except sqlite3.DatabaseError as e2:
            raise ConfigError(f"{where} is a corrupt SQLite database ({e2}; {left})") from None
    _require_tables(where, tables, left)


def _require_server_tables(url: str) -> None:
    import sqlalchemy
    import sqlalchemy.exc

    try:
        engine = sqlalchemy.create_engine(url, **_server_engine_kwargs(url)["engine_kwargs"])
    except (ImportError, sqlalchemy.exc.SQLAlchemyError):
        return  # a bad URL or a missing driver: open_storage says which, without writing
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    except sqlalchemy.exc.OperationalError as e:
        # unreachable server, refused login, no such database: said now, the way open_storage says it
        # (trying again there would wait out a silent server's connect timeout a second time)
        raise _open_error(url, e) from None
    except sqlalchemy.exc.SQLAlchemyError:
        return  # anything else: open_storage says what, without writing
    finally:
        engine.dispose()
    _require_tables(f"storage {redact_url(url)!r}", tables, "left unchanged; give the storage a search wrote")


def _require_tables(where: str, tables: set[str], left: str) -> None:
    if all(t in tables for t in _OPTUNA_TABLES):
        return
    if not tables:
        raise ConfigError(f"{where} is an empty database: it holds no Optuna study ({left})")
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    raise ConfigError(f"{where} is a database without Optuna's tables (it has: {shown}); it holds no Optuna study ({left})")


def sqlite_path_hint(url: str | None) -> str:
    """For `sqlite:///x.db` (three slashes: a path relative to the working directory) a note saying
    so, since `sqlite:///tmp/x.db` reads as /tmp/x.db but is ./tmp/x.db; empty otherwise."""
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///"):]
        if rel and not rel.startswith("~"):
            return f"; sqlite:/// + a relative path is relative to the working directory: write sqlite:////{rel.lstrip('/')} for /{rel}"
    return ""


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True)
