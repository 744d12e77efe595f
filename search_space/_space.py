"""`Space`: a frozen, declarative description of what architectures may be built.

A space is a stem, a list of stages and a head. Each stage fixes its stride, SE and activation
and lists the choices a search may make: block kinds, depths, kernel sizes, expand ratios and
output widths. The input resolution is a choice too. Everything else (sampling, mutation,
encodings, the distinct block configurations a profiler must time) is derived from that.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.errors import ArchError, SpaceError
from hwnas.search_space._arch import BLOCK_KINDS, Arch, BlockArch, StageArch

__all__ = [
    "ACTIVATIONS",
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
CHANNEL_DIVISOR = 8


def make_divisible(v: float, divisor: int = CHANNEL_DIVISOR, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never going down by more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def mid_channels(cin: int, expand: int) -> int:
    """Hidden width of an (fused) inverted residual with input width `cin` and ratio `expand`."""
    return make_divisible(round(cin * expand))


def se_channels(channels: int, reduction: int = 4) -> int:
    """Squeeze width of an SE module over `channels` channels."""
    return make_divisible(channels // reduction)


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
        v = list(range(int(v["start"]), int(v["stop"]) + 1, int(v["step"])))
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
            for k in self.kernels:
                if kind == "conv":
                    out.append(BlockArch(kind, k, 1))
                else:
                    out.extend(BlockArch(kind, k, e) for e in self.expands)
        return out


@dataclass(frozen=True)
class HeadSpec:
    """Final 1x1 expand conv (optional), global pool, feature 1x1 conv (optional), classifier."""

    expand_channels: int | None = None
    feature_channels: int | None = None
    act: str = "hswish"
    dropout: float = 0.0


@dataclass(frozen=True)
class BlockConfig:
    """A distinct block as a profiler sees it: kind, channels, kernel, expand, stride, input size."""

    kind: str  # stem | mb | fmb | conv | head
    cin: int
    cout: int
    kernel: int
    expand: int
    stride: int
    in_size: int
    se: bool
    act: str

    @property
    def key(self) -> str:
        return (
            f"{self.kind}_i{self.cin}_o{self.cout}_k{self.kernel}_e{self.expand}_s{self.stride}"
            f"_r{self.in_size}_se{int(self.se)}_{self.act}"
        )

    @property
    def out_size(self) -> int:
        return math.ceil(self.in_size / self.stride)


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
            channels=int(stem_d["channels"]),
            kernel=int(stem_d.get("kernel", 3)),
            stride=int(stem_d.get("stride", 2)),
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
                stride=int(sd.get("stride", 1)),
                se=bool(sd.get("se", False)),
                act=_check_act(sd.get("act", "relu"), sw),
            )
            if st.stride not in (1, 2):
                raise SpaceError(f"{sw}.stride: {st.stride} not allowed; allowed: [1, 2]")
            stages.append(st)
        head_d = d.get("head", {}) or {}
        _check_keys(head_d, {"expand_channels", "feature_channels", "act", "dropout"}, f"{where}.head")
        head = HeadSpec(
            expand_channels=None if head_d.get("expand_channels") is None else int(head_d["expand_channels"]),
            feature_channels=None if head_d.get("feature_channels") is None else int(head_d["feature_channels"]),
            act=_check_act(head_d.get("act", "hswish"), f"{where}.head"),
            dropout=float(head_d.get("dropout", 0.0)),
        )
        norm = d.get("normalization", {}) or {}
        _check_keys(norm, {"mean", "std"}, f"{where}.normalization")
        in_channels = int(d["in_channels"])
        mean = tuple(float(x) for x in norm.get("mean", [0.5] * in_channels))
        std = tuple(float(x) for x in norm.get("std", [0.5] * in_channels))
        if len(mean) != in_channels or len(std) != in_channels:
            raise SpaceError(f"{where}.normalization: mean/std need {in_channels} values (one per input channel)")
        return cls(
            name=name,
            in_channels=in_channels,
            num_classes=int(d["num_classes"]),
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
        h = math.ceil(resolution / self.stem.stride)
        sizes = []
        for st in self.stages:
            sizes.append(h)
            h = math.ceil(h / st.stride)
        sizes.append(h)
        return sizes

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Check every choice of `arch` against this space; return it stamped with this space's name."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space and arch.space != self.name:
            raise ArchError(f"arch belongs to space {arch.space!r}, not {self.name!r}")
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
                if b.kind == "conv":
                    if b.expand != 1:
                        raise ArchError(f"{tok}: conv blocks take no expand ratio (got e{b.expand})")
                elif b.expand not in ss.expands:
                    raise ArchError(f"{tok}: expand e{b.expand} not allowed in stage s{i}; allowed: {list(ss.expands)}")
        return arch if arch.space == self.name else replace(arch, space=self.name)

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
        per_stage = []
        for st in self.stages:
            options = []
            choices = st.block_choices()
            for w in st.widths:
                for d in st.depths:
                    for blocks in itertools.product(choices, repeat=d):
                        options.append(StageArch(w, tuple(blocks)))
            per_stage.append(options)
        for r in self.resolutions:
            for stages in itertools.product(*per_stage):
                yield Arch(r, tuple(stages), self.name)

    # ---- sampling and variation ------------------------------------------------------------------
    def sample(self, rng: Any = None) -> Arch:
        """Draw an arch: each choice uniformly and independently (the OFA / BigNAS convention)."""
        r = as_random(rng)
        stages = []
        for st in self.stages:
            choices = st.block_choices() if len(st.kinds) == 1 else None
            d = r.choice(st.depths)
            blocks = []
            for _ in range(d):
                if choices is not None:
                    blocks.append(r.choice(choices))
                else:
                    kind = r.choice(st.kinds)
                    k = r.choice(st.kernels)
                    e = 1 if kind == "conv" else r.choice(st.expands)
                    blocks.append(BlockArch(kind, k, e))
            stages.append(StageArch(r.choice(st.widths), tuple(blocks)))
        return Arch(r.choice(self.resolutions), tuple(stages), self.name)

    def sample_many(self, n: int, rng: Any = None, *, unique: bool = False) -> list[Arch]:
        r = as_random(rng)
        if not unique:
            return [self.sample(r) for _ in range(n)]
        seen: dict[Arch, None] = {}
        tries = 0
        while len(seen) < n:
            seen.setdefault(self.sample(r), None)
            tries += 1
            if tries > 50 * n + 1000:
                raise SpaceError(f"could not draw {n} distinct archs from space {self.name!r} (size {self.size()})")
        return list(seen)

    def mutate(self, arch: Arch, rng: Any = None, *, prob: float = 0.1) -> Arch:
        """Resample each choice of `arch` with probability `prob`; the result stays in the space."""
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutation prob must be in [0, 1], got {prob}")
        arch = self.validate(arch)
        r = as_random(rng)
        res = r.choice(self.resolutions) if r.random() < prob else arch.resolution
        stages = []
        for sa, ss in zip(arch.stages, self.stages):
            width = r.choice(ss.widths) if r.random() < prob else sa.width
            depth = r.choice(ss.depths) if r.random() < prob else sa.depth
            blocks = []
            for j in range(depth):
                b = sa.blocks[j] if j < sa.depth else self._random_block(ss, r)
                kind = r.choice(ss.kinds) if r.random() < prob else b.kind
                k = r.choice(ss.kernels) if r.random() < prob else b.kernel
                if kind == "conv":
                    e = 1
                elif b.kind == "conv" or r.random() < prob:
                    e = r.choice(ss.expands)
                else:
                    e = b.expand
                blocks.append(BlockArch(kind, k, e))
            stages.append(StageArch(width, tuple(blocks)))
        return Arch(res, tuple(stages), self.name)

    def crossover(self, a: Arch, b: Arch, rng: Any = None) -> Arch:
        """Uniform crossover: each stage's width/depth and each block slot from either parent."""
        a, b = self.validate(a), self.validate(b)
        r = as_random(rng)
        res = r.choice((a.resolution, b.resolution))
        stages = []
        for sa, sb in zip(a.stages, b.stages):
            width = r.choice((sa.width, sb.width))
            depth = r.choice((sa.depth, sb.depth))
            blocks = []
            for j in range(depth):
                options = [s.blocks[j] for s in (sa, sb) if j < s.depth]
                blocks.append(r.choice(options))
            stages.append(StageArch(width, tuple(blocks)))
        return Arch(res, tuple(stages), self.name)

    @staticmethod
    def _random_block(ss: StageSpec, r: random.Random) -> BlockArch:
        kind = r.choice(ss.kinds)
        return BlockArch(kind, r.choice(ss.kernels), 1 if kind == "conv" else r.choice(ss.expands))

    # ---- extremes ------------------------------------------------------------------------------
    def _extreme(self, largest: bool) -> Arch:
        pick = max if largest else min
        stages = []
        prev_w = self.stem.channels
        for ss in self.stages:
            w = pick(ss.widths)
            k = pick(ss.kernels)
            e = pick(ss.expands)
            # The kind whose block costs the most (or least) multiply-adds at these choices.
            kind = pick(ss.kinds, key=lambda kd: _block_macs(kd, prev_w, w, k, 1 if kd == "conv" else e))
            blk = BlockArch(kind, k, 1 if kind == "conv" else e)
            stages.append(StageArch(w, (blk,) * pick(ss.depths)))
            prev_w = w
        return Arch(pick(self.resolutions), tuple(stages), self.name)

    def min_arch(self) -> Arch:
        return self._extreme(False)

    def max_arch(self) -> Arch:
        return self._extreme(True)

    # ---- flat choice map (for searchers) ----------------------------------------------------------
    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every elastic choice as `{name: choices}`; fixed (single-valued) choices are left out.

        Names: `r`, `s<i>.w`, `s<i>.d`, `s<i>.b<j>.kind`, `s<i>.b<j>.k`, `s<i>.b<j>.e` (1-based stage
        index, 0-based block slot). A slot's values are used only when the stage's depth reaches
        it; `e` is ignored for conv blocks.
        """
        out: dict[str, tuple[Any, ...]] = {}
        if len(self.resolutions) > 1:
            out["r"] = self.resolutions
        for i, ss in enumerate(self.stages, start=1):
            if len(ss.widths) > 1:
                out[f"s{i}.w"] = ss.widths
            if len(ss.depths) > 1:
                out[f"s{i}.d"] = ss.depths
            for j in range(ss.max_depth):
                if len(ss.kinds) > 1:
                    out[f"s{i}.b{j}.kind"] = ss.kinds
                if len(ss.kernels) > 1:
                    out[f"s{i}.b{j}.k"] = ss.kernels
                if len(ss.expands) > 1 and ss.kinds != ("conv",):
                    out[f"s{i}.b{j}.e"] = ss.expands
        return out

    def from_choices(self, values: Mapping[str, Any]) -> Arch:
        """Build an arch from a (possibly partial) flat choice map; missing names take the first choice."""
        known = self.choices()
        unknown = set(values) - set(known)
        if unknown:
            raise ArchError(f"unknown choice name(s) {sorted(unknown)} for space {self.name!r}; known: {sorted(known)}")

        def get(name: str, default: Any) -> Any:
            if name not in values:
                return default
            v = values[name]
            if v not in known[name]:
                raise ArchError(f"choice {name}={v!r} not allowed; allowed: {list(known[name])}")
            return v

        res = get("r", self.resolutions[0])
        stages = []
        for i, ss in enumerate(self.stages, start=1):
            w = get(f"s{i}.w", ss.widths[0])
            d = get(f"s{i}.d", ss.depths[0])
            blocks = []
            for j in range(d):
                kind = get(f"s{i}.b{j}.kind", ss.kinds[0])
                k = get(f"s{i}.b{j}.k", ss.kernels[0])
                e = 1 if kind == "conv" else get(f"s{i}.b{j}.e", ss.expands[0])
                blocks.append(BlockArch(kind, int(k), int(e)))
            stages.append(StageArch(int(w), tuple(blocks)))
        return self.validate(Arch(int(res), tuple(stages), self.name))

    def to_choices(self, arch: Arch) -> dict[str, Any]:
        """The full flat choice map of `arch`; unused slots get their first choice (for warm starts)."""
        arch = self.validate(arch)
        known = self.choices()
        out: dict[str, Any] = {}
        if "r" in known:
            out["r"] = arch.resolution
        for i, (sa, ss) in enumerate(zip(arch.stages, self.stages), start=1):
            if f"s{i}.w" in known:
                out[f"s{i}.w"] = sa.width
            if f"s{i}.d" in known:
                out[f"s{i}.d"] = sa.depth
            for j in range(ss.max_depth):
                b = sa.blocks[j] if j < sa.depth else None
                if f"s{i}.b{j}.kind" in known:
                    out[f"s{i}.b{j}.kind"] = b.kind if b else ss.kinds[0]
                if f"s{i}.b{j}.k" in known:
                    out[f"s{i}.b{j}.k"] = b.kernel if b else ss.kernels[0]
                if f"s{i}.b{j}.e" in known:
                    out[f"s{i}.b{j}.e"] = b.expand if (b and b.kind != "conv") else ss.expands[0]
        return out

    # ---- numeric encoding (for predictors) ----------------------------------------------------------
    def encoding_names(self) -> list[str]:
        """Names of the columns of `encode` (fixed length for the space)."""
        return list(self._encoding_layout()[1])

    def _encoding_layout(self) -> tuple[dict[str, int], list[str]]:
        cached = self.__dict__.get("_enc_cache")
        if cached is not None:
            return cached
        names: list[str] = []
        if len(self.resolutions) > 1:
            names += [f"r={r}" for r in self.resolutions]
        names.append("r_scaled")
        for i, ss in enumerate(self.stages, start=1):
            if len(ss.widths) > 1:
                names += [f"s{i}.w={w}" for w in ss.widths]
            if len(ss.depths) > 1:
                names += [f"s{i}.d={d}" for d in ss.depths]
            for j in range(ss.max_depth):
                if len(ss.kinds) > 1:
                    names += [f"s{i}.b{j}.kind={k}" for k in ss.kinds]
                if len(ss.kernels) > 1:
                    names += [f"s{i}.b{j}.k={k}" for k in ss.kernels]
                if len(ss.expands) > 1 and ss.kinds != ("conv",):
                    names += [f"s{i}.b{j}.e={e}" for e in ss.expands]
                if len(ss.depths) > 1:
                    names.append(f"s{i}.b{j}.active")
        index = {n: i for i, n in enumerate(names)}
        object.__setattr__(self, "_enc_cache", (index, names))
        return index, names

    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length float32 encoding: one-hot choices, zeros for inactive slots, scaled resolution."""
        index, names = self._encoding_layout()
        v = np.zeros(len(names), dtype=np.float32)
        self._encode_into(arch, v, index)
        return v

    def encode_many(self, archs: Sequence[Arch]) -> np.ndarray:
        index, names = self._encoding_layout()
        out = np.zeros((len(archs), len(names)), dtype=np.float32)
        for row, a in zip(out, archs):
            self._encode_into(a, row, index)
        return out

    def _encode_into(self, arch: Arch, v: np.ndarray, index: dict[str, int]) -> None:
        rmin, rmax = self.resolutions[0], self.resolutions[-1]
        v[index["r_scaled"]] = 1.0 if rmax == rmin else (arch.resolution - rmin) / (rmax - rmin)
        for name in (f"r={arch.resolution}",):
            if name in index:
                v[index[name]] = 1.0
        for i, sa in enumerate(arch.stages, start=1):
            for name in (f"s{i}.w={sa.width}", f"s{i}.d={sa.depth}"):
                j = index.get(name)
                if j is not None:
                    v[j] = 1.0
            for j, b in enumerate(sa.blocks):
                for name in (
                    f"s{i}.b{j}.kind={b.kind}",
                    f"s{i}.b{j}.k={b.kernel}",
                    f"s{i}.b{j}.e={b.expand}",
                    f"s{i}.b{j}.active",
                ):
                    k = index.get(name)
                    if k is not None:
                        v[k] = 1.0

    # ---- block configurations (for profiling) -------------------------------------------------------
    def block_configs(self, arch: Arch) -> list[BlockConfig]:
        """The blocks `arch` runs, in order: stem, every active block, head."""
        arch = self.validate(arch)
        sizes = self.feature_sizes(arch.resolution)
        out = [
            BlockConfig("stem", self.in_channels, self.stem.channels, self.stem.kernel, 1, self.stem.stride,
                        arch.resolution, False, self.stem.act)
        ]
        cin = self.stem.channels
        for i, (sa, ss) in enumerate(zip(arch.stages, self.stages)):
            h = sizes[i]
            for j, b in enumerate(sa.blocks):
                stride = ss.stride if j == 0 else 1
                out.append(BlockConfig(b.kind, cin, sa.width, b.kernel, b.expand, stride, h, ss.se, ss.act))
                h = math.ceil(h / stride)
                cin = sa.width
        out.append(BlockConfig("head", cin, self.num_classes, 1, 1, 1, sizes[-1], False, self.head.act))
        return out

    def distinct_block_configs(self) -> list[BlockConfig]:
        """Every distinct block configuration any arch of this space can contain (sorted by key)."""
        seen: dict[str, BlockConfig] = {}

        def add(c: BlockConfig) -> None:
            seen.setdefault(c.key, c)

        for r in self.resolutions:
            sizes = self.feature_sizes(r)
            add(BlockConfig("stem", self.in_channels, self.stem.channels, self.stem.kernel, 1, self.stem.stride, r,
                            False, self.stem.act))
            for i, ss in enumerate(self.stages):
                h = sizes[i]
                for b in ss.block_choices():
                    for w in ss.widths:
                        for cin in self.stage_in_widths(i):
                            add(BlockConfig(b.kind, cin, w, b.kernel, b.expand, ss.stride, h, ss.se, ss.act))
                        if ss.max_depth > 1:
                            add(BlockConfig(b.kind, w, w, b.kernel, b.expand, 1, math.ceil(h / ss.stride), ss.se, ss.act))
            for cin in self.stages[-1].widths:
                add(BlockConfig("head", cin, self.num_classes, 1, 1, 1, sizes[-1], False, self.head.act))
        return [seen[k] for k in sorted(seen)]

    def __repr__(self) -> str:
        return f"Space({self.name!r}, stages={len(self.stages)}, resolutions={len(self.resolutions)}, size={self.size():.3e})"


def _block_macs(kind: str, cin: int, cout: int, k: int, e: int) -> int:
    """Rough multiply-adds per output pixel of a block; only used to order kinds for min/max."""
    if kind == "conv":
        return cin * cout * k * k
    mid = mid_channels(cin, e)
    if kind == "fmb":
        return cin * mid * k * k + mid * cout
    return cin * mid + mid * k * k + mid * cout
