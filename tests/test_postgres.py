"""Studies on a real PostgreSQL server (a throw-away one on 127.0.0.1, see tests/_cluster.py).

What runs on SQLite and the journal file elsewhere runs here on PostgreSQL too: create and resume
through `hwnas search`, `hwnas pareto`, the 100,000-trial front through the fast table reader, 4
independent worker processes on one study, and the dashboard. The kill -9 tests of test_search.py
and test_crash_safety.py take PostgreSQL as one more storage parameter. Bad URLs (wrong password,
nothing listening, no such database, a server that never answers) are one-line errors, exit 2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import optuna
import pytest

from tests._cluster import PG_PASSWORD, free_port

pytestmark = [pytest.mark.cluster]
C = optuna.trial.TrialState.COMPLETE
PY = sys.executable


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _hwnas(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "hwnas", *args], capture_output=True, text=True, env=_env(), timeout=timeout)


def _search_args(url: str, study: str, n: int, *extra: str) -> list[str]:
    return ["search", "--space", "fmnist-mbv3", "--provider", "flops", "--sampler", "random", "--trials", str(n),
            "--storage", url, "--study", study, "--no-progress", *extra]


@pytest.mark.slow
def test_search_create_resume_and_pareto_on_postgres(postgres) -> None:
    from hwnas.searchers import ParetoFront, load_study

    url = postgres.new_database()
    r = _hwnas(*_search_args(url, "pg", 12, "--budget", "params<=1e6"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "study 'pg': 12 complete trials" in r.stdout
    r = _hwnas(*_search_args(url, "pg", 12))
    assert r.returncode == 2 and "pass --resume" in r.stderr  # exists: refuses without --resume
    before = {t.number: t.params for t in load_study("pg", url).get_trials(states=(C,))}
    r = _hwnas(*_search_args(url, "pg", 20, "--budget", "params<=1e6", "--resume"))
    assert r.returncode == 0, r.stderr[-3000:]
    trials = load_study("pg", url).get_trials()
    done = {t.number: t.params for t in trials if t.state == C}
    assert len(done) == 20 and all(done[k] == v for k, v in before.items())
    # `hwnas pareto` from the storage alone: the stored attributes say objectives and budgets
    r = _hwnas("pareto", "--storage", url, "--study", "pg", "--format", "json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["n_trials"] == 20
    front = ParetoFront.load("pg", url)
    assert sorted(row["trial"] for row in doc["front"]) == sorted(front.trials[front.front_mask()].tolist())
    # the fast table reader (the driver's pyformat paramstyle) and Optuna's own trial objects agree
    study = load_study("pg", url)
    generic = ParetoFront.from_study(study)
    assert sorted(front.trials.tolist()) == sorted(generic.trials.tolist()) == sorted(done)
    assert sorted(front.trials[front.front_mask()].tolist()) == sorted(t.number for t in study.best_trials)


@pytest.mark.slow
def test_four_worker_processes_share_one_postgres_study_exactly(postgres) -> None:
    from hwnas.searchers import load_study

    url = postgres.new_database()
    n = 40
    r = _hwnas(*_search_args(url, "four", 2))
    assert r.returncode == 0, r.stderr[-3000:]
    # four independent processes join with --resume, as four machines would
    procs = [subprocess.Popen([PY, "-m", "hwnas", *_search_args(url, "four", n, "--resume", "--seed", str(s))],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for s in range(1, 5)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    trials = load_study("four", url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == C]
    assert len(complete) == n, f"{len(complete)} complete trials, asked {n}"
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers))), "a trial number was lost or given twice"
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert all(t.user_attrs.get("arch") for t in complete)


@pytest.mark.slow
def test_100k_trial_front_on_postgres_through_the_fast_reader(postgres, big_study) -> None:
    """The 100,000-trial study of test_load.py, copied into PostgreSQL: the same front, the same memory
    bounds, and `hwnas pareto` answering on it."""
    from hwnas.searchers import ParetoFront

    from tests._cluster import copy_sqlite_study_to_postgres
    from tests.test_load import _QUERY, LOAD_PEAK_MIB, N_BIG, REPEAT_GROWTH_MIB

    sqlite_path, sqlite_url = big_study
    url = postgres.new_database("big")
    copy_sqlite_study_to_postgres(sqlite_path, url)
    r = subprocess.run([PY, "-c", _QUERY, url], capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["n"] == N_BIG
    assert m["heap_peak_mib"] <= LOAD_PEAK_MIB, m
    assert m["rss_after_first_mib"] - m["rss_before_mib"] <= LOAD_PEAK_MIB, m
    assert m["rss_after_repeats_mib"] - m["rss_after_first_mib"] <= REPEAT_GROWTH_MIB, m
    ref = ParetoFront.load("big", sqlite_url)
    assert m["front"] == int(ref.front_mask().sum()) and m["knee"] == ref.knee().trial
    assert m["hv"] == pytest.approx(ref.hypervolume())
    print(f"100k-trial front on PostgreSQL: heap peak {m['heap_peak_mib']:.0f} MiB, RSS "
          f"{m['rss_before_mib']:.0f} -> {m['rss_after_first_mib']:.0f} MiB")
    r = _hwnas("pareto", "--storage", url, "--study", "big", "--format", "json", "--top", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["n_trials"] == N_BIG and len(doc["front"]) == 5


# ---- bad URLs: one line, exit 2, no hang ---------------------------------------------------------------
class _SilentServer:
    """A TCP listener on loopback that accepts connections and never says a word (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("case", ["wrong-password", "nothing-listening", "missing-database", "silent-server"])
def test_bad_postgres_urls_are_one_line_errors(postgres, case: str, capsys) -> None:
    """In process (the command line's own `main`): an error must come back, not a hang; pytest's
    timeout is the guard, and the silent server is ended by the 10 s connect timeout."""
    from hwnas.cli import main

    silent = _SilentServer() if case == "silent-server" else None
    try:
        url, want = {
            "wrong-password": (postgres.url("postgres", password="not-the-password"), "password authentication failed"),
            "nothing-listening": (f"postgresql://hwnas:secret@127.0.0.1:{free_port()}/x", "refused"),
            "missing-database": (postgres.url("no_such_db"), 'database "no_such_db" does not exist'),
            "silent-server": (f"postgresql://hwnas:secret@127.0.0.1:{silent.port if silent else 0}/x", "timeout"),
        }[case]
        commands = [["pareto", "--storage", url]]
        if case == "wrong-password":  # the search path opens its storage the same way
            commands.append(_search_args(url, "s", 2))
        for args in commands:
            assert main(args) == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1, lines
            assert want in lines[0] and "cannot open storage" in lines[0], lines[0]
            assert PG_PASSWORD not in lines[0] and "secret" not in lines[0] and "not-the-password" not in lines[0]
    finally:
        if silent is not None:
            silent.close()


# ---- the dashboard ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_optuna_dashboard_lists_the_study_and_its_trials(postgres) -> None:
    pytest.importorskip("optuna_dashboard")
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from hwnas.searchers import search
    from hwnas.searchers._storage import open_storage
    from optuna_dashboard import wsgi

    from tests.test_search_helpers import small_space

    url = postgres.new_database("dash")
    search(small_space(), "analytic", objectives="f1,f2", n_trials=8, storage=url, study_name="dash",
           sampler="random", seed=0)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # no request log on stderr
            pass

    server = make_server("127.0.0.1", 0, wsgi(open_storage(url)), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import urllib.request

        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/api/studies", timeout=60) as resp:
            studies = json.loads(resp.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash"]
        sid = studies[0]["study_id"]
        with urllib.request.urlopen(f"{base}/api/studies/{sid}", timeout=60) as resp:
            detail = json.loads(resp.read())
        trials = detail["trials"]
        assert len(trials) == 8 and sorted(t["number"] for t in trials) == list(range(8))
        assert all(t["state"] == "Complete" for t in trials)
        assert any(a["key"] == "arch" for a in trials[0]["user_attrs"])
        with urllib.request.urlopen(f"{base}/dashboard", timeout=60) as resp:
            assert resp.status == 200  # the page itself is served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)
