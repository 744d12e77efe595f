"""What an architecture is: spaces, block kinds, `Arch`, the network walk, encodings and presets.

The room every other component stands on. It may import only the standard library, numpy, PyYAML
and `hwnas.errors` / `hwnas._io`, never another hwnas component (supernet, estimators, kernels,
searchers): they import it. Modules: `_space` (the `Space` and its YAML form), `_arch` (`Arch` and
its string), `_blocks` (the block-kind registry and its cost formulas), `_walk` (one walk of an
arch through the network), `_configs` (block configurations), `_choices` (the searchers' choice
map), `_encoding` (the predictors' vectors), `_sampling` (sampling and variation), `_presets`,
`_tables` (per-space tables for the hot paths: validation by set lookups, the space's own blocks).
"""

from __future__ import annotations

from hwnas.search_space._arch import BLOCK_KINDS, Arch, BlockArch, StageArch
from hwnas.search_space._blocks import (
    BlockKind,
    Layer,
    block_kind,
    block_kinds,
    block_layers,
    block_macs,
    block_module,
    block_params,
    register_block_module,
)
from hwnas.search_space._configs import stage_block_config
from hwnas.search_space._presets import available_presets, load_preset, ofa_arch
from hwnas.search_space._space import (
    ACTIVATIONS,
    BlockConfig,
    HeadSpec,
    Space,
    StageSpec,
    StemSpec,
    as_random,
    make_divisible,
    mid_channels,
    se_channels,
)
from hwnas.search_space._walk import BlockSite, feature_sizes, walk

__all__ = [
    "ACTIVATIONS",
    "BLOCK_KINDS",
    "Arch",
    "BlockArch",
    "BlockConfig",
    "BlockKind",
    "BlockSite",
    "HeadSpec",
    "Layer",
    "Space",
    "StageArch",
    "StageSpec",
    "StemSpec",
    "as_random",
    "available_presets",
    "block_kind",
    "block_kinds",
    "block_layers",
    "block_macs",
    "block_module",
    "block_params",
    "feature_sizes",
    "load_preset",
    "make_divisible",
    "mid_channels",
    "ofa_arch",
    "register_block_module",
    "se_channels",
    "stage_block_config",
    "walk",
]
