"""DDP: a 2-rank torchrun/gloo run equals a single-process run with the same global batch.

Per-rank BatchNorm statistics are what plain DDP computes, so the single-process reference
splits the same global batch into the same two micro-batches (`accum_steps=2`): the gradients
are then mathematically identical, and only the order of floating-point sums differs
(tolerance: atol 1e-5, rtol 1e-4 on every parameter after 8 steps; measured: ~6e-8). The two
ranks themselves must hold bit-identical parameters. The LR is small (0.02) because at LR 0.1 a
tiny BN net in its first steps is chaotic enough to blow 1e-8 summation-order differences up to
~4e-4 within 8 steps (measured; at 1 and 5 steps the difference is still ~1e-7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._train_helpers import HAVE_FMNIST, tiny_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST Debian files not installed"),
]

DRIVER = """
import json, os, sys, torch
from hwnas.supernet.train import TrainConfig, train
cfg = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
res = train(cfg, sys.argv[2], progress=False)
rank = int(os.environ.get("RANK", "0"))
sd = {k: v for k, v in res.model.state_dict().items()}
torch.save(sd, os.path.join(sys.argv[2], f"rank{rank}.pt"))
"""


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


COMMON = dict(policy="sandwich", lr=0.02, epochs=1, subset=512, batch_size=64, steps_per_epoch=8, threads=1,
              report_random=0, calib_images=64, num_random=1)


def _env() -> dict[str, str]:
    # gloo on loopback: the launchers stand in for machines, and must not pick another interface
    return {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}


@pytest.fixture(scope="module")
def standalone_run(tmp_path_factory):
    """The single-node 2-rank run (`torchrun --standalone --nproc_per_node=2`), shared by the tests."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    ddp_cfg = tiny_config(tmp_path, **COMMON)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    (tmp_path / "ddp.json").write_text(json.dumps(ddp_cfg.to_dict()))
    out_ddp = tmp_path / "ddp"
    # --standalone: a local rendezvous on a free port of this machine
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node=2", str(driver), str(tmp_path / "ddp.json"), str(out_ddp)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp_path, ddp_cfg, out_ddp


def test_two_rank_gloo_equals_single_process(standalone_run):
    tmp_path, ddp_cfg, out_ddp = standalone_run
    ref_cfg = tiny_config(tmp_path, accum_steps=2, **COMMON)
    driver = tmp_path / "driver.py"
    (tmp_path / "ref.json").write_text(json.dumps(ref_cfg.to_dict()))
    env = _env()
    out_ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, str(driver), str(tmp_path / "ref.json"), str(out_ref)], env=env,
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r0 = torch.load(out_ddp / "rank0.pt", weights_only=True)
    r1 = torch.load(out_ddp / "rank1.pt", weights_only=True)
    ref = torch.load(out_ref / "rank0.pt", weights_only=True)
    params = [k for k in r0 if "running" not in k and "num_batches" not in k]
    for k in params:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"
        torch.testing.assert_close(r0[k], ref[k], atol=1e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    # the comparison is not vacuous: training moved the weights away from the seed's initialisation
    from hwnas.search_space import Space
    from hwnas.supernet import Supernet

    torch.manual_seed(ddp_cfg.seed)
    init = Supernet(Space.from_yaml(ddp_cfg.space)).state_dict()
    moved = sum(not torch.allclose(init[k], r0[k]) for k in params)
    assert moved > len(params) // 3
    rep = json.loads((out_ddp / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["steps"] == 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.cluster
def test_two_node_rendezvous_equals_single_node_two_ranks(standalone_run):
    """Two torchrun launchers (`--nnodes 2 --node-rank 0|1`, c10d rendezvous on 127.0.0.1) stand in
    for two machines with one process each: the same 2-rank job as `--standalone --nproc_per_node=2`,
    so the weights must match it. Tolerance atol 1e-6, rtol 1e-5: the same gloo all-reduce of the
    same two gradients, so only a different reduction order could move a bit (measured: equal)."""
    tmp_path, _, out_single = standalone_run
    driver, cfg = tmp_path / "driver.py", tmp_path / "ddp.json"
    out = tmp_path / "two-nodes"
    port = _free_port()
    procs = []
    try:
        for node_rank in (0, 1):
            procs.append(subprocess.Popen(
                [*_torchrun(), "--nnodes", "2", "--node-rank", str(node_rank), "--nproc-per-node", "1",
                 "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "hwnas-test",
                 "--local-addr", "127.0.0.1", str(driver), str(cfg), str(out)],
                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                start_new_session=True))
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, o[-3000:] + e[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["world_size"] == 2 and rep["steps"] == 8
    for rank in (0, 1):
        got = torch.load(out / f"rank{rank}.pt", weights_only=True)
        want = torch.load(out_single / f"rank{rank}.pt", weights_only=True)
        assert got.keys() == want.keys()
        for k in want:
            if "num_batches" in k:
                assert torch.equal(got[k], want[k])
                continue
            torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
