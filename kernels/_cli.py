"""`hwnas kernels`: check the fused Triton kernels against their PyTorch references, or fuse a checkpoint."""

from __future__ import annotations

import argparse

from hwnas._cli_choices import Float, Int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels", help="check the fused Triton kernels, or time an exported subnet fused vs eager",
        description="Fused Triton kernels (depthwise, 1x1/kxk conv GEMM, SE) for the efficient blocks.\n\n"
        "  hwnas kernels check                      # every block config of fmnist-mbv3, odd shapes, 20 fused archs\n"
        "  hwnas kernels check --what odd           # odd shapes only (fast)\n"
        "  hwnas kernels time results/runs/x/ckpt   # an exported subnet: fused vs eager on CUDA\n\n"
        "Without a CUDA GPU, `check` runs the real kernels through the Triton interpreter on the CPU\n"
        "(TRITON_INTERPRET=1, in a child process). The GPU benchmark is benchmarks/kernels.py.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ks = p.add_subparsers(dest="kernels_cmd", metavar="{check,time}")
    c = ks.add_parser("check", help="kernels vs PyTorch references (max abs error per check)")
    c.add_argument("--space", default="fmnist-mbv3", help="space preset (default fmnist-mbv3)")
    c.add_argument("--what", default="configs,odd,fuse", help="comma list of configs, odd, fuse (default all)")
    c.add_argument("--archs", type=Int(0, 100_000), default=20, help="random archs for the fuse check (default 20)")
    c.add_argument("--limit", type=Int(1, 10_000_000), default=None, help="only the first N block configs")
    c.add_argument("--tol", type=Float(0, 1e3), default=1e-4, help="max abs error that passes (default 1e-4)")
    c.add_argument("--json", default=None, help="write every record to this JSON file")
    c.set_defaults(func=_check)
    t = ks.add_parser("time", help="time an exported checkpoint fused vs eager on CUDA (batch 1)")
    t.add_argument("checkpoint", help="checkpoint directory written by `hwnas export`")
    t.add_argument("--batch", type=Int(1, 65_536), default=1, help="batch size (default 1)")
    t.add_argument("--cuda-graph", action="store_true", help="also time the fused net as CUDA-graph replays")
    t.set_defaults(func=_time)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _check(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import sys

    import torch

    cmd = [sys.executable, "-m", "hwnas.kernels._check", "--space", args.space, "--what", args.what,
           "--archs", str(args.archs), "--tol", str(args.tol)]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    if args.json:
        cmd += ["--json", args.json]
    env = dict(os.environ)
    if not torch.cuda.is_available():
        # Triton picks interpreted kernels when they are defined, so the check runs in a child
        # process that imports them with the variable already set.
        env["TRITON_INTERPRET"] = "1"
        print("no CUDA GPU: running the kernels through the Triton interpreter on the CPU", file=sys.stderr)
    return subprocess.call(cmd, env=env)


def _time(args: argparse.Namespace) -> int:
    import torch
    from hwnas.errors import HwnasError

    if not torch.cuda.is_available():
        raise HwnasError("`hwnas kernels time` needs a CUDA GPU; none is visible (use `hwnas kernels check` on a CPU)")
    from hwnas.kernels import fuse
    from hwnas.supernet import load_subnet
    from triton.testing import do_bench

    model = load_subnet(args.checkpoint).eval().cuda()
    fused = fuse(model, tf32=True)
    r = model.resolution
    x = torch.randn(args.batch, model.stem[0].in_channels, r, r, device="cuda")
    with torch.inference_mode():
        err = (fused(x) - model(x)).abs().max().item()
        print(f"max abs err fused vs eager (TF32): {err:.3g}")
        for name, m in [("eager", model), ("fused", fused)] + ([("fused+graph", fuse(model, tf32=True, cuda_graph=True))] if args.cuda_graph else []):
            print(f"{name:12s} {do_bench(lambda m=m: m(x), return_mode='median'):.4f} ms (do_bench median)")
    return 0
