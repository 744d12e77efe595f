"""The searchers' view of a space: every elastic choice as a flat `{name: choices}` map.

Names: `r`, `s<i>.w`, `s<i>.d`, `s<i>.b<j>.kind`, `s<i>.b<j>.k`, `s<i>.b<j>.e` (1-based stage index,
0-based block slot). A slot's values are used only when the stage's depth reaches it; `e` is ignored
for kinds that take no expand ratio (`conv`). Optuna and Ray spaces are built from this map.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from hwnas.errors import ArchError
from hwnas.search_space import _tables
from hwnas.search_space._arch import Arch, BlockArch, StageArch
from hwnas.search_space._blocks import block_kind
from hwnas.search_space._tables import per_space, plain

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


class _Slot(NamedTuple):
    """One block slot's choice names (None: fixed, not in the map) and first choices."""

    kind: str | None
    k: str | None
    e: str | None
    kind0: str
    k0: int
    e0: int


class _Stage(NamedTuple):
    w: str | None
    d: str | None
    w0: int
    d0: int
    slots: tuple[_Slot, ...]


class _Plan(NamedTuple):
    """A space's choice names laid out by stage and slot, with what `from_choices` needs to build an arch
    of plain values without checking it again: the values each name allows (ints, kind strs), whether
    each kind takes an expand ratio, and the space's `BlockArch` per (kind, kernel, expand) (plain spaces)."""

    allowed: dict[str, frozenset[Any]]
    r: str | None
    r0: int
    stages: tuple[_Stage, ...]
    takes_expand: dict[str, bool]
    blocks: dict[tuple[str, int, int], BlockArch]


def _name(known: Mapping[str, Any], name: str) -> str | None:
    return name if name in known else None


@per_space
def _plan(space: Space) -> _Plan:
    known = dict(_choices(space))
    stages = tuple(
        _Stage(_name(known, f"s{i}.w"), _name(known, f"s{i}.d"), ss.widths[0], ss.depths[0], tuple(
            _Slot(_name(known, f"s{i}.b{j}.kind"), _name(known, f"s{i}.b{j}.k"), _name(known, f"s{i}.b{j}.e"),
                  ss.kinds[0], ss.kernels[0], ss.expands[0])
            for j in range(ss.max_depth)))
        for i, ss in enumerate(space.stages, start=1))
    takes = {k: block_kind(k).takes_expand for ss in space.stages for k in ss.kinds}
    return _Plan({n: frozenset(v) for n, v in known.items()}, _name(known, "r"),
                 space.resolutions[0], stages, takes, _tables.blocks(space) or {})


def _plain_from_choices(space: Space, values: Mapping[str, Any]) -> Arch | None:
    """`from_choices` for a plain space (search_space/_tables.py) and a dict of known names whose every
    value is an int (a kind a str) among its choices, as samplers give: the arch `from_choices` builds,
    with nothing left to check (every value is one of the space's own). None for anything else (a name
    not known, a value not allowed or of another type, even one `from_choices` would not read): then
    `from_choices` checks, builds or refuses as always."""
    if type(values) is not dict or not plain(space):
        return None
    p = _plan(space)
    allowed = p.allowed
    try:
        for name, v in values.items():
            if (type(v) is not int and type(v) is not str) or v not in allowed[name]:
                return None
    except KeyError:  # a name that is no choice
        return None
    # Every name is a str, so `get(None, first)` (a fixed choice) gives the first choice.
    get = values.get
    stages = []
    for st in p.stages:
        blocks = []
        for slot in st.slots[:get(st.d, st.d0)]:
            kind = get(slot.kind, slot.kind0)
            k = get(slot.k, slot.k0)
            e = get(slot.e, slot.e0) if p.takes_expand[kind] else 1
            blocks.append(p.blocks[kind, k, e])
        stages.append(StageArch(get(st.w, st.w0), tuple(blocks)))
    return Arch(get(p.r, p.r0), tuple(stages), space.name)


def from_choices(space: Space, values: Mapping[str, Any]) -> Arch:
    """Build an arch from a (possibly partial) flat choice map; missing names take the first choice."""
    arch = _plain_from_choices(space, values)
    return arch if arch is not None else _checked_from_choices(space, values)


def _checked_from_choices(space: Space, values: Mapping[str, Any]) -> Arch:
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
    p = _plan(space)
    out: dict[str, Any] = {}
    if p.r is not None:
        out[p.r] = arch.resolution
    for sa, st in zip(arch.stages, p.stages):
        if st.w is not None:
            out[st.w] = sa.width
        if st.d is not None:
            out[st.d] = sa.depth
        depth = sa.depth
        for j, slot in enumerate(st.slots):
            b = sa.blocks[j] if j < depth else None
            if slot.kind is not None:
                out[slot.kind] = b.kind if b else slot.kind0
            if slot.k is not None:
                out[slot.k] = b.kernel if b else slot.k0
            if slot.e is not None:
                out[slot.e] = b.expand if (b and p.takes_expand[b.kind]) else slot.e0
    return out
