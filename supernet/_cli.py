"""`hwnas train`: once-for-all supernet training from a YAML config with named schedules."""

from __future__ import annotations

import argparse
from typing import Any

from hwnas._cli_choices import SEED, ChoicesOf, Float, Int

__all__ = ["register"]

_DESCRIPTION = """\
Train the once-for-all supernet of a search space on real data (Fashion-MNIST by default).

Writes to --out: checkpoint.pt (each epoch, for --resume), metrics.jsonl (plot it),
config.json, report.json (BN-recalibrated test accuracy of the min / max / random subnets),
supernet.safetensors + supernet.json (load with hwnas.supernet.load_supernet).

--bundle DIR then makes a shipped bundle of the finished run: the weights, a manifest with the
SHA-256 of every file, the test accuracies of 5 fixed subnets, --bundle-pairs (arch, search-val
accuracy) pairs measured through the supernet and the accuracy predictor fitted on them. Load it
by name: hwnas.supernet.load_supernet("fmnist-mbv3"), hwnas.estimators.load_bundle("fmnist-mbv3").

Distributed: torchrun --nproc_per_node=2 -m hwnas train ... (gloo on CPU, nccl on GPU).
"""

_EPILOG = """\
examples:
  hwnas train --config configs/fmnist.yaml --policy deps --schedule demo --out runs/demo
  hwnas train --schedule default --policy sandwich --out runs/sandwich
  hwnas train --schedule demo --out runs/demo --resume          # continue after a kill
  torchrun --nproc_per_node=2 -m hwnas train --schedule tiny --out runs/ddp
  hwnas train --schedule default --out runs/mbv3 --bundle results/supernets/fmnist-mbv3
  hwnas train --space fmnist-lite --schedule default --out runs/lite --bundle results/supernets/fmnist-lite
  hwnas train --out runs/mbv3 --resume --bundle results/supernets/fmnist-mbv3 --overwrite   # re-bundle a finished run
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
    p.add_argument("--space", default=None, metavar="SPACE",
                   help="search space to train: a preset name (hwnas space --list) or a space YAML (default: the config's `space:`)")
    p.add_argument("--policy", choices=ChoicesOf("hwnas.supernet.train", "POLICIES"), metavar="POLICY", default=None, help="training policy, one of %(choices)s (overrides the config)")
    p.add_argument("--single-arch", default=None, metavar="ARCH",
                   help="with --policy single: the one arch to train alone (the from-scratch baseline, same recipe)")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="after training, write a shipped bundle (weights, manifest with hashes, accuracy pairs and predictor) to DIR")
    p.add_argument("--bundle-pairs", type=Int(20, 20_000), default=500, metavar="N",
                   help="(arch, search-val accuracy) pairs the bundle measures (default 500; 20..20000)")
    p.add_argument("--bundle-images", type=Int(100, 1_000_000), default=None, metavar="N",
                   help="score the bundle's pairs and fixed subnets on only N search-val / test images (default: all; for smoke runs)")
    p.add_argument("--predictor-kinds", default=None, metavar="K,K",
                   help="accuracy predictor kinds the bundle compares (default all: mlp,ensemble,gp,gbm,rank_mlp); the best by held-out Spearman is kept")
    p.add_argument("--overwrite", action="store_true", help="with --bundle: replace an existing bundle folder")
    p.add_argument("--out", required=True, help="output directory of the run")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch checkpoint")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files (else HWNAS_DATA_DIR, then the Debian package)")
    p.add_argument("--subset", type=Int(1, 100_000_000), default=None, help="train on only N (seeded) training images")
    p.add_argument("--epochs", type=Int(1, 100_000), default=None, help="override the number of epochs")
    p.add_argument("--batch-size", type=Int(1, 1_000_000), default=None, help="override the global batch size")
    p.add_argument("--lr", type=Float(1e-12, 1e3), default=None, help="override the base learning rate")
    p.add_argument("--seed", type=SEED, default=None, help="override the seed")
    p.add_argument("--num-random", type=Int(1, 64), default=None, metavar="N",
                   help="random subnets per sandwich step, beside the max and the min (overrides the schedule; `default` uses 1, 2 lifts the middle of the space: docs/training.md)")
    p.add_argument("--threads", type=Int(1, 4096), default=None, help="torch CPU threads per process (default: cores / ranks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from hwnas.supernet.train import TrainConfig, load_config, train

    overrides = {
        "space": args.space,
        "policy": args.policy,
        "single_arch": args.single_arch,
        "data_dir": args.data_dir,
        "subset": args.subset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "num_random": args.num_random,
        "threads": args.threads,
    }
    cfg_path = Path(args.config) if args.config else None
    if cfg_path is not None and cfg_path.suffix == ".json":
        # The config.json a run saved: resume with exactly that config.
        from hwnas._io import read_json

        cfg = TrainConfig.from_dict({**read_json(cfg_path), **{k: v for k, v in overrides.items() if v is not None}})
    else:
        cfg = load_config(cfg_path, schedule=args.schedule, overrides=overrides)
    if args.bundle is not None:
        from hwnas.errors import ConfigError

        if not 20 <= args.bundle_pairs <= 20000:
            raise ConfigError(f"--bundle-pairs {args.bundle_pairs}: choose 20..20000")
        kinds = None
        if args.predictor_kinds is not None:
            from hwnas.estimators.accuracy import KINDS

            kinds = tuple(k.strip() for k in args.predictor_kinds.split(",") if k.strip())
            bad = [k for k in kinds if k not in KINDS]
            if bad or not kinds:
                raise ConfigError(f"--predictor-kinds {args.predictor_kinds!r}: unknown {bad}; choose from {sorted(KINDS)}")
        if args.bundle_images is not None and not 100 <= args.bundle_images <= 1_000_000:
            raise ConfigError(f"--bundle-images {args.bundle_images}: choose 100..1000000 (or leave it out: all images)")
        if Path(args.bundle).exists() and not args.overwrite:
            raise ConfigError(f"--bundle {args.bundle} already exists; pass --overwrite to replace it")
    res = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if res.report:
        print(json.dumps({"out": str(res.out_dir), "test_acc": res.report["test_acc"],
                          "train_seconds": round(res.train_seconds, 1)}, indent=None))
    if args.bundle is not None and res.report:
        # The CLI is where the pieces meet: the supernet library itself never imports estimators.
        from hwnas.estimators.bundle import make_bundle

        out = make_bundle(res.out_dir, args.bundle, pairs=args.bundle_pairs, seed=cfg.seed, overwrite=args.overwrite,
                          val_images=args.bundle_images, test_images=args.bundle_images, kinds=kinds,
                          calib_images=cfg.calib_images,
                          progress=not args.no_progress)
        print(json.dumps({"bundle": str(out)}))
    return 0
