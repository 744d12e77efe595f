"""The profile job as a Ray task on a worker node that declares a custom resource (real local cluster)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else (shutil.which("ray") or "ray")


def _stop(proc: subprocess.Popen) -> None:
    """Stop one `ray start --block` we started (it shuts its node down on SIGTERM); never a broad `ray stop`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _env() -> dict[str, str]:
    """Ray processes of this test (cluster and driver) run in their own env: auth mode fixed, so a token
    another session wrote to ~/.ray/auth_token meanwhile cannot split our nodes and driver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    return env


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="hwr", dir="/tmp"))  # short path: Ray puts unix sockets under it
    common = ["--block", "--disable-usage-stats", "--num-cpus", "1", "--num-gpus", "0"]
    head = subprocess.Popen(
        [_ray_bin(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--include-dashboard", "false", "--temp-dir", str(tmp), "--dashboard-port", str(_free_port()),
         "--min-worker-port", "20000", "--max-worker-port", "20100", *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=_env())
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray head failed to start"
            time.sleep(0.5)
        worker = subprocess.Popen(
            [_ray_bin(), "start", "--address", address, "--node-ip-address", "127.0.0.1",
             "--resources", '{"testdev": 1}', "--min-worker-port", "20101", "--max-worker-port", "20200", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=_env())
        procs.insert(0, worker)
        yield address
    finally:
        for p in procs:
            _stop(p)
        shutil.rmtree(tmp, ignore_errors=True)



SPACE_YAML = """
name: tiny-ray
in_channels: 1
num_classes: 10
resolutions: [16]
stem: {channels: 8, kernel: 3, stride: 2, act: relu}
stages:
  - {kinds: [mb], depths: [1, 2], kernels: [3, 5], expands: [2], widths: [8], stride: 1, se: false, act: relu}
head: {expand_channels: 16, feature_channels: null, act: relu, dropout: 0.0}
"""


def test_profile_runs_as_ray_task_on_the_resource_node(ray_cluster, tmp_path):
    """`hwnas profile --ray-address A --on-resource testdev` runs on the worker node and brings the table back."""
    from hwnas.estimators import Profile
    from hwnas.search_space import Space

    (tmp_path / "s.yaml").write_text(SPACE_YAML)
    space = Space.from_yaml(tmp_path / "s.yaml")
    out = tmp_path / "remote"
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "hwnas", "profile", "--space", str(tmp_path / "s.yaml"), "--device", "cpu",
           "--out", str(out), "--networks", "2", "--repeats", "3", "--ray-address", ray_cluster,
           "--on-resource", "testdev"]
    r = subprocess.run(cmd, cwd=repo, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    prof = Profile.load(out, device="cpu")
    assert sorted(prof.table["key"]) == sorted(c.key for c in space.distinct_block_configs())
    assert len(prof.networks) == 2 and prof.settings.repeats == 3
    assert (out / "latency_predictor.json").is_file()
    # no node offers the resource: a clear one-line error, exit code 2
    cmd[cmd.index("testdev")] = "no-such-device"
    cmd[cmd.index(str(out))] = str(tmp_path / "none")
    r = subprocess.run([*cmd, "--wait-node", "1"], cwd=repo, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "offers resource" in r.stderr
