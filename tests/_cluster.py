"""Real cluster pieces for the cluster tests: a throw-away PostgreSQL server and Ray nodes on 127.0.0.1.

Nothing here is mocked. `PostgresServer` runs `initdb` + `pg_ctl` in a temporary directory on a free
loopback port (as the `postgres` OS user when we are root: PostgreSQL refuses to run as root) with
password authentication, so a wrong password really is refused. `RayNode` is one
`ray start --block` in its own process group, stopped by signalling that group only (never a broad
`ray stop`, which would stop other people's clusters on the machine).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

PG_USER = "hwnas"
PG_PASSWORD = "hwnas-test-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (rc {proc.returncode})")
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not open port {port} in {timeout:.0f} s")
        time.sleep(0.3)


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM then SIGKILL to the process group of one process we started with start_new_session."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    except ProcessLookupError:
        pass


# ---- PostgreSQL -----------------------------------------------------------------------------------
def pg_bindir() -> Path | None:
    """The PostgreSQL server binaries: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0))
    return cands[-1].parent if cands else None


class PostgresServer:
    """One PostgreSQL server of our own on 127.0.0.1:`port`, data in a temporary directory."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; scripts/setup.sh installs "
                               "the Debian package `postgresql`")
        self.bindir = bindir
        self.run_as: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="hwpg", dir="/tmp"))
        if os.geteuid() == 0:  # initdb/postgres refuse root: run them as the package's `postgres` user
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise RuntimeError("running as root and no `postgres` OS user to run the server as") from e
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.tmp / "data"
        self.port = free_port()
        pwfile = self.tmp / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.run_as:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self.dbs = 0
        try:
            self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, f"--pwfile={pwfile}",
                       "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
            pwfile.unlink()
            # Loopback only, its own socket directory, enough connections for 32 workers' pools; no
            # fsync: a throw-away server whose durability across an OS crash no test needs.
            opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.tmp} "
                    "-c max_connections=300 -c fsync=off -c full_page_writes=off")
            self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.tmp / "log"), "-o", opts,
                       "-w", "-t", "300", "start"])
        except BaseException:
            self.stop()
            raise

    def _run(self, cmd: list[str]) -> None:
        # its own process group: a timeout must also end initdb's/pg_ctl's children, not only runuser
        p = subprocess.Popen(self.run_as + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=self.tmp, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise RuntimeError(f"{Path(cmd[0]).name} did not finish in 600 s") from None
        if p.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {out[-2000:]}")

    def url(self, db: str = "postgres", *, password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{db}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its SQLAlchemy URL (each test gets its own)."""
        import psycopg

        self.dbs += 1
        name = f"{prefix}_{self.dbs}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            subprocess.run(self.run_as + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                          "-w", "-t", "60", "stop"], capture_output=True, timeout=120, cwd=self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)


def postgres_or_skip() -> PostgresServer:
    """Start a server, or skip with the reason when PostgreSQL truly is not available here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed (a declared dependency: reinstall hwnas)")
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it with apt-get) and could not be found")
    try:
        return PostgresServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"could not start a throw-away PostgreSQL server: {e}")


def copy_sqlite_study_to_postgres(sqlite_path: Path, pg_url: str) -> None:
    """Copy every Optuna table of a SQLite study file into an empty PostgreSQL database, by COPY.

    The 100,000-trial test study is bulk-built in SQLite (`write_synthetic_study`); Optuna's own
    per-trial commits would take hours. Optuna creates the PostgreSQL schema first (so column types
    and enums are its own), then each table's rows stream in with COPY and the id sequences are
    moved past the copied ids so new trials can still be added. Made fast (2.5 M parameter rows:
    ~100 s -> ~35 s): SQLite writes the CSV lines itself; foreign-key triggers are off for the
    session (`session_replication_role = replica`: the rows come from a consistent Optuna study); a
    table no foreign key points at gets its primary-key and unique indexes built after its rows, not
    row by row.
    """
    import sqlite3

    import optuna
    import psycopg

    optuna.storages.RDBStorage(pg_url)  # schema + alembic version, no study
    tables = ["studies", "study_directions", "study_user_attributes", "study_system_attributes",
              "trials", "trial_values", "trial_user_attributes", "trial_system_attributes", "trial_params",
              "trial_intermediate_values", "trial_heartbeats"]
    src = sqlite3.connect(sqlite_path)
    try:
        with psycopg.connect(pg_url) as dst, dst.cursor() as cur:  # one transaction, committed on exit
            cur.execute("SET session_replication_role = replica")
            for table in tables:
                cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
                if not cols:
                    continue
                referenced = cur.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = %s::regclass",
                                         (table,)).fetchone()[0]
                keys = [] if referenced else cur.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype IN ('p', 'u')", (table,)).fetchall()
                for name, _ in keys:
                    cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
                # one CSV line per row, made by SQLite: NULL as \N, text quoted CSV-style, reals to 17 digits (exact)
                line = " || ',' || ".join(
                    f"CASE WHEN {c} IS NULL THEN '\\N' WHEN typeof({c}) = 'text' THEN '\"' || replace({c}, '\"', '\"\"') || '\"' "
                    f"WHEN typeof({c}) = 'real' THEN printf('%.17g', {c}) ELSE CAST({c} AS TEXT) END" for c in cols)
                rows = src.execute(f"SELECT {line} FROM {table}")
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as cp:
                    while chunk := rows.fetchmany(50_000):
                        cp.write("\n".join(r[0] for r in chunk) + "\n")
                for name, definition in keys:
                    cur.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
                # Optuna's first column is each table's serial id: move its sequence past the copied ids.
                seq = cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, cols[0])).fetchone()[0]
                if seq:
                    cur.execute(f"SELECT setval(%s, (SELECT COALESCE(MAX({cols[0]}), 1) FROM {table}))", (seq,))
    finally:
        src.close()


# ---- Ray ------------------------------------------------------------------------------------------
def ray_bin_or_skip() -> str:
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not importing it: Ray reads its auth mode on import
        pytest.skip("ray is not installed")
    cand = Path(sys.executable).with_name("ray")
    if not cand.exists():
        pytest.skip("the ray executable is not installed next to python")
    return str(cand)


def ray_env(**extra: str) -> dict[str, str]:
    """The environment of our Ray processes (nodes, drivers, job submitters): auth mode fixed, so a token
    another session wrote to ~/.ray/auth_token cannot split our nodes and drivers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    # `hwnas` and `ray` of this environment first on PATH: a job's entrypoint is a shell command on the head.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore", **extra)
    return env


