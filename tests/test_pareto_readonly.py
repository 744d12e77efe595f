"""Queries only read: `hwnas pareto`, `hwnas export` and `load_study` given a database that holds no
Optuna study refuse in one line (exit 2) and leave it byte-identical; reading a study another tool
wrote leaves its file as it was too (issue 17, item 1)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import sys
import types
from pathlib import Path

import optuna
import pytest
from hwnas.errors import ConfigError
from hwnas.searchers import ParetoFront, load_study

sys.path.insert(0, str(Path(__file__).parent))


def _cli(*args: str) -> types.SimpleNamespace:
    from hwnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _state(path: Path) -> tuple[str, list[str]]:
    """The file's SHA-256 and the folder's listing (a reader must not leave -wal/-shm/-journal files either)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in path.parent.iterdir())


def _foreign(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    con.execute("INSERT INTO invoices (total) VALUES (12.5)")
    con.commit()
    con.close()
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("not a database\n")
    return path


def _tableless(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 7")  # a valid SQLite file with no table at all
    con.commit()
    con.close()
    return path


CASES = {
    "empty-file": (_empty, "is an empty file"),
    "foreign-database": (_foreign, "without Optuna's tables (it has: invoices)"),
    "text-file": (_text, "is not a database (no SQLite header"),
    "database-without-tables": (_tableless, "is an empty database"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_queries_refuse_a_database_without_a_study_and_leave_it_byte_identical(case, tmp_path):
    make, needle = CASES[case]
    path = make(_in(tmp_path) / "x.db")
    url = f"sqlite:///{path}"
    before = _state(path)
    for args in (["pareto", "--storage", url], ["pareto", "--storage", url, "--study", "s", "--format", "json"],
                 ["pareto", "--storage", url, "--pick", "flops<=1"],
                 ["export", "--storage", url, "--pick", "flops<=1", "--out", str(tmp_path / "out")]):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "left unchanged" in lines[0], r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert _state(path) == before, args
    assert not (tmp_path / "out").exists()
    for call in (lambda: load_study(None, url), lambda: ParetoFront.load("s", url)):
        with pytest.raises(ConfigError, match="left unchanged"):
            call()
        assert _state(path) == before


def _in(tmp_path: Path) -> Path:
    d = tmp_path / "db"
    d.mkdir()
    return d


def test_reading_a_study_another_tool_wrote_leaves_its_file_as_it_was(tmp_path):
    """Optuna's default SQLite journal (not WAL): hwnas searches switch their own files to WAL, a
    query must not switch someone else's."""
    path = _in(tmp_path) / "plain.db"
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="plain", storage=url, directions=["minimize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=4)
    del study
    before = _state(path)
    assert len(load_study(None, url).trials) == 4
    assert _state(path) == before
    assert len(ParetoFront.load("plain", url)) == 4
    assert _state(path) == before
    r = _cli("pareto", "--storage", url, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert _state(path) == before


@pytest.mark.cluster
def test_an_empty_postgres_database_gets_no_tables(postgres):
    """The same for a server: an empty database (and one of another program) stays without Optuna's tables."""
    import sqlalchemy

    url = postgres.new_database("ro")
    engine = sqlalchemy.create_engine(url)
    try:
        r = _cli("pareto", "--storage", url)
        assert r.returncode == 2 and "is an empty database" in r.stderr, r.stderr
        assert sqlalchemy.inspect(engine).get_table_names() == []
        with engine.begin() as con:
            con.execute(sqlalchemy.text("CREATE TABLE invoices (id integer)"))
        r = _cli("pareto", "--storage", url)
        assert r.returncode == 2 and "(it has: invoices)" in r.stderr, r.stderr
        assert sqlalchemy.inspect(engine).get_table_names() == ["invoices"]
    finally:
        engine.dispose()
