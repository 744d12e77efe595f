"""Per-space tables for the hot paths: `per_space` caches a table derived from a space.

A `Space` is frozen and keeps nothing on itself (tests/test_registry.py checks it): a table derived
from one is cached by `functools.lru_cache` keyed by the space. Hashing a space hashes every stage
spec (a few microseconds), which the searchers' hot paths (`from_choices`, `validate`,
`block_configs`, thousands of calls a second) would pay on every call, so `per_space` also keeps
the latest space's table by identity: a frozen space's tables never change.

`plain(space)` says whether every value of a space has its exact type (ints, strs, bools, floats,
in tuples; every kind registered): true of every space `Space.from_dict` builds. Only plain spaces
share tables by equality, and tables that look values up by equality (`3.0 == 3`) are used only
for plain spaces, so a lookup never swaps a value for an equal one of another type.
`blocks(space)` holds one `BlockArch` per block a plain space allows: the space's own sampling,
choice map and variation build archs of these, so equal blocks are mostly the same object and
validation finds them by identity. `admits(space, arch)` is `Space.validate`'s checks as set
lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from hwnas.search_space._arch import Arch, BlockArch
from hwnas.search_space._blocks import _KINDS, BLOCK_KINDS, block_kind

if TYPE_CHECKING:
    from hwnas.search_space._space import Space

__all__ = ["admits", "blocks", "per_space", "plain"]

_T = TypeVar("_T")


def per_space(fn: Callable[[Space], _T]) -> Callable[[Space], _T]:
    """`fn(space)`, cached: by identity for the latest space, and for a plain space (see `plain`) by
    equality too (lru, 64 spaces). Equal spaces of other values (`28.0 == 28`, or a list where a tuple
    belongs, which cannot be hashed) share no table: theirs is made per call (per object)."""
    cached = lru_cache(maxsize=64)(fn)
    latest: list[tuple[Any, Any]] = [(None, None)]  # one (space, table) pair, replaced whole (threads)

    def get(space: Space) -> _T:
        last, table = latest[0]
        if last is space:
            return table
        table = cached(space) if _plain(space) else fn(space)
        latest[0] = (space, table)
        return table

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    get.__wrapped__ = fn  # type: ignore[attr-defined]
    get.__doc__ = fn.__doc__
    return get


def _of(typ: type, *vs: Any) -> bool:
    return all(type(v) is typ for v in vs)


def _plain(space: Space) -> bool:
    st, h = space.stem, space.head
    if not (_of(str, space.name, st.act, h.act) and _of(int, space.in_channels, space.num_classes, st.channels,
                                                         st.kernel, st.stride)
            and _of(tuple, space.resolutions, space.stages, space.mean, space.std) and _of(int, *space.resolutions)
            and _of(float, h.dropout, *space.mean, *space.std)
            and all(v is None or type(v) is int for v in (h.expand_channels, h.feature_channels))):
        return False
    for ss in space.stages:
        if not (_of(tuple, ss.kinds, ss.depths, ss.kernels, ss.expands, ss.widths)
                and _of(int, *ss.depths, *ss.kernels, *ss.expands, *ss.widths, ss.stride)
                and type(ss.se) is bool and type(ss.act) is str):
            return False
        if not all(type(k) is str and k in _KINDS for k in ss.kinds):
            return False
    return True


@per_space
def plain(space: Space) -> bool:
    """Whether every value of `space` has its exact type (ints, strs, bools, floats, in tuples) and every
    kind is registered: true of every space `Space.from_dict` builds. Two plain spaces are equal only
    when every value is the same, so their tables are the same."""
    return _plain(space)


@per_space
def blocks(space: Space) -> dict[tuple[str, int, int], BlockArch] | None:
    """One `BlockArch` per (kind, kernel, expand) a stage of a plain `space` allows (None for another space)."""
    if not plain(space):
        return None
    out: dict[tuple[str, int, int], BlockArch] = {}
    for ss in space.stages:
        for b in ss.block_choices():
            out.setdefault((b.kind, b.kernel, b.expand), b)
    return out


@per_space
def _allowed(space: Space) -> tuple[frozenset[Any], tuple[tuple[frozenset[Any], frozenset[Any], frozenset[BlockArch], frozenset[int]], ...]] | None:
    """What `Space.validate` allows, as sets: resolutions, and per stage widths, depths, blocks (kind,
    kernel, expand) and the ids of those blocks (the space's own `blocks` where it has them; alive while
    this table is, so an object of one of those ids is that block). None when a choice is unhashable
    (then every arch takes the long checks)."""
    canonical = blocks(space) or {}
    try:
        stages = []
        for ss in space.stages:
            allowed = frozenset(canonical.get((kind, k, e)) or BlockArch(kind, k, e)
                                for kind in ss.kinds if kind in BLOCK_KINDS
                                for k in ss.kernels for e in (ss.expands if block_kind(kind).takes_expand else (1,)))
            stages.append((frozenset(ss.widths), frozenset(ss.depths), allowed, frozenset(map(id, allowed))))
        return frozenset(space.resolutions), tuple(stages)
    except TypeError:
        return None


def admits(space: Space, arch: Arch) -> bool:
    """Whether `Space.validate`'s checks pass for `arch`, by set lookups; False when unsure (an unhashable
    or odd value): the caller then runs the checks themselves, which raise or pass as they always did.

    A set holds a value equal to the one looked up only if the tuple `validate` checks does (sets add
    the hash test: `True` and `1`, `3.0` and `3` pass both ways), and an expand of a kind that takes none
    is 1 in the set as in the check.
    """
    table = _allowed(space)
    if table is None:
        return False
    resolutions, stages = table
    try:
        if arch.resolution not in resolutions or len(arch.stages) != len(stages):
            return False
        for sa, (widths, depths, allowed, ids) in zip(arch.stages, stages):
            if sa.width not in widths or sa.depth not in depths:
                return False
            for b in sa.blocks:
                if id(b) not in ids and b not in allowed:
                    return False
    except Exception:  # noqa: BLE001 - anything odd: the checks themselves say what is wrong
        return False
    return True
