"""What several test files share: the tiny supernet space and a Ray node on 127.0.0.1 that a test owns.

Import as `from tests._helpers import ...` (pytest runs from the repository root). The searchers'
small search space (enumerable, for the analytic objective) lives in `tests/test_search_helpers.py`;
the large synthetic study of the load tests and benchmarks in `tests/_synthetic.py`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["TINY_SPACE", "tiny_space_dict", "tiny_space", "tiny_space_path", "free_port", "ray_env", "RayNode"]

# ---- the tiny supernet space ---------------------------------------------------------------------------
# Two MBConv stages on 16x16 / 20x20 inputs: trains to well above chance in seconds on 2 cores
# (the training tests' accuracy floors are set on it), and profiles in seconds.
TINY_SPACE: dict[str, Any] = {
    "name": "tiny-test",
    "in_channels": 1,
    "num_classes": 10,
    "resolutions": [16, 20],
    "normalization": {"mean": [0.2860], "std": [0.3530]},
    "stem": {"channels": 8, "kernel": 3, "stride": 2, "act": "hswish"},
    "stages": [
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [8], "stride": 1, "se": False, "act": "relu"},
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [16], "stride": 2, "se": True, "act": "hswish"},
    ],
    "head": {"expand_channels": 32, "feature_channels": None, "act": "hswish", "dropout": 0.0},
}


def tiny_space_dict(*, stage2: Mapping[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    """A copy of TINY_SPACE with top-level keys replaced by `over` and the second stage's by `stage2`
    (e.g. `resolutions=[16], stage2={"kernels": [3], "expands": [3]}`: 6 block configs instead of 24)."""
    d = copy.deepcopy(TINY_SPACE)
    d.update(copy.deepcopy(over))
    if stage2:
        d["stages"][1].update(copy.deepcopy(dict(stage2)))
    return d


def tiny_space(*, stage2: Mapping[str, Any] | None = None, **over: Any) -> Any:
    """`tiny_space_dict(...)` as a `Space`."""
    from hwnas.search_space import Space

    return Space.from_dict(tiny_space_dict(stage2=stage2, **over))


def tiny_space_path(tmp_path: Path, *, stage2: Mapping[str, Any] | None = None, **over: Any) -> str:
    """`tiny_space_dict(...)` written as YAML under `tmp_path` (for configs and CLIs that take a file)."""
    p = Path(tmp_path) / "tiny-space.yaml"
    p.write_text(yaml.safe_dump(tiny_space_dict(stage2=stage2, **over)))
    return str(p)


# ---- a Ray node of our own ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    """This environment with Ray's auth mode fixed to disabled: Ray reads it once per process, at first
    import, so a token another session wrote to ~/.ray/auth_token cannot split our nodes and driver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def _ray_executable() -> str:
    if importlib.util.find_spec("ray") is None:  # not importing it: Ray reads its auth mode on import
        pytest.skip("ray is not installed")
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return str(exe)
    found = shutil.which("ray")
    if found is None:
        pytest.skip("the ray executable is not installed next to python or on PATH")
    return found


class RayNode:
    """One `ray start --block` node on 127.0.0.1 that a test owns, in a new process group.

    A head (`head_address=None`: free port, no dashboard, Ray's files under `temp_dir`, which must be
    a short path: Ray puts unix sockets there) or a worker joining `head_address` with custom
    `resources`. Stopped by signalling its own process group only: never `ray stop`, which would also
    stop other people's clusters on the machine. `env=None` inherits this process's environment.
    """

    def __init__(self, temp_dir: Path | None = None, *, head_address: str | None = None, num_cpus: int = 2,
                 worker_ports: tuple[int, int] = (21000, 21100), resources: Mapping[str, float] | None = None,
                 env: Mapping[str, str] | None = None, start_timeout: float = 120.0):
        exe = _ray_executable()
        common = ["--block", "--disable-usage-stats", "--num-cpus", str(num_cpus), "--num-gpus", "0",
                  "--min-worker-port", str(worker_ports[0]), "--max-worker-port", str(worker_ports[1])]
        kw: dict[str, Any] = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                  env=None if env is None else dict(env))
        if head_address is None:
            if temp_dir is None:
                raise ValueError("a head node needs temp_dir (a short path for Ray's sockets)")
            self.port = free_port()
            self.address = f"127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [exe, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                 "--include-dashboard", "false", "--dashboard-port", str(free_port()), "--temp-dir", str(temp_dir),
                 *common], **kw)
            self._wait_for_port(start_timeout)
        else:
            self.port = None
            self.address = head_address
            extra = ["--resources", json.dumps(dict(resources))] if resources else []
            self.proc = subprocess.Popen(
                [exe, "start", "--address", head_address, "--node-ip-address", "127.0.0.1", *extra, *common], **kw)

    def _wait_for_port(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                pytest.fail("ray head exited during start-up")
            if time.time() > deadline:
                self.stop()
                pytest.fail(f"ray head did not open its port in {timeout:.0f} s")
            time.sleep(0.5)

    def kill(self) -> None:
        """The node going away: SIGKILL to its whole process group (GCS, raylet, workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM to its process group (a `--block` node shuts down on it); SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
