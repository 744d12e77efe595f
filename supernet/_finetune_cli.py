"""`hwnas finetune`: fine-tune an exported subnet by distillation from its supernet, in place."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_DESCRIPTION = """\
Fine-tune the subnet in an exported checkpoint folder (`hwnas export`, or <run>/exported/budget<i>
of the main job) for --steps SGD steps: label-smoothed cross-entropy plus distillation from the max
subnet of its supernet, on the training split the supernet was trained on; BN recalibrated at the
end. The folder is then replaced in one atomic step by a new checkpoint with every format it had
(weights, ONNX, TorchScript), and arch.json records the test accuracy before and after
(metrics.finetune). A kill at any moment leaves the original folder as it was.

The teacher is, in order: --supernet, the supernet arch.json names, <run>/supernet of the run the
folder was exported in, the shipped bundle of the export's space. With none, pass --no-kd.
"""

_EPILOG = """\
examples:
  hwnas finetune results/runs/fashion-mnist-cpu/exported/budget1 --steps 500
  hwnas finetune my-subnet --steps 2000 --supernet fmnist-mbv3 --lr 0.005
  hwnas finetune my-subnet --steps 300 --no-kd --no-progress
"""


def register(sub: Any) -> None:
    from hwnas._cli_choices import SEED, Float, Int

    p = sub.add_parser(
        "finetune",
        help="fine-tune an exported subnet (distillation from its supernet), rewriting its folder atomically",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="an exported checkpoint folder (arch.json + weights.safetensors)")
    p.add_argument("--steps", type=Int(1, 1_000_000), required=True, help="training steps (1..1000000)")
    p.add_argument("--supernet", default=None, metavar="PATH_OR_BUNDLE",
                   help="the teacher: a supernet folder or a shipped bundle name (default: found as described above)")
    p.add_argument("--no-kd", action="store_true", help="no teacher: label-smoothed cross-entropy only")
    p.add_argument("--lr", type=Float(1e-6, 10.0), default=0.01, help="peak learning rate, cosine to 0 (default 0.01)")
    p.add_argument("--batch-size", type=Int(1, 65536), default=128, help="batch size (default 128)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the batch order (default 0)")
    p.add_argument("--dataset", default=None, help="dataset (default: the supernet's training dataset, else fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset files (default: the supernet's, else the usual places)")
    p.add_argument("--subset", type=Int(1, 100_000_000), default=None, metavar="N", help="train on only N (seeded) training images")
    p.add_argument("--calib-images", type=Int(1, 1_000_000), default=2000, metavar="N",
                   help="training images for BN recalibration of the teacher and the result (default 2000)")
    p.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    p.add_argument("--log-every", type=Int(1, 1_000_000), default=None, metavar="N",
                   help="with --no-progress: a `step i/N loss x` line every N steps (default: about 20 lines)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (step lines instead)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from hwnas.errors import ConfigError

    if args.subset is not None and args.subset < 1:
        raise ConfigError(f"--subset {args.subset}: choose N >= 1 (or leave it out: all training images)")
    if args.calib_images < 1:
        raise ConfigError(f"--calib-images {args.calib_images}: choose N >= 1")
    if args.no_kd and args.supernet is not None:
        raise ConfigError("--no-kd and --supernet contradict each other: --no-kd trains without a teacher")

    from hwnas.supernet.finetune import finetune

    res = finetune(args.dir, steps=args.steps, supernet=args.supernet, kd=not args.no_kd, lr=args.lr,
                   batch_size=args.batch_size, seed=args.seed, dataset=args.dataset, data_dir=args.data_dir,
                   subset=args.subset, calib_images=args.calib_images, device=args.device,
                   progress=not args.no_progress, log_every=args.log_every, say=lambda s: print(s, flush=True))
    print(json.dumps({"dir": str(res.path), "arch": res.arch, "steps": res.steps, "teacher": res.teacher,
                      "accuracy_before": round(res.accuracy_before, 5), "accuracy_after": round(res.accuracy_after, 5),
                      "seconds": round(res.seconds, 1)}), flush=True)
    return 0
