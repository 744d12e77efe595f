"""Two Ray nodes on loopback with the study on PostgreSQL: trials on both nodes, profiling on the node
that declares a custom resource, `hwnas search` submitted as a Ray job, and the second node killed
mid-search (the search still ends with the asked trial count).

One cluster for the module: a head (1 CPU, with the dashboard, which serves the Jobs API) and a
second node (1 CPU, resource `testdev`), two `ray start --block` processes in their own process
groups (tests/_cluster.py). The node-kill test runs last: it takes the second node away.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from tests._cluster import RayNode, ray_env, wait_nodes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
C = optuna.trial.TrialState.COMPLETE
REPO = Path(__file__).resolve().parents[1]


class Cluster:
    def __init__(self, head: RayNode, second: RayNode, nodes: dict[str, dict[str, float]], tmp: Path):
        self.head, self.second, self.tmp = head, second, tmp
        self.address = head.address
        self.second_id = next(k for k, res in nodes.items() if "testdev" in res)
        self.head_id = next(k for k in nodes if k != self.second_id)


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="hwm", dir="/tmp"))  # short: Ray puts unix sockets there
    base = 23000 + (os.getpid() % 40) * 200
    head = second = None
    try:
        head = RayNode(tmp, num_cpus=1, dashboard=True, worker_ports=(base, base + 99))
        second = RayNode(tmp, head_address=head.address, num_cpus=1, resources='{"testdev": 1}',
                         worker_ports=(base + 100, base + 199))
        nodes = wait_nodes(head.address, 2)
        yield Cluster(head, second, nodes, tmp)
    finally:
        for node in (second, head):
            if node is not None:
                node.stop()
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


def test_profile_runs_on_the_node_with_the_custom_resource(cluster, tmp_path):
    """`hwnas profile --ray-address A --on-resource testdev` runs on the second node and brings the table back."""
    from hwnas.estimators import Profile
    from hwnas.search_space import Space

    (tmp_path / "s.yaml").write_text(SPACE_YAML)
    out = tmp_path / "remote"
    r = subprocess.run([sys.executable, "-m", "hwnas", "profile", "--space", str(tmp_path / "s.yaml"), "--device", "cpu",
                        "--out", str(out), "--networks", "2", "--repeats", "3", "--ray-address", cluster.address,
                        "--on-resource", "testdev"], cwd=REPO, env=ray_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    prof = Profile.load(out, device="cpu")
    space = Space.from_yaml(tmp_path / "s.yaml")
    assert sorted(prof.table["key"]) == sorted(c.key for c in space.distinct_block_configs())


def _job_commands(cluster: Cluster, url: str, ray_dir: Path) -> tuple[list[str], list[str]]:
    """The commands of the README's "run on a cluster" section, with this test's addresses."""
    submit = ["ray", "job", "submit", "--address", cluster.head.dashboard_url, "--submission-id", "hwnas-search-1",
              "--", "hwnas", "search", "--space", "fmnist-mbv3", "--provider", "flops", "--sampler", "random",
              "--trials", "20", "--storage", url, "--study", "job", "--ray-address", "auto", "--workers", "2",
              "--ray-storage-path", str(ray_dir), "--no-progress"]
    pareto = ["hwnas", "pareto", "--storage", url, "--study", "job", "--format", "json"]
    return submit, pareto


def test_search_submitted_as_a_ray_job(cluster, postgres, tmp_path):
    url = postgres.new_database("job")
    submit, pareto = _job_commands(cluster, url, tmp_path / "ray_results")
    # the README shows these very commands, with this test's addresses as placeholders
    readme = (REPO / "README.md").read_text()
    for cmd in (submit, pareto):
        shown = shlex.join(cmd).replace(cluster.head.dashboard_url, "http://HEAD:8265").replace(
            url, "postgresql://hwnas:PASSWORD@DBHOST:5432/hwnas").replace(str(tmp_path / "ray_results"),
                                                                       "/shared/ray_results")
        assert f"\n{shown}\n" in readme, f"README.md does not show the command the test runs:\n{shown}"
    env = ray_env()
    # `ray job submit` waits for the job and prints its log; it exits non-zero when the job fails
    r = subprocess.run(submit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "succeeded" in r.stdout, (r.stdout + r.stderr)[-4000:]
    assert "study 'job': 20 complete trials" in r.stdout  # the job's own output, relayed
    status = subprocess.run(["ray", "job", "status", "--address", cluster.head.dashboard_url, "hwnas-search-1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert "succeeded" in status.stdout.lower(), status.stdout + status.stderr  # "Job ... succeeded" (SUCCEEDED in older Ray)
    r = subprocess.run(pareto, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["n_trials"] == 20 and doc["front"]
    from hwnas.searchers import load_study

    trials = load_study("job", url).get_trials()
    assert len([t for t in trials if t.state == C]) == 20


# The driver: a search whose trials sleep and record the Ray node they ran on.
_DRIVER = r"""
import os, sys, time
from hwnas.search_space import Space
from hwnas.searchers import make_objective, search

class OnNode:
    def __init__(self, space_dict, mark_dir, seconds):
        self.space_dict, self.mark_dir, self.seconds, self.fn = space_dict, mark_dir, seconds, None
    def __call__(self, arch):
        import ray
        if self.fn is None:
            self.fn = make_objective(Space.from_dict(self.space_dict), "flops")
        node = ray.get_runtime_context().get_node_id()
        open(os.path.join(self.mark_dir, f"{node}-{os.getpid()}-{time.time_ns()}"), "w").close()
        time.sleep(self.seconds)
        return self.fn(arch)

address, storage, n, mark_dir, seconds, ray_dir = sys.argv[1:7]
space = Space.preset("fmnist-mbv3")
study = search(space, OnNode(space.to_dict(), mark_dir, float(seconds)), objectives="flops,params:max",
               n_trials=int(n), sampler="random", storage=storage, study_name="nodes", runner="ray", workers=2,
               ray_address=address, ray_storage_path=ray_dir)
print("DONE", len([t for t in study.trials if t.state.name == "COMPLETE"]))
"""


def test_trials_run_on_both_nodes_and_survive_losing_the_second(cluster, postgres, tmp_path):
    from hwnas.searchers import load_study

    url = postgres.new_database("nodes")
    n = 16
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "driver.py").write_text(_DRIVER)
    p = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), cluster.address, url, str(n), str(marks), "1.0",
                          str(tmp_path / "ray_results")], env=ray_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while True:  # kill the second node once trials have run on both nodes
            seen = {f.name.split("-")[0] for f in marks.iterdir()}
            if {cluster.head_id, cluster.second_id} <= seen:
                break
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(f"trials did not reach both nodes (seen {seen}): {p.communicate()[1][-3000:]}")
            time.sleep(0.2)
        cluster.second.kill()
        out, err = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()
    assert p.returncode == 0, err[-4000:]
    assert f"DONE {n}" in out
    trials = load_study("nodes", url).get_trials()
    complete = [t for t in trials if t.state == C]
    assert len(complete) == n, "the search did not reach the asked number of complete trials"
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers)))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    # trials after the kill ran on the head alone
    late = sorted(marks.iterdir(), key=lambda f: int(f.name.split("-")[2]))[-3:]
    assert all(f.name.startswith(cluster.head_id) for f in late)
