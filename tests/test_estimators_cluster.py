"""The profile job as a Ray task on a worker node that declares a custom resource (real local cluster)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests._helpers import RayNode, ray_env, tiny_space_dict

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_cluster():
    """A head (1 CPU) and a worker node offering the custom resource `testdev`, both ours (`tests/_helpers.RayNode`)."""
    tmp = Path(tempfile.mkdtemp(prefix="hwr", dir="/tmp"))  # short path: Ray puts unix sockets under it
    nodes: list[RayNode] = []
    try:
        head = RayNode(tmp, num_cpus=1, worker_ports=(20000, 20100), env=ray_env(), start_timeout=90)
        nodes.append(head)
        nodes.insert(0, RayNode(head_address=head.address, num_cpus=1, worker_ports=(20101, 20200),
                                resources={"testdev": 1}, env=ray_env()))
        yield head.address
    finally:
        for node in nodes:  # the worker first, then the head
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# the shared tiny space at one resolution, its second stage narrowed: few block configs to time remotely
SPACE_YAML = yaml.safe_dump(tiny_space_dict(name="tiny-ray", resolutions=[16], stage2={"kernels": [3], "expands": [2]}))


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
    r = subprocess.run(cmd, cwd=repo, env=ray_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    prof = Profile.load(out, device="cpu")
    assert sorted(prof.table["key"]) == sorted(c.key for c in space.distinct_block_configs())
    assert len(prof.networks) == 2 and prof.settings.repeats == 3
    assert (out / "latency_predictor.json").is_file()
    # no node offers the resource: a clear one-line error, exit code 2
    cmd[cmd.index("testdev")] = "no-such-device"
    cmd[cmd.index(str(out))] = str(tmp_path / "none")
    r = subprocess.run([*cmd, "--wait-node", "1"], cwd=repo, env=ray_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "offers resource" in r.stderr
