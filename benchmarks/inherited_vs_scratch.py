"""Inherited vs from scratch: is a subnet's accuracy with supernet weights as good as training it alone?

Three fixed subnets of a finished supernet run (min, max, and the middle one of the space's ranges)
are (a) extracted with inherited weights and BN-recalibrated, and (b) built fresh and trained
alone for the same number of steps the supernet got, with the supernet's optimiser settings
(benchmarks/nas_vs_manual.train_from_scratch). Both are scored on the Fashion-MNIST test set.
The Once-for-All claim is that (a) is within about a point of (b). Appends nothing: writes
`results/benchmarks/inherited_vs_scratch_<schedule>.json`.

    python benchmarks/inherited_vs_scratch.py --run results/runs/fashion-mnist-cpu/supernet
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mid(xs):
    return sorted(xs)[(len(xs) - 1) // 2]


def middle_arch(space):
    """The middle choice of every elastic dimension: resolution, depth, kernel, expand and width."""
    parts = [f"r{_mid(space.resolutions)}"]
    for i, st in enumerate(space.stages, start=1):
        d = _mid(st.depths)
        parts.append(f"s{i}w{_mid(st.widths)}:{st.kinds[0]}_k{_mid(st.kernels)}_e{_mid(st.expands)}" + (f"x{d}" if d > 1 else ""))
    return space.parse("|".join(parts))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=REPO / "results/runs/fashion-mnist-cpu/supernet",
                    help="a finished `hwnas train` directory (supernet.safetensors, config.json)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subnets", default="min,middle,max",
                    help="comma-separated subset of min,middle,max to compare (the max subnet takes longest from scratch)")
    ap.add_argument("--out", type=Path, default=None, help="default results/benchmarks/inherited_vs_scratch_<schedule>.json")
    args = ap.parse_args(argv)
    wanted = [x.strip() for x in args.subnets.split(",") if x.strip()]
    if not wanted or set(wanted) - {"min", "middle", "max"}:
        ap.error(f"--subnets {args.subnets!r}: choose from min, middle, max (comma-separated)")

    import torch
    from hwnas._io import atomic_write_json
    from hwnas.data import make_loaders
    from hwnas.supernet import TrainConfig, build_static, load_supernet
    from hwnas.supernet.bn import evaluate
    from nas_vs_manual import train_from_scratch

    torch.set_num_threads(args.threads)
    net = load_supernet(args.run).eval()
    space = net.space
    tcfg = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    loaders = make_loaders(tcfg.dataset, tcfg.data_dir, space=space, seed=tcfg.seed, batch_size=tcfg.batch_size,
                           search_val=tcfg.search_val, steps_per_epoch=tcfg.steps_per_epoch)
    steps = tcfg.epochs * len(loaders.train)
    calib = loaders.calib_images(tcfg.calib_images)
    rows = []
    archs = {"min": space.min_arch(), "middle": middle_arch(space), "max": space.max_arch()}
    for name, arch in ((n, archs[n]) for n in wanted):
        inherited = evaluate(net, arch, loaders.test, calib=calib, num_calib=len(calib))
        model = build_static(space, arch)
        secs = train_from_scratch(model, loaders, steps=steps, tcfg=tcfg, seed=args.seed, resolution=arch.resolution)
        model.eval()
        scratch = evaluate(model, None, loaders.test, recalibrate=False)
        rows.append({"subnet": name, "arch": str(arch), "inherited_acc": inherited, "scratch_acc": scratch,
                     "gap_points": 100 * (scratch - inherited), "scratch_train_s": secs})
        print(f"{name:6s} inherited {100 * inherited:.2f}%  from scratch ({steps} steps, {secs:.0f} s) {100 * scratch:.2f}%  "
              f"gap {100 * (scratch - inherited):+.2f} points  {arch}", flush=True)
    doc = {"benchmark": "inherited_vs_scratch", "run": str(args.run), "schedule": tcfg.schedule, "policy": tcfg.policy,
           "steps_each": steps, "rows": rows, "within_1_point": all(r["gap_points"] <= 1.0 for r in rows),
           "machine": platform.processor() or platform.machine(), "threads": args.threads,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = args.out or REPO / "results" / "benchmarks" / f"inherited_vs_scratch_{tcfg.schedule}.json"
    atomic_write_json(out, doc)
    print(f"inherited within 1.0 point of from-scratch for all of {', '.join(wanted)}: {doc['within_1_point']}  -> {out}")
    return doc


if __name__ == "__main__":
    main()
