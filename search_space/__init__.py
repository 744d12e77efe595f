"""What an architecture is: spaces, block choices, `Arch`, encodings and presets."""

from __future__ import annotations

from hwnas.search_space._arch import BLOCK_KINDS, Arch, BlockArch, StageArch
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

__all__ = [
    "ACTIVATIONS",
    "BLOCK_KINDS",
    "Arch",
    "BlockArch",
    "BlockConfig",
    "HeadSpec",
    "Space",
    "StageArch",
    "StageSpec",
    "StemSpec",
    "as_random",
    "available_presets",
    "load_preset",
    "make_divisible",
    "mid_channels",
    "ofa_arch",
    "se_channels",
]
