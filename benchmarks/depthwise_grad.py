"""Depthwise-conv weight gradient on CPU: PyTorch's kernel vs `hwnas.supernet.ops.depthwise_conv2d`.

Profiling a supernet training step on 2 CPU cores showed PyTorch's depthwise weight gradient
taking ~60% of the step (a 7x7 kernel on a 4x4 map: ~100 ms backward for a ~3 ms forward). This
times, side by side in one process, forward+backward of each depthwise layer shape of the
`fmnist-mbv3` max subnet with both, and one whole training step (forward + backward, batch 128)
of the max and the min subnet with the fast path on and off. Writes
`results/benchmarks/depthwise_grad.json`.

    python benchmarks/depthwise_grad.py [--batch 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "results" / "benchmarks" / "depthwise_grad.json"


def _median_ms(fn, repeats: int) -> float:
    import statistics

    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _grad(conv, x, w, go, rest) -> None:
    import torch

    torch.autograd.grad(conv(x, w, *rest), (x, w), go)


def _train_step(net, x, y) -> None:
    import torch.nn.functional as F

    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--batch", type=int, default=128, help="images per step (training batch; default 128)"
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repeats per case; the median is kept (default 5)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads (default 2, the CI machine's cores)",
    )
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from hwnas.search_space import Space
    from hwnas.supernet import Supernet, ops

    torch.set_num_threads(args.threads)
    n = args.batch
    # (channels, kernel, stride, input size): the max subnet's depthwise layers at resolution 28
    shapes = [
        (144, 7, 1, 14),
        (144, 7, 2, 14),
        (240, 7, 1, 7),
        (240, 7, 2, 7),
        (480, 7, 1, 4),
        (576, 7, 1, 4),
        (576, 5, 1, 4),
        (576, 3, 1, 4),
    ]
    layers = []
    for c, k, s, hw in shapes:
        x = torch.randn(n, c, hw, hw, requires_grad=True)
        w = torch.randn(c, 1, k, k, requires_grad=True)
        out = F.conv2d(x, w, None, s, k // 2, 1, c)
        go = torch.randn_like(out)
        t_torch = _median_ms(
            functools.partial(_grad, F.conv2d, x, w, go, (None, s, k // 2, 1, c)), args.repeats
        )
        t_ours = _median_ms(
            functools.partial(_grad, ops.depthwise_conv2d, x, w, go, (None, s)), args.repeats
        )
        layers.append(
            {
                "channels": c,
                "kernel": k,
                "stride": s,
                "size": hw,
                "torch_ms": t_torch,
                "hwnas_ms": t_ours,
                "speedup": t_torch / t_ours,
            }
        )
        print(
            f"dw c={c:3d} k={k} s={s} {hw:2d}x{hw:<2d}  torch {t_torch:7.1f} ms  hwnas {t_ours:6.1f} ms  x{t_torch / t_ours:.1f}"
        )

    torch.manual_seed(0)
    space = Space.preset("fmnist-mbv3")
    net = Supernet(space).train()
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    steps = []
    limit = ops.DW_FAST_MAX_PIXELS
    for name, arch in [("max", space.max_arch()), ("min", space.min_arch())]:
        net.set_active(arch)
        xi = F.interpolate(x, size=(arch.resolution,) * 2, mode="bilinear", align_corners=False)

        step = functools.partial(_train_step, net, xi, y)
        row = {"subnet": name, "resolution": arch.resolution}
        for label, pixels in (("torch_ms", 0), ("hwnas_ms", limit)):
            ops.DW_FAST_MAX_PIXELS = pixels
            row[label] = _median_ms(step, args.repeats)
        ops.DW_FAST_MAX_PIXELS = limit
        row["speedup"] = row["torch_ms"] / row["hwnas_ms"]
        steps.append(row)
        print(
            f"training step ({name} subnet, batch {n})  torch dw {row['torch_ms']:7.1f} ms  hwnas dw {row['hwnas_ms']:7.1f} ms  "
            f"x{row['speedup']:.2f}"
        )

    result = {
        "benchmark": "depthwise_grad",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "batch": n,
        "repeats": args.repeats,
        "statistic": "median ms of forward+backward",
        "layers": layers,
        "training_step": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