class RayNode:
    """One `ray start --block` node on 127.0.0.1 that a test owns, in a new process group.

    The head when `head_address` is None (free port; Ray's files under `tmp`, which must be a short
    path: Ray puts unix sockets there; the dashboard, which serves the Jobs API, only when asked), else
    a worker joining `head_address`, with custom `resources` (a mapping or Ray's JSON string). Stopped
    by signalling its own process group only. `env=None` uses `ray_env()`.
    """

    def __init__(self, tmp: Path | None = None, *, head_address: str | None = None, num_cpus: int = 1,
                 resources: Mapping[str, float] | str | None = None, dashboard: bool = False,
                 worker_ports: tuple[int, int] = (21000, 21100), env: Mapping[str, str] | None = None,
                 start_timeout: float = 120.0) -> None:
        ray = ray_bin_or_skip()
        common = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
                  "--num-gpus", "0", "--min-worker-port", str(worker_ports[0]),
                  "--max-worker-port", str(worker_ports[1]),
                  # two nodes on one machine: each its own agent port (the default 52365 is one per machine)
                  "--dashboard-agent-listen-port", str(free_port())]
        if resources:
            common += ["--resources", resources if isinstance(resources, str) else json.dumps(dict(resources))]
        self.dashboard_port = free_port()
        if head_address is None:
            if tmp is None:
                raise ValueError("a head node needs tmp (a short path for Ray's sockets)")
            self.port = free_port()
            cmd = [ray, "start", "--head", "--port", str(self.port), "--temp-dir", str(tmp),
                   "--include-dashboard", "true" if dashboard else "false", "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(free_port()),
                   *common]
            self.address = f"127.0.0.1:{self.port}"
        else:
            cmd = [ray, "start", "--address", head_address, *common]
            self.port = None
            self.address = head_address
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env=ray_env() if env is None else dict(env))
        if head_address is None:
            try:
                wait_port(self.port, self.proc, "ray head", start_timeout)
                if dashboard:  # the Jobs API lives in the dashboard process
                    wait_port(self.dashboard_port, self.proc, "ray dashboard", start_timeout)
            except RuntimeError as e:
                self.stop()
                pytest.fail(str(e))

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def kill(self) -> None:
        """The node going away at once: SIGKILL to its whole process group (raylet, workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        # `ray start --block` outlived every 20 s SIGTERM grace in CI (each node's teardown took
        # 20.0-20.4 s); the node is this test's alone and its whole group gets SIGKILL after the grace
        stop_group(self.proc, grace=3.0)


def wait_nodes(address: str, n: int, timeout: float = 180.0) -> dict[str, dict[str, float]]:
    """Block until the cluster at `address` has `n` alive nodes (asked from a short child driver, so this
    process never imports Ray); returns {node id: its resources}."""
    code = ("import json, ray, sys, time\n"
            "ray.init(address=sys.argv[1], _node_ip_address='127.0.0.1', log_to_driver=False)\n"
            "deadline = time.time() + float(sys.argv[3])\n"
            "alive = lambda: [x for x in ray.nodes() if x['Alive']]\n"
            "while len(alive()) < int(sys.argv[2]) and time.time() < deadline:\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps({x['NodeID']: x['Resources'] for x in alive()}))\n")
    r = subprocess.run([sys.executable, "-c", code, address, str(n), str(timeout)], capture_output=True, text=True,
                       env=ray_env(), timeout=timeout + 300)
    nodes = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else {}
    if len(nodes) < n:
        pytest.fail(f"the Ray cluster has {len(nodes)} alive nodes, expected {n}: {r.stderr[-2000:]}")
    return nodes
