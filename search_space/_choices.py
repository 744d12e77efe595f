"""The searchers' view of a space: every elastic choice as a flat `{name: choices}` map.

Names: `r`, `s<i>.w`, `s<i>.d`, `s<i>.b<j>.kind`, `s<i>.b<j>.k`, `s<i>.b<j>.e` (1-based stage index,
0-based block slot). A slot's values are used only when the stage's depth reaches it; `e` is ignored
for kinds that take no expand ratio (`conv`). Optuna and Ray spaces are built from this map.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hwnas.errors import ArchError
from hwnas.search_space._arch import Arch, BlockArch, StageArch
from hwnas.search_space._blocks import block_kind

if TYPE_CHECKING:
    from hwnas.search_space._space import Space, StageSpec

__all__ = ["choices", "from_choices", "stage_takes_expand", "to_choices"]


def stage_takes_expand(ss: StageSpec) -> bool:
    """Whether any kind allowed in the stage takes an expand ratio (else `e` is no choice there)."""
    return any(block_kind(k).takes_expand for k in ss.kinds)


@lru_cache(maxsize=64)
def _choices(space: Space) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    out: dict[str, tuple[Any, ...]] = {}
    if len(space.resolutions) > 1:
        out["r"] = space.resolutions
    for i, ss in enumerate(space.stages, start=1):
        if len(ss.widths) > 1:
            out[f"s{i}.w"] = ss.widths
        if len(ss.depths) > 1:
            out[f"s{i}.d"] = ss.depths
        for j in range(ss.max_depth):
            if len(ss.kinds) > 1:
                out[f"s{i}.b{j}.kind"] = ss.kinds
            if len(ss.kernels) > 1:
                out[f"s{i}.b{j}.k"] = ss.kernels
            if len(ss.expands) > 1 and stage_takes_expand(ss):
                out[f"s{i}.b{j}.e"] = ss.expands
    return tuple(out.items())


def choices(space: Space) -> dict[str, tuple[Any, ...]]:
    """Every elastic choice of `space` as `{name: choices}`; fixed (single-valued) choices are left out."""
    return dict(_choices(space))


def from_choices(space: Space, values: Mapping[str, Any]) -> Arch:
    """Build an arch from a (possibly partial) flat choice map; missing names take the first choice."""
    known = choices(space)
    unknown = set(values) - set(known)
    if unknown:
        raise ArchError(f"unknown choice name(s) {sorted(unknown)} for space {space.name!r}; known: {sorted(known)}")

    def get(name: str, default: Any) -> Any:
        if name not in values:
            return default
        v = values[name]
        if v not in known[name]:
            raise ArchError(f"choice {name}={v!r} not allowed; allowed: {list(known[name])}")
        return v

    res = get("r", space.resolutions[0])
    stages = []
    for i, ss in enumerate(space.stages, start=1):
        w = get(f"s{i}.w", ss.widths[0])
        d = get(f"s{i}.d", ss.depths[0])
        blocks = []
        for j in range(d):
            kind = get(f"s{i}.b{j}.kind", ss.kinds[0])
            k = get(f"s{i}.b{j}.k", ss.kernels[0])
            e = get(f"s{i}.b{j}.e", ss.expands[0]) if block_kind(kind).takes_expand else 1
            blocks.append(BlockArch(kind, int(k), int(e)))
        stages.append(StageArch(int(w), tuple(blocks)))
    return space.validate(Arch(int(res), tuple(stages), space.name))


def to_choices(space: Space, arch: Arch) -> dict[str, Any]:
    """The full flat choice map of `arch`; unused slots get their first choice (for warm starts)."""
    arch = space.validate(arch)
    known = choices(space)
    out: dict[str, Any] = {}
    if "r" in known:
        out["r"] = arch.resolution
    for i, (sa, ss) in enumerate(zip(arch.stages, space.stages), start=1):
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
                out[f"s{i}.b{j}.e"] = b.expand if (b and block_kind(b.kind).takes_expand) else ss.expands[0]
    return out
