"""`hwnas train`: once-for-all supernet training from a YAML config with named schedules."""

from __future__ import annotations

import argparse
from typing import Any

from hwnas._cli_choices import ChoicesOf

__all__ = ["register"]

_DESCRIPTION = """\
Train the once-for-all supernet of a search space on real data (Fashion-MNIST by default).

Writes to --out: checkpoint.pt (each epoch, for --resume), metrics.jsonl (plot it),
config.json, report.json (BN-recalibrated test accuracy of the min / max / random subnets),
supernet.safetensors + supernet.json (load with hwnas.supernet.train.load_supernet).

Distributed: torchrun --nproc_per_node=2 -m hwnas train ... (gloo on CPU, nccl on GPU).
"""

_EPILOG = """\
examples:
  hwnas train --config configs/fmnist.yaml --policy deps --schedule demo --out runs/demo
  hwnas train --schedule default --policy sandwich --out runs/sandwich
  hwnas train --schedule demo --out runs/demo --resume          # continue after a kill
  torchrun --nproc_per_node=2 -m hwnas train --schedule tiny --out runs/ddp
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train the once-for-all supernet (policies: sandwich, progressive, deps)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=None, help="training YAML (default: the packaged configs/fmnist.yaml)")
    p.add_argument("--schedule", default=None, help="named schedule from the config's `schedules:` (e.g. demo, default, tiny)")
    p.add_argument("--policy", choices=ChoicesOf("hwnas.supernet.train", "POLICIES"), metavar="POLICY", default=None, help="training policy, one of %(choices)s (overrides the config)")
    p.add_argument("--out", required=True, help="output directory of the run")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch checkpoint")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files (else HWNAS_DATA_DIR, then the Debian package)")
    p.add_argument("--subset", type=int, default=None, help="train on only N (seeded) training images")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the global batch size")
    p.add_argument("--lr", type=float, default=None, help="override the base learning rate")
    p.add_argument("--seed", type=int, default=None, help="override the seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: cores / ranks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from hwnas.supernet.train import TrainConfig, load_config, train

    overrides = {
        "policy": args.policy,
        "data_dir": args.data_dir,
        "subset": args.subset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
    }
    cfg_path = Path(args.config) if args.config else None
    if cfg_path is not None and cfg_path.suffix == ".json":
        # The config.json a run saved: resume with exactly that config.
        from hwnas._io import read_json

        cfg = TrainConfig.from_dict({**read_json(cfg_path), **{k: v for k, v in overrides.items() if v is not None}})
    else:
        cfg = load_config(cfg_path, schedule=args.schedule, overrides=overrides)
    res = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if res.report:
        print(json.dumps({"out": str(res.out_dir), "test_acc": res.report["test_acc"],
                          "train_seconds": round(res.train_seconds, 1)}, indent=None))
    return 0
