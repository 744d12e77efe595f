"""Stage bookkeeping: the stage order, the stamps in `<run>/stages/<stage>.json` that make a re-run
skip what is up to date, and the one-line progress messages."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas._io import atomic_write_json, read_json

__all__ = ["STAGES", "StageStamps", "config_hash", "say", "jsonable"]

STAGES = ("train", "profile", "accuracy", "search", "pareto", "export", "report")


def config_hash(obj: Any) -> str:
    """16 hex digits of the SHA-256 of `obj` as sorted JSON: the stamps' keys and the study name."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageStamps:
    """Stamps in run_dir/stages/<name>.json: a stage is done when its stamp's key matches."""

    def __init__(self, run_dir: Path, *, force: Sequence[str] = ()):
        self.dir = run_dir / "stages"
        self.force = set(force)
        self.keys: dict[str, str] = {}
        self.ran: set[str] = set()  # stages run by this invocation: everything after them re-runs

    def key(self, name: str, deps: Mapping[str, Any]) -> str:
        upstream = {s: self.keys[s] for s in STAGES[: STAGES.index(name)] if s in self.keys}
        k = config_hash({"deps": deps, "upstream": upstream})
        self.keys[name] = k
        return k

    def done(self, name: str, key: str) -> dict[str, Any] | None:
        p = self.dir / f"{name}.json"
        if name in self.force or self.ran or not p.is_file():
            return None
        try:
            stamp = read_json(p)
        except (OSError, json.JSONDecodeError):
            return None
        return stamp.get("summary") if stamp.get("key") == key else None

    def finish(self, name: str, key: str, summary: Mapping[str, Any], seconds: float) -> None:
        self.ran.add(name)
        atomic_write_json(self.dir / f"{name}.json", {"stage": name, "key": key, "seconds": seconds,
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "summary": dict(summary)})


def say(msg: str) -> None:
    print(msg, flush=True)


def jsonable(o: Any) -> Any:
    """`o` as plain JSON values (numpy scalars as numbers, anything else unknown as its string)."""
    return json.loads(json.dumps(o, default=lambda x: x.item() if hasattr(x, "item") else str(x)))
