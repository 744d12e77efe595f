"""`Space`: a frozen, declarative description of what architectures may be built.

A space is a stem, a list of stages and a head. Each stage fixes its stride, SE and activation
and lists the choices a search may make: block kinds, depths, kernel sizes, expand ratios and
output widths. The input resolution is a choice too. Everything else is derived from that, each
idea in its own module, with a thin method here so the public API stays on `Space`: sampling and
variation (`_sampling`), the searchers' choice map (`_choices`), the predictors' encoding
(`_encoding`), the block configurations a profiler must time (`_configs`). This module keeps the
declaration, its YAML/dict form with validation, and arch validation. A `Space` is frozen and
never caches on itself; derived tables are cached by `functools.lru_cache` keyed by the space
(`_tables.per_space`). Over ~400 lines (~440): the YAML/dict checks (~200) stay beside the
dataclasses they build, as one reading of what a space file may hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.errors import ArchError, SpaceError
from hwnas.search_space import _choices, _configs, _encoding, _sampling, _tables
from hwnas.search_space._arch import Arch, BlockArch
from hwnas.search_space._blocks import (
    BLOCK_KINDS,
    CHANNEL_DIVISOR,
    block_kind,
    make_divisible,
    mid_channels,
    se_channels,
)
from hwnas.search_space._configs import BlockConfig
from hwnas.search_space._walk import feature_sizes

__all__ = [
    "ACTIVATIONS",
    "CHANNEL_DIVISOR",
    "StemSpec",
    "StageSpec",
    "HeadSpec",
    "Space",
    "BlockConfig",
    "make_divisible",
    "mid_channels",
    "se_channels",
    "as_random",
]

ACTIVATIONS = ("relu", "relu6", "hswish", "swish")


def as_random(rng: Any = None) -> random.Random:
    """Accept None, an int seed, a `random.Random` or a numpy Generator; return a `random.Random`."""
    if rng is None:
        return random.Random()
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, (int, np.integer)):
        return random.Random(int(rng))
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(0, 2**63 - 1)))
    raise TypeError(f"rng must be None, an int, random.Random or numpy Generator, not {type(rng).__name__}")


def _tuple_of_ints(name: str, v: Any, *, where: str, positive: bool = True) -> tuple[int, ...]:
    if isinstance(v, Mapping):
        keys = set(v)
        if keys != {"start", "stop", "step"}:
            raise SpaceError(f"{where}.{name}: a range needs exactly keys start, stop, step (got {sorted(keys)})")
        v = list(range(_int(v["start"], f"{where}.{name}.start"), _int(v["stop"], f"{where}.{name}.stop") + 1,
                       _int(v["step"], f"{where}.{name}.step")))
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, Sequence) or isinstance(v, str) or not v:
        raise SpaceError(f"{where}.{name}: expected a non-empty list of integers, got {v!r}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise SpaceError(f"{where}.{name}: {x!r} is not an integer")
        if positive and x <= 0:
            raise SpaceError(f"{where}.{name}: {x} must be positive")
        out.append(int(x))
    if len(set(out)) != len(out):
        raise SpaceError(f"{where}.{name}: duplicate choices in {out}")
    return tuple(sorted(out))


def _int(v: Any, where: str, lo: int = 1) -> int:
    """One integer setting (`in_channels: 3`), at least `lo`; `one`, `2.5` or `true` are refused."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise SpaceError(f"{where}: {v!r} is not an integer")
    if v < lo:
        raise SpaceError(f"{where}: {v} must be >= {lo}")
    return int(v)


