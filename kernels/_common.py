"""Shared pieces of the fused kernels: activation codes, BN folding, backend choice, launch configs."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = [
    "ACT_CODES",
    "act_code",
    "apply_act_ref",
    "fold_bn",
    "interpreting",
    "use_triton",
    "batch_regime",
    "autotune_enabled",
    "tuned",
    "Launcher",
    "fast_launch_enabled",
]

# Activation codes passed to kernels as a constexpr: one compiled variant per activation.
ACT_CODES: dict[str | None, int] = {None: 0, "relu": 1, "relu6": 2, "hswish": 3, "swish": 4, "hsigmoid": 5}


def act_code(act: str | None) -> int:
    """The kernel code of an activation name; ValueError names the allowed ones."""
    if act not in ACT_CODES:
        raise ValueError(f"unknown activation {act!r}; allowed: {sorted(k for k in ACT_CODES if k)} or None")
    return ACT_CODES[act]


def apply_act_ref(x: torch.Tensor, act: str | None) -> torch.Tensor:
    """PyTorch reference of every fused activation (same formulas as `_act` below)."""
    if act is None:
        return x
    if act == "relu":
        return torch.relu(x)
    if act == "relu6":
        return x.clamp(0.0, 6.0)
    if act == "hswish":
        return x * (x + 3.0).clamp(0.0, 6.0) / 6.0
    if act == "swish":
        return x * torch.sigmoid(x)
    if act == "hsigmoid":
        return (x + 3.0).clamp(0.0, 6.0) / 6.0
    raise ValueError(f"unknown activation {act!r}")


@triton.jit
def _act(x, ACT: tl.constexpr):
    # ACT is a constexpr, so the untaken branches vanish at compile time.
    if ACT == 1:
        x = tl.maximum(x, 0.0)
    elif ACT == 2:
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACT == 3:
        x = x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    elif ACT == 4:
        x = x / (1.0 + tl.exp(-x))
    elif ACT == 5:
        x = tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    return x


def fold_bn(weight: torch.Tensor, bn: torch.nn.BatchNorm2d, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding conv: returns (weight', bias').

    Computed in float64 so folding adds no rounding of its own beyond the final cast.
    """
    dtype = weight.dtype
    w = weight.detach().double()
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    b0 = bias.detach().double() if bias is not None else torch.zeros_like(scale)
    w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b = (b0 - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w.to(dtype).contiguous(), b.to(dtype).contiguous()


def interpreting() -> bool:
    """Whether Triton kernels run through the CPU interpreter (TRITON_INTERPRET=1 set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(x: torch.Tensor) -> bool:
    """Whether a fused module should launch Triton kernels for `x` (CUDA tensor, or the interpreter on CPU)."""
    return x.is_cuda or (interpreting() and x.device.type == "cpu")


# Output pixels (batch x height x width) from which a launch counts as throughput work. Batch 1
# at 28 px and below stays in the latency family; batch >= 32 (or batch 1 at 112 px) switches.
LARGE_WORK = 4096


def batch_regime(n: int, pixels: int = 1) -> str:
    """Which family of launch configs suits a launch: 'small' (latency: batch 1, small maps) or
    'large' (throughput: batch >= 32, or large feature maps), from batch x output pixels."""
    return "large" if n >= 32 or n * pixels >= LARGE_WORK else "small"


def autotune_enabled() -> bool:
    """False when HWNAS_KERNELS_AUTOTUNE=0: launches take their family's first config, untimed
    (deterministic and quick to compile, e.g. for long correctness sweeps)."""
    return os.environ.get("HWNAS_KERNELS_AUTOTUNE", "1") != "0"


def _quick_bench(kernel_call, quantiles):  # noqa: ANN001 - the autotuner's do_bench hook
    # Triton's default spends 25 + 100 ms per config; a block has a few kernels and a space has
    # hundreds of shapes, so a short median over ~20 ms is the better trade.
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def tuned(fn, configs: list, key: list[str], reset_to_zero: list[str] | None = None):  # noqa: ANN001, ANN201
    """`triton.autotune` over `configs` with a short timing loop; one tuner per batch regime."""
    return triton.autotune(configs=configs, key=key, reset_to_zero=reset_to_zero, do_bench=_quick_bench)(fn)


def fast_launch_enabled() -> bool:
    """False when HWNAS_KERNELS_FAST_LAUNCH=0: every launch goes through Triton's JIT entry point."""
    return os.environ.get("HWNAS_KERNELS_FAST_LAUNCH", "1") != "0"


def _launch_signature(regime: str, args: tuple, consts: dict) -> tuple:
    # Everything Triton specialises a compiled kernel on: every int (values 1 and multiples of
    # 16 are specialised), each tensor's dtype, device and 16-byte alignment, the constexprs.
    parts: list = [regime, autotune_enabled()]
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append((a.dtype, a.device, a.data_ptr() % 16 == 0))
        else:
            parts.append(a)
    parts.extend(consts.items())
    return tuple(parts)


class Launcher:
    """Launches one `@triton.jit` kernel with a family of configs per batch regime.

    The first launch of an argument signature (shapes, strides, dtypes, alignment, constexprs,
    and the grid where it is given as a tuple) goes through Triton's entry point: specialise,
    autotune, compile. It returns the compiled
    kernel, and the launcher keeps it with its grid and the chosen config, so later launches of
    that signature call the compiled kernel directly. At batch 1 a block is a handful of short
    kernels and Triton's Python entry point (argument binding, specialisation key, autotuner
    lookup: tens of microseconds per launch) costs more than the kernels run; the direct call
    costs a few microseconds. HWNAS_KERNELS_FAST_LAUNCH=0 turns the shortcut off.

    `args` are the kernel's runtime arguments in signature order; the constexprs follow them in
    the signature and are given by name in `consts` (the config's block sizes complete them).
    """

    def __init__(
        self, fn, small: list | None = None, large: list | None = None,  # noqa: ANN001
        key: list[str] | None = None, reset_to_zero: list[str] | None = None,
    ):
        self.fn = fn
        self.configs = {"small": small, "large": large} if small and large else {}
        self.tuners = {r: tuned(fn, c, key or [], reset_to_zero) for r, c in self.configs.items()}
        self.plans: dict[tuple, tuple] = {}

    def __call__(self, regime: str | None, grid, args: tuple, consts: dict, **options) -> None:  # noqa: ANN001, ANN003
        """Launch. `regime` 'small'/'large' picks the config family; None: untuned, `consts` holds
        every constexpr, `grid` is a tuple and `options` (num_warps, ...) go to Triton as given."""
        fast = fast_launch_enabled()
        if fast:
            sig = _launch_signature(regime, args, consts)
            if regime is None:
                # a fixed grid may depend on sizes that are no kernel argument (e.g. the batch of
                # a kernel launched once per sample), so it is part of the signature
                sig += (tuple(grid),)
            plan = self.plans.get(sig)
            if plan is not None:
                plan[0](*args, *plan[1])
                return
        if regime is None:
            compiled = self.fn[grid](*args, **consts, **options)
            cfg, fixed = triton.Config({}), grid
            grid = lambda meta: fixed  # noqa: E731
        elif autotune_enabled():
            tuner = self.tuners[regime]
            compiled = tuner[grid](*args, **consts)
            cfg = tuner.best_config
        else:
            cfg = self.configs[regime][0]
            compiled = self.fn[grid(cfg.kwargs)](
                *args, **consts, **cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages
            )
        if not fast:
            return
        meta = {**consts, **cfg.kwargs}
        names = self.fn.arg_names[len(args):]
        # only a compiled kernel we know how to call directly gets a plan; anything else (another
        # Triton version's return value) keeps taking the entry point
        if hasattr(compiled, "__getitem__") and hasattr(compiled, "function") and all(n in meta for n in names):
            g = tuple(grid(meta))
            self.plans[sig] = (compiled[g + (1,) * (3 - len(g))], tuple(meta[n] for n in names))
