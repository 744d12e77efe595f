"""Which worker runs a trial, and whether that worker is still alive.

Every trial a worker evaluates carries a `worker` user attribute, `host:pid:start`, where `start`
is the process's start time read from /proc (it tells a reused pid from the original). A
`--resume`, and a worker waiting for the last running trials, fail only RUNNING trials whose worker
is gone: a dead process on this host. A trial of another host cannot be checked from here and is
left running (with a warning at resume). A trial without a stamp counts as dead (a study written
before stamps). A new trial is created with its stamp in one write (`ask_trial`), trial by trial,
in generations and by the Ray driver, so no other process sees it unstamped; only an enqueued trial,
popped by Optuna's `ask`, is stamped a moment after, and a resume elsewhere in that instant can still
fail it (its worker then skips the trial instead of telling it).
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["WORKER_ATTR", "this_worker", "worker_state"]

WORKER_ATTR = "worker"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: split after its closing one
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


_ME: str | None = None


def this_worker() -> str:
    """This process's stamp, `host:pid:start`."""
    global _ME
    pid = os.getpid()
    if _ME is None or _ME.split(":")[-2] != str(pid):  # a fork has its own stamp
        _ME = f"{socket.gethostname()}:{pid}:{_start_time(pid)}"
    return _ME


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _start_time(pid)
    return not (start and now and now != start)  # same pid, another start: the pid was reused


def worker_state(trial: Any) -> str:
    """'alive', 'dead' or 'unknown' (another host's worker) for a RUNNING trial."""
    stamp = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(stamp, str) or stamp.count(":") < 2:
        return "dead"
    host, pid, start = stamp.rsplit(":", 2)
    if host != socket.gethostname():
        return "unknown"
    try:
        return "alive" if _alive(int(pid), start) else "dead"
    except ValueError:
        return "dead"