def _float(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise SpaceError(f"{where}: {v!r} is not a finite number")
    return float(v)


def _seq(v: Any, where: str) -> Sequence[Any]:
    if not isinstance(v, Sequence) or isinstance(v, str):
        raise SpaceError(f"{where}: expected a list, got {v!r}")
    return v


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise SpaceError(f"{where}: expected a mapping, got {type(d).__name__}")
    extra = set(d) - allowed
    if extra:
        raise SpaceError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _check_act(act: Any, where: str) -> str:
    if act not in ACTIVATIONS:
        raise SpaceError(f"{where}.act: unknown activation {act!r}; allowed: {list(ACTIVATIONS)}")
    return str(act)


@dataclass(frozen=True)
class StemSpec:
    """The fixed first convolution: in_channels -> channels, kernel, stride, BN, activation."""

    channels: int
    kernel: int = 3
    stride: int = 2
    act: str = "hswish"


@dataclass(frozen=True)
class StageSpec:
    """One stage: fixed stride/SE/activation and the elastic choices of its blocks."""

    kinds: tuple[str, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    widths: tuple[int, ...]
    stride: int = 1
    se: bool = False
    act: str = "relu"

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def block_choices(self) -> list[BlockArch]:
        """Every (kind, kernel, expand) a block slot of this stage may take."""
        out = []
        for kind in self.kinds:
            expands = self.expands if block_kind(kind).takes_expand else (1,)
            for k in self.kernels:
                out.extend(BlockArch(kind, k, e) for e in expands)
        return out


@dataclass(frozen=True)
class HeadSpec:
    """Final 1x1 expand conv (optional), global pool, feature 1x1 conv (optional), classifier."""

    expand_channels: int | None = None
    feature_channels: int | None = None
    act: str = "hswish"
    dropout: float = 0.0


@dataclass(frozen=True)
class Space:
    """A search space. Build with `Space.preset(name)`, `Space.from_yaml(path)` or `Space.from_dict`."""

    name: str
    in_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    description: str = field(default="", compare=False)

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Space:
        _check_keys(
            d,
            {"name", "description", "in_channels", "num_classes", "resolutions", "normalization", "stem", "stages", "head"},
            "space",
        )
        for req in ("name", "in_channels", "num_classes", "resolutions", "stem", "stages"):
            if req not in d:
                raise SpaceError(f"space: missing required key {req!r}")
        name = str(d["name"])
        where = f"space {name!r}"
        stem_d = d["stem"]
        _check_keys(stem_d, {"channels", "kernel", "stride", "act"}, f"{where}.stem")
        stem = StemSpec(
            channels=_int(stem_d.get("channels"), f"{where}.stem.channels"),
            kernel=_int(stem_d.get("kernel", 3), f"{where}.stem.kernel"),
            stride=_int(stem_d.get("stride", 2), f"{where}.stem.stride"),
            act=_check_act(stem_d.get("act", "hswish"), f"{where}.stem"),
        )
        if not isinstance(d["stages"], Sequence) or not d["stages"]:
            raise SpaceError(f"{where}.stages: expected a non-empty list")
        stages = []
        for i, sd in enumerate(d["stages"], start=1):
            sw = f"{where}.stages[s{i}]"
            _check_keys(sd, {"kinds", "depths", "kernels", "expands", "widths", "stride", "se", "act"}, sw)
            kinds = sd.get("kinds", ["mb"])
            if isinstance(kinds, str):
                kinds = [kinds]
            for k in kinds:
                if k not in BLOCK_KINDS:
                    raise SpaceError(f"{sw}.kinds: unknown block kind {k!r}; allowed: {list(BLOCK_KINDS)}")
            kernels = _tuple_of_ints("kernels", sd.get("kernels", [3]), where=sw)
            for k in kernels:
                if k % 2 == 0:
                    raise SpaceError(f"{sw}.kernels: kernel {k} must be odd")
            st = StageSpec(
                kinds=tuple(dict.fromkeys(kinds)),
                depths=_tuple_of_ints("depths", sd.get("depths", [1]), where=sw),
                kernels=kernels,
                expands=_tuple_of_ints("expands", sd.get("expands", [1]), where=sw),
                widths=_tuple_of_ints("widths", sd["widths"] if "widths" in sd else None, where=sw),
                stride=_int(sd.get("stride", 1), f"{sw}.stride"),
                se=bool(sd.get("se", False)),
                act=_check_act(sd.get("act", "relu"), sw),
            )
            if st.stride not in (1, 2):
                raise SpaceError(f"{sw}.stride: {st.stride} not allowed; allowed: [1, 2]")
            stages.append(st)
        head_d = d.get("head", {}) or {}
        _check_keys(head_d, {"expand_channels", "feature_channels", "act", "dropout"}, f"{where}.head")
        head = HeadSpec(
            expand_channels=None if head_d.get("expand_channels") is None else _int(head_d["expand_channels"], f"{where}.head.expand_channels"),
            feature_channels=None if head_d.get("feature_channels") is None else _int(head_d["feature_channels"], f"{where}.head.feature_channels"),
            act=_check_act(head_d.get("act", "hswish"), f"{where}.head"),
            dropout=_float(head_d.get("dropout", 0.0), f"{where}.head.dropout"),
        )
        norm = d.get("normalization", {}) or {}
        _check_keys(norm, {"mean", "std"}, f"{where}.normalization")
        in_channels = _int(d["in_channels"], f"{where}.in_channels")
        mean = tuple(_float(x, f"{where}.normalization.mean") for x in _seq(norm.get("mean", [0.5] * in_channels), f"{where}.normalization.mean"))
        std = tuple(_float(x, f"{where}.normalization.std") for x in _seq(norm.get("std", [0.5] * in_channels), f"{where}.normalization.std"))
        if len(mean) != in_channels or len(std) != in_channels:
            raise SpaceError(f"{where}.normalization: mean/std need {in_channels} values (one per input channel)")
        return cls(
            name=name,
            in_channels=in_channels,
            num_classes=_int(d["num_classes"], f"{where}.num_classes", lo=2),  # one class is no classifier
            resolutions=_tuple_of_ints("resolutions", d["resolutions"], where=where),
            stem=stem,
            stages=tuple(stages),
            head=head,
            mean=mean,
            std=std,
            description=str(d.get("description", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "resolutions": list(self.resolutions),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "stem": asdict(self.stem),
            "stages": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(st).items()} for st in self.stages
            ],
            "head": asdict(self.head),
        }

    @classmethod
    def from_yaml(cls, path: str | Path) -> Space:
        from hwnas._io import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(path, "space file", SpaceError))

    @classmethod
    def preset(cls, name: str) -> Space:
        """A ready space by name (`ofa-mbv3`, `fmnist-mbv3`, `fmnist-mixed`) or a YAML path."""
        from hwnas.search_space._presets import load_preset

        return load_preset(name)

    # ---- derived shape --------------------------------------------------------------------------
    @property
    def max_depth(self) -> int:
        return max(st.max_depth for st in self.stages)

    def stage_in_widths(self, i: int) -> tuple[int, ...]:
        """Widths that may enter stage i (0-based): the previous stage's widths or the stem's."""
        return (self.stem.channels,) if i == 0 else self.stages[i - 1].widths

    def feature_sizes(self, resolution: int) -> list[int]:
        """Input spatial size of every stage (index 0..n-1) and, last, of the head."""
        return feature_sizes(self, resolution)

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Check every choice of `arch` against this space; return it stamped with this space's name."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space and arch.space != self.name:
            raise ArchError(f"arch belongs to space {arch.space!r}, not {self.name!r}")
        if not _tables.admits(self, arch):  # the checks below, by set lookups; `_refuse` names what is wrong
            self._refuse(arch)
        return arch if arch.space == self.name else replace(arch, space=self.name)

    def _refuse(self, arch: Arch) -> None:
        """Raise the `ArchError` naming the first choice of `arch` this space does not allow (if any)."""
        if arch.resolution not in self.resolutions:
            raise ArchError(
                f"resolution r{arch.resolution} is not in space {self.name!r}; allowed: {list(self.resolutions)}"
            )
        if len(arch.stages) != len(self.stages):
            raise ArchError(
                f"arch has {len(arch.stages)} stages but space {self.name!r} has {len(self.stages)} (truncated or from another space?)"
            )
        for i, (sa, ss) in enumerate(zip(arch.stages, self.stages), start=1):
            if sa.width not in ss.widths:
                raise ArchError(f"stage s{i}: width w{sa.width} not allowed; allowed: {list(ss.widths)}")
            if sa.depth not in ss.depths:
                raise ArchError(f"stage s{i}: depth {sa.depth} out of range; allowed: {list(ss.depths)}")
            for j, b in enumerate(sa.blocks):
                tok = f"s{i} block {j} ({b.token()})"
                if b.kind not in ss.kinds:
                    raise ArchError(f"{tok}: block kind {b.kind!r} not allowed in stage s{i}; allowed: {list(ss.kinds)}")
                if b.kernel not in ss.kernels:
                    raise ArchError(f"{tok}: kernel k{b.kernel} not allowed in stage s{i}; allowed: {list(ss.kernels)}")
                if not block_kind(b.kind).takes_expand:
                    if b.expand != 1:
                        raise ArchError(f"{tok}: {b.kind} blocks take no expand ratio (got e{b.expand})")
                elif b.expand not in ss.expands:
                    raise ArchError(f"{tok}: expand e{b.expand} not allowed in stage s{i}; allowed: {list(ss.expands)}")

    def parse(self, s: str | Arch | Mapping[str, Any]) -> Arch:
        """Parse an arch string (or dict, or Arch) and validate it against this space."""
        if isinstance(s, Arch):
            return self.validate(s)
        if isinstance(s, Mapping):
            return self.validate(Arch.from_dict(s))
        arch = Arch.from_string(s, space=self.name)
        return self.validate(arch)

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
            return True
        except ArchError:
            return False

    # ---- size and enumeration -------------------------------------------------------------------
    def size(self) -> int:
        """Number of distinct architectures in the space (exact integer)."""
        total = len(self.resolutions)
        for st in self.stages:
            per_block = len(st.block_choices())
            total *= len(st.widths) * sum(per_block**d for d in st.depths)
        return total

    def enumerate(self, *, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every architecture, in a fixed order. Refuses spaces larger than `limit`."""
        n = self.size()
        if n > limit:
            raise SpaceError(f"space {self.name!r} has {n} architectures; enumerate() is for spaces of <= {limit}")
        return _sampling.enumerate_archs(self)

    # ---- sampling and variation (search_space/_sampling.py) ---------------------------------------
    def sample(self, rng: Any = None) -> Arch:
        """Draw an arch: each choice uniformly and independently (the OFA / BigNAS convention)."""
        return _sampling.sample(self, as_random(rng))

    def sample_many(self, n: int, rng: Any = None, *, unique: bool = False) -> list[Arch]:
        return _sampling.sample_many(self, n, as_random(rng), unique=unique)

    def mutate(self, arch: Arch, rng: Any = None, *, prob: float = 0.1) -> Arch:
        """Resample each choice of `arch` with probability `prob`; the result stays in the space."""
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation prob must be in [0, 1], got {prob}")
        return _sampling.mutate(self, self.validate(arch), as_random(rng), prob)

    def crossover(self, a: Arch, b: Arch, rng: Any = None) -> Arch:
        """Uniform crossover: each stage's width/depth and each block slot from either parent."""
        return _sampling.crossover(self, self.validate(a), self.validate(b), as_random(rng))

    def min_arch(self) -> Arch:
        return _sampling.extreme_arch(self, largest=False)

    def max_arch(self) -> Arch:
        return _sampling.extreme_arch(self, largest=True)

    # ---- flat choice map for searchers (search_space/_choices.py) ----------------------------------
    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every elastic choice as `{name: choices}`; fixed (single-valued) choices are left out.

        Names: `r`, `s<i>.w`, `s<i>.d`, `s<i>.b<j>.kind`, `s<i>.b<j>.k`, `s<i>.b<j>.e` (1-based stage
        index, 0-based block slot). A slot's values are used only when the stage's depth reaches
        it; `e` is ignored for conv blocks.
        """
        return _choices.choices(self)

    def from_choices(self, values: Mapping[str, Any]) -> Arch:
        """Build an arch from a (possibly partial) flat choice map; missing names take the first choice."""
        return _choices.from_choices(self, values)

    def to_choices(self, arch: Arch) -> dict[str, Any]:
        """The full flat choice map of `arch`; unused slots get their first choice (for warm starts)."""
        return _choices.to_choices(self, arch)

    # ---- numeric encoding for predictors (search_space/_encoding.py) --------------------------------
    def encoding_names(self) -> list[str]:
        """Names of the columns of `encode` (fixed length for the space)."""
        return _encoding.encoding_names(self)

    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length float32 encoding: one-hot choices, zeros for inactive slots, scaled resolution."""
        return _encoding.encode(self, arch)

    def encode_many(self, archs: Sequence[Arch]) -> np.ndarray:
        return _encoding.encode_many(self, archs)

    # ---- block configurations for profiling (search_space/_configs.py) ------------------------------
    def block_configs(self, arch: Arch) -> list[BlockConfig]:
        """The blocks `arch` runs, in order: stem, every active block, head."""
        return _configs.block_configs(self, self.validate(arch))

    def distinct_block_configs(self) -> list[BlockConfig]:
        """Every distinct block configuration any arch of this space can contain (sorted by key)."""
        return _configs.distinct_block_configs(self)

    def __repr__(self) -> str:
        return f"Space({self.name!r}, stages={len(self.stages)}, resolutions={len(self.resolutions)}, size={self.size():.3e})"

