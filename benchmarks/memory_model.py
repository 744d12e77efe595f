"""Benchmark: predicted vs measured peak inference memory of random subnets (CPU, PyTorch eager).

Measured: the PyTorch profiler's CPU memory events (every allocation and free of the CPU allocator)
replayed in time order during one inference after a warm-up call, plus the input tensor
(`hwnas.estimators.measure_peak_memory`). Predicted: `MemoryModel(policy="eager")`, the liveness
simulation of the block graph. Also checks parameter/buffer bytes against the real modules, and
prints the `ideal` (fused, MCUNet-style) peak for comparison. JSON + scatter PNG.

    .venv/bin/python benchmarks/memory_model.py --space fmnist-mbv3 --n 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--n", type=int, default=50, help="random subnets (default 50)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--extra-spaces", default="fmnist-mixed,ofa-mbv3", help="also check N/5 subnets of these")
    ap.add_argument("--train-n", type=int, default=10, help="subnets for the training-memory check (CPU; default 10)")
    ap.add_argument("--train-batch", type=int, default=32, help="batch of the training-memory check (default 32)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cpu: profiler memory events; cuda: torch.cuda.max_memory_allocated")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args(argv)
    from hwnas.estimators import MemoryModel, measure_peak_memory
    from hwnas.estimators.memory import measure_param_bytes
    from hwnas.search_space import Space
    from hwnas.supernet import build_static

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meas_how = ("torch.profiler CPU memory events replayed in time order (+ input tensor)" if args.device == "cpu"
                else "torch.cuda.max_memory_allocated during one inference minus what was allocated before (+ input)")
    report: dict = {"benchmark": "memory_model", "batch": args.batch, "dtype": "float32",
                    "device": f"{args.device} (torch eager)", "measurement": meas_how, "spaces": {}}
    if args.device == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name(0)
    plots = []
    for name, n in [(args.space, args.n)] + [(s, max(2, args.n // 5)) for s in args.extra_spaces.split(",") if s]:
        space = Space.preset(name)
        mm = MemoryModel(space, batch_size=args.batch, target=args.device)
        ideal = MemoryModel(space, batch_size=args.batch, policy="ideal")
        rows = []
        t0 = time.perf_counter()
        for a in space.sample_many(n, rng=2024, unique=True):
            net = build_static(space, a)
            meas = measure_peak_memory(net, (args.batch, space.in_channels, a.resolution, a.resolution),
                                       device=args.device)
            est = mm.estimate(a)
            pw = measure_param_bytes(net)
            rows.append({"arch": a.to_string(), "measured_peak_bytes": meas, "predicted_peak_bytes": est.peak_activation_bytes,
                         "ideal_peak_bytes": ideal.activation_peak(a),
                         "weights_exact": pw == (est.params_bytes, est.buffers_bytes),
                         "params_bytes": est.params_bytes, "training_bytes_predicted": est.training_bytes})
        m = np.array([r["measured_peak_bytes"] for r in rows], float)
        p = np.array([r["predicted_peak_bytes"] for r in rows], float)
        rel = (p - m) / m
        report["spaces"][name] = {
            "n": len(rows), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "within_1pct": float(np.mean(np.abs(rel) <= 0.01)), "mean_rel_error": float(rel.mean()),
            "max_abs_rel_error": float(np.abs(rel).max()),
            "weights_exact_share": float(np.mean([r["weights_exact"] for r in rows])),
            "ideal_over_eager_median": float(np.median([r["ideal_peak_bytes"] / r["predicted_peak_bytes"] for r in rows])),
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
        }
        s = report["spaces"][name]
        print(f"{name}: n={s['n']} within10={s['within_10pct']:.3f} within1={s['within_1pct']:.3f} "
              f"max|rel|={s['max_abs_rel_error']:.4f} weights exact={s['weights_exact_share']:.2f}")
        plots.append((name, m, p))
    if args.device == "cpu" and args.train_n:
        from hwnas.estimators.memory import measure_training_peak_memory

        space = Space.preset(args.space)
        mm = MemoryModel(space, batch_size=args.train_batch)
        rows = []
        for a in space.sample_many(args.train_n, rng=7, unique=True):
            meas = measure_training_peak_memory(build_static(space, a), (args.train_batch, space.in_channels,
                                                                          a.resolution, a.resolution))
            e = mm.estimate(a)
            pred = e.training_bytes - e.params_bytes * (1 + mm.optimizer_slots) - e.buffers_bytes
            rows.append({"arch": a.to_string(), "measured_bytes": meas, "predicted_bytes": pred})
        rel = np.array([r["predicted_bytes"] / r["measured_bytes"] - 1 for r in rows])
        report["training"] = {
            "space": space.name, "batch": args.train_batch, "n": len(rows),
            "what": "forward+backward peak (activations kept for backward + gradients + transient), CPU profiler",
            "mean_rel_error": float(rel.mean()), "min_rel_error": float(rel.min()), "max_rel_error": float(rel.max()),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "rows": rows}
        print(f"training (batch {args.train_batch}): rel error {rel.min():+.3f}..{rel.max():+.3f}")
    stem = "memory_model" if args.device == "cpu" else f"memory_model_{args.device}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    _plot(out / f"{stem}.png", plots, args.device)
    print("wrote", out / f"{stem}.json")
    return 0


def _plot(path: Path, plots: list, device: str = "cpu") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(plots), figsize=(4.5 * len(plots), 4.2))
    for ax, (name, m, p) in zip(np.atleast_1d(axes), plots):
        m, p = m / 2**10, p / 2**10
        ax.scatter(m, p, s=10)
        lo, hi = m.min() * 0.9, m.max() * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=1)
        ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k--", lw=0.6)
        ax.plot([lo, hi], [lo * 0.9, hi * 0.9], "k--", lw=0.6)
        ax.set_title(f"{name} ({len(m)} subnets)")
        ax.set_xlabel("measured peak activations (KiB, " + ("CPU profiler" if device == "cpu" else
                                                              "cuda.max_memory_allocated") + ")")
        ax.set_ylabel("predicted (KiB, eager liveness model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
