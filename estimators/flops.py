"""Multiply-accumulates (MACs) and parameters of subnets.

Units, said once: fvcore counts one fused multiply-add as one "flop", so what it reports is MACs.
We name everything `macs`; FLOPs in the usual sense are about 2 x MACs.

Two paths that agree on convolutions and linear layers (checked in tests):
- `count_fvcore(module, input_shape)`: fvcore's tracer on the real module (slow: it JIT-traces);
- `arch_macs(space, arch)`: closed form over `space.block_configs(arch)` (microseconds per arch),
  used by the FLOPs-proxy latency baseline and by searchers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hwnas.search_space import Arch, BlockConfig, Space, mid_channels, se_channels

__all__ = ["count_fvcore", "arch_macs", "arch_macs_many", "block_macs", "count_params", "arch_params"]


def count_fvcore(module: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """fvcore MAC count of `module` for one input of `input_shape`: total, per operator, and parameters."""
    import logging

    import torch
    from fvcore.nn import FlopCountAnalysis

    module = module.eval()
    x = torch.zeros(*input_shape)
    fca = FlopCountAnalysis(module, (x,))
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    by_op = {k: int(v) for k, v in fca.by_operator().items()}
    return {"macs": int(fca.total()), "by_operator": by_op,
            "conv_linear_macs": int(sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul"))),
            "params": int(sum(p.numel() for p in module.parameters()))}


def block_macs(space: Space, c: BlockConfig) -> int:
    """Conv + linear MACs of one block configuration, batch 1 (BN, activations, pooling excluded)."""
    hin, hout = c.in_size, c.out_size
    if c.kind == "stem":
        return c.cin * c.cout * c.kernel**2 * hout * hout
    if c.kind == "head":
        h = space.head
        m, ch = 0, c.cin
        if h.expand_channels:
            m += ch * h.expand_channels * hin * hin
            ch = h.expand_channels
        if h.feature_channels:
            m += ch * h.feature_channels
            ch = h.feature_channels
        return m + ch * space.num_classes
    if c.kind == "conv":
        m = c.cin * c.cout * c.kernel**2 * hout * hout
        return m + (2 * c.cout * se_channels(c.cout) if c.se else 0)
    mid = mid_channels(c.cin, c.expand)
    if c.kind == "fmb":
        m = c.cin * mid * c.kernel**2 * hout * hout
    else:
        has_expand = _has_expand(space, c)
        if not has_expand:
            mid = c.cin
        m = (c.cin * mid * hin * hin if has_expand else 0) + mid * c.kernel**2 * hout * hout
    if c.se:
        m += 2 * mid * se_channels(mid)
    return m + mid * c.cout * hout * hout


def _has_expand(space: Space, c: BlockConfig) -> bool:
    for ss in space.stages:
        if c.kind in ss.kinds and c.cout in ss.widths and c.kernel in ss.kernels and c.expand in ss.expands \
                and ss.se == c.se and ss.act == c.act:
            return max(ss.expands) > 1
    return True


def arch_macs(space: Space, arch: Arch | str) -> int:
    """Conv + linear MACs of `arch` at batch 1."""
    arch = space.parse(arch)
    return int(sum(block_macs(space, c) for c in space.block_configs(arch)))


def arch_macs_many(space: Space, archs: list[Arch]) -> np.ndarray:
    cache: dict[str, int] = {}
    out = np.empty(len(archs), dtype=np.float64)
    for i, a in enumerate(archs):
        s = 0
        for c in space.block_configs(a):
            v = cache.get(c.key)
            if v is None:
                v = cache[c.key] = block_macs(space, c)
            s += v
        out[i] = s
    return out


def count_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def arch_params(space: Space, arch: Arch | str) -> int:
    """Parameter count of `arch` (builds the static net once; a few ms)."""
    from hwnas.supernet import build_static

    return count_params(build_static(space, space.parse(arch)))

