"""Fine-tuning's gain per minute: test accuracy of exported subnets before and after `hwnas finetune`.

Each exported subnet (a main-job run's `exported/budget<i>`, or any `hwnas export` folder) is copied
and fine-tuned for every `--steps` budget from the same starting weights (distillation from the
shipped supernet's max subnet, the defaults of `hwnas finetune`); the JSON records, per subnet and
budget, test accuracy before and after (full test set, BN recalibrated), the training seconds and
the gain per minute. The main job's `export.finetune_steps` should be on by default only if that
gain pays within its 10-minute budget (issue #15).

    python benchmarks/finetune_gain.py results/runs/fashion-mnist-cpu/exported/budget* --steps 200,600
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exports", nargs="+", help="exported checkpoint folders (arch.json + weights.safetensors)")
    ap.add_argument("--steps", default="200,600", help="fine-tuning budgets in steps of 128 images (default 200,600)")
    ap.add_argument("--supernet", default="fmnist-mbv3", help="the teacher: a supernet folder or bundle name")
    ap.add_argument("--out", default="results/benchmarks/finetune_gain.json")
    args = ap.parse_args(argv)
    try:
        budgets = sorted({int(s) for s in args.steps.split(",")})
    except ValueError:
        ap.error(f"--steps {args.steps!r}: give comma-separated integers, e.g. 200,600")
    if not budgets or not all(1 <= b <= 100_000 for b in budgets):
        ap.error(f"--steps {args.steps!r}: each budget must be 1..100000")
    for e in args.exports:
        if not (Path(e) / "arch.json").is_file():
            ap.error(f"{e}: not an exported checkpoint folder (no arch.json)")

    from hwnas.supernet import finetune

    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnas-ftgain-") as tmp:
        for e in args.exports:
            for steps in budgets:
                work = Path(tmp) / f"{Path(e).name}-{steps}"
                shutil.copytree(e, work)
                t = time.perf_counter()
                res = finetune(work, steps=steps, supernet=args.supernet, progress=False, say=lambda s: None)
                wall = time.perf_counter() - t
                gain = 100 * (res.accuracy_after - res.accuracy_before)
                rows.append({"export": str(e), "arch": res.arch, "steps": steps,
                             "accuracy_before": res.accuracy_before, "accuracy_after": res.accuracy_after,
                             "gain_points": gain, "train_seconds": res.seconds, "wall_seconds": wall,
                             "gain_points_per_minute": res.gain_per_minute})
                print(f"{Path(e).name} {steps} steps: {100 * res.accuracy_before:.2f} -> {100 * res.accuracy_after:.2f}% "
                      f"({gain:+.2f}) in {res.seconds:.0f} s", flush=True)
                _write(args, budgets, rows)  # after every row: a long run stopped early keeps what it measured
    print(json.dumps({"out": args.out, "rows": len(rows)}))
    return 0


def _write(args: argparse.Namespace, budgets: list[int], rows: list[dict]) -> None:
    from hwnas._io import atomic_write_json

    doc = {"benchmark": "finetune_gain", "teacher": args.supernet, "budgets": budgets, "rows": rows,
           "complete": len(rows) == len(budgets) * len(args.exports),
           "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(Path(args.out), doc)


if __name__ == "__main__":
    sys.exit(main())
