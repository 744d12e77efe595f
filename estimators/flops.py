"""Multiply-accumulates (MACs) and parameters of subnets.

Units, said once: fvcore counts one fused multiply-add as one "flop", so what it reports is MACs.
We name everything `macs`; FLOPs in the usual sense are about 2 x MACs.

Two paths that agree on convolutions and linear layers (checked in tests):
- `count_fvcore(module, input_shape)`: fvcore's tracer on the real module (slow: it JIT-traces);
- `arch_macs(space, arch)`: closed form over `space.block_configs(arch)` (microseconds per arch),
  each block priced by the block-kind registry (`hwnas.search_space.block_macs`), used by the
  MACs-proxy latency baseline and by searchers.

`arch_params` is the registry's closed form too; tests check it equals the static net's count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hwnas.search_space import Arch, BlockConfig, Space, block_params
from hwnas.search_space import block_macs as _registry_block_macs

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
    return _registry_block_macs(space, c)


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
    """Parameter count of `arch`'s static net, in closed form (equal to `count_params(build_static(...))`)."""
    return int(sum(block_params(space, c) for c in space.block_configs(space.parse(arch))))

