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
import shutil
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


def test_two_rank_gloo_equals_single_process(tmp_path):
    common = dict(policy="sandwich", lr=0.02, epochs=1, subset=512, batch_size=64, steps_per_epoch=8, threads=1,
                  report_random=0, calib_images=64, num_random=1)
    ddp_cfg = tiny_config(tmp_path, **common)
    ref_cfg = tiny_config(tmp_path, accum_steps=2, **common)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    (tmp_path / "ddp.json").write_text(json.dumps(ddp_cfg.to_dict()))
    (tmp_path / "ref.json").write_text(json.dumps(ref_cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    out_ddp, out_ref = tmp_path / "ddp", tmp_path / "ref"
    # --standalone: a local rendezvous on a free port of this machine
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node=2", str(driver), str(tmp_path / "ddp.json"), str(out_ddp)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
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
    shutil.rmtree(out_ddp, ignore_errors=True)
