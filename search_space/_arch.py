"""`Arch`: one frozen, hashable choice inside a `Space`, with a canonical string form.

Canonical string (the key everywhere)::

    r28|s1w16:mb_k3_e1|s2w24:mb_k5_e4x2|s3w40:fmb_k3_e3,conv_k5

- `r<int>`: input resolution.
- `s<i>w<width>:` then the active blocks of stage i (1-based), comma separated.
- a block is `<kind>_k<kernel>_e<expand>` (`conv` blocks have no expand: `conv_k3`);
  a run of n identical consecutive blocks is written once with `x<n>`.

Parsing a string alone checks its grammar; `Space.parse` also checks every choice against the
space. Either raises `ArchError` (a ValueError) naming the offending token.

The string is computed once, eagerly, when an arch is constructed of plain values (`plain`: ints,
str kinds, tuples; everything the space and its parser build), and kept as an attribute that is no
field (not compared, hashed or shown); a block keeps its token the same way. Frozen values make
that safe; an arch of other values renders its string on every call, as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hwnas.errors import ArchError
from hwnas.search_space._blocks import BLOCK_KINDS, block_kind

__all__ = ["BlockArch", "StageArch", "Arch", "BLOCK_KINDS", "plain"]

# [0-9], not \d: \d matches any Unicode digit, so a full-width "ｒ２８" would parse as 28.
_BLOCK_RE = re.compile(r"^(?P<kind>[a-z]+)_k(?P<k>[0-9]+)(?:_e(?P<e>[0-9]+))?(?:x(?P<n>[0-9]+))?$")
_STAGE_RE = re.compile(r"^s(?P<i>[0-9]+)w(?P<w>[0-9]+)$")
_RES_RE = re.compile(r"^r(?P<r>[0-9]+)$")


@dataclass(frozen=True, order=True)
class BlockArch:
    """The choices for one active block: kind, kernel size, expand ratio (1 for `conv`)."""

    kind: str
    kernel: int
    expand: int = 1

    _token = None  # not a field: the token, set at construction when kind is a str and kernel, expand ints

    def __post_init__(self) -> None:
        if type(self.kind) is str and type(self.kernel) is int and type(self.expand) is int:  # immutable values
            object.__setattr__(self, "_token", self._make_token())

    def token(self) -> str:
        t = self._token
        return t if t is not None else self._make_token()

    def _make_token(self) -> str:
        if self.kind not in BLOCK_KINDS:  # written as given, so the error that rejects it can quote it
            return f"{self.kind}_k{self.kernel}_e{self.expand}"
        return block_kind(self.kind).token(self.kernel, self.expand)


@dataclass(frozen=True)
class StageArch:
    """The choices for one stage: output width and its active blocks (depth = len(blocks))."""

    width: int
    blocks: tuple[BlockArch, ...]

    _body = None  # not a field: the blocks as an arch string writes them, kept when the stage is plain

    def __post_init__(self) -> None:
        if type(self.width) is int and type(self.blocks) is tuple:
            try:
                body, keep = _blocks_text(self.blocks)
            except Exception:  # noqa: BLE001 - not sound values: `Arch.to_string` (or validation) raises, later
                return
            if keep:
                object.__setattr__(self, "_body", body)

    @property
    def depth(self) -> int:
        return len(self.blocks)


@dataclass(frozen=True)
class Arch:
    """One architecture of a space: resolution and per-stage choices. Hashable; a dict key."""

    resolution: int
    stages: tuple[StageArch, ...]
    space: str = field(default="", compare=True)

    # Not a field: the string, computed once at construction when the arch is plain (see `plain`). Searchers
    # key everything by it and ask for it several times per arch.
    _string = None

    def __post_init__(self) -> None:
        try:
            s, keep = _render(self.resolution, self.stages)
        except Exception:  # noqa: BLE001 - not an arch of sound values: `to_string` (or validation) raises, later
            return
        if keep:
            object.__setattr__(self, "_string", s)

    # ---- string form ---------------------------------------------------------------------------
    def to_string(self) -> str:
        s = self._string
        return s if s is not None else _render(self.resolution, self.stages)[0]

    __str__ = to_string

    @classmethod
    def from_string(cls, s: str, *, space: str = "") -> Arch:
        """Parse the grammar of an arch string (choices are checked by `Space.parse`)."""
        if not isinstance(s, str):
            raise ArchError(f"arch must be a string, got {type(s).__name__}")
        s = s.strip()
        if not s:
            raise ArchError("empty arch string; expected e.g. 'r28|s1w16:mb_k3_e1|...'")
        parts = s.split("|")
        m = _RES_RE.match(parts[0])
        if not m:
            raise ArchError(f"bad resolution token {parts[0]!r} in arch {s!r}: expected 'r<int>' first")
        resolution = int(m["r"])
        if len(parts) < 2:
            raise ArchError(f"arch {s!r} has no stages (truncated?): expected 'r<int>|s1w<width>:<blocks>|...'")
        stages = []
        for expect_i, part in enumerate(parts[1:], start=1):
            head, sep, body = part.partition(":")
            if not sep:
                raise ArchError(f"bad stage token {part!r} in arch {s!r}: expected 's<i>w<width>:<blocks>'")
            hm = _STAGE_RE.match(head)
            if not hm:
                raise ArchError(f"bad stage header {head!r} in arch {s!r}: expected 's<i>w<width>'")
            if int(hm["i"]) != expect_i:
                raise ArchError(f"stage header {head!r} out of order in arch {s!r}: expected s{expect_i}")
            if not body:
                raise ArchError(f"stage {head!r} has no blocks in arch {s!r} (truncated?)")
            blocks: list[BlockArch] = []
            for tok in body.split(","):
                bm = _BLOCK_RE.match(tok)
                if not bm:
                    raise ArchError(
                        f"bad block token {tok!r} in stage {head!r}: expected '<kind>_k<k>_e<e>' "
                        f"or 'conv_k<k>', kinds {list(BLOCK_KINDS)}"
                    )
                kind = bm["kind"]
                if kind not in BLOCK_KINDS:
                    raise ArchError(f"unknown block kind {kind!r} in token {tok!r}; allowed: {list(BLOCK_KINDS)}")
                if not block_kind(kind).takes_expand:
                    if bm["e"] is not None:
                        raise ArchError(f"block token {tok!r}: {kind} blocks take no expand ratio (write '{kind}_k{bm['k']}')")
                    expand = 1
                else:
                    if bm["e"] is None:
                        raise ArchError(f"block token {tok!r} lacks its expand ratio '_e<int>'")
                    expand = int(bm["e"])
                n = int(bm["n"]) if bm["n"] is not None else 1
                if n < 1:
                    raise ArchError(f"block token {tok!r}: repeat count must be >= 1")
                blocks.extend([BlockArch(kind, int(bm["k"]), expand)] * n)
            stages.append(StageArch(int(hm["w"]), tuple(blocks)))
        return cls(resolution, tuple(stages), space)

    # ---- JSON form -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "resolution": self.resolution,
            "stages": [
                {"width": st.width, "blocks": [[b.kind, b.kernel, b.expand] for b in st.blocks]}
                for st in self.stages
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        try:
            stages = tuple(
                StageArch(int(st["width"]), tuple(BlockArch(str(b[0]), int(b[1]), int(b[2])) for b in st["blocks"]))
                for st in d["stages"]
            )
            return cls(int(d["resolution"]), stages, str(d.get("space", "")))
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise ArchError(f"malformed arch dict ({type(e).__name__}: {e}); expected keys space, resolution, stages") from None

    @classmethod
    def from_json(cls, s: str) -> Arch:
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ArchError(f"arch JSON does not parse: {e}") from None
        if not isinstance(d, dict):
            raise ArchError("arch JSON must be an object")
        return cls.from_dict(d)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(st.depth for st in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)


def plain(arch: Arch) -> bool:
    """Whether every value of `arch` has its exact type (int; kinds str) in tuples of exact `StageArch`
    and `BlockArch`: then nothing in it can change, and it equals another plain arch only when every
    value is the same (no `3.0 == 3`), so tables may be looked up by its values."""
    return arch._string is not None


_END = object()


def _render(resolution: Any, stages: Any) -> tuple[str, bool]:
    """The canonical string of an arch, and whether it may be kept (every value of its exact type)."""
    keep = type(resolution) is int and type(stages) is tuple
    parts = [f"r{resolution}"]
    for i, st in enumerate(stages, start=1):
        body = st._body if type(st) is StageArch else None
        if body is None:
            body, exact = _blocks_text(st.blocks)
            keep = keep and exact and type(st) is StageArch and type(st.width) is int and type(st.blocks) is tuple
        parts.append(f"s{i}w{st.width}:{body}")
    return "|".join(parts), keep


def _blocks_text(blocks: Any) -> tuple[str, bool]:
    """A stage's blocks as an arch string writes them (runs of equal blocks once, with `x<n>`), and
    whether every block is exact (a BlockArch of a str and ints, with its token kept)."""
    toks: list[str] = []
    keep = True
    run, n, exact = None, 0, False  # the run of equal blocks, its length, whether it is an exact block
    for x in (*blocks, _END):
        if n and x is not _END:
            # Exact blocks are equal when the same object and differ when their tokens do; else (or when
            # unsure) `==` says, as always.
            if exact and type(x) is BlockArch and x._token is not None:
                if x is run or (x._token == run._token and x == run):
                    n += 1
                    continue
            elif x == run:
                n += 1
                continue
        if n:
            if exact:
                tok = run._token
            else:
                tok, keep = run.token(), False
            toks.append(tok if n == 1 else f"{tok}x{n}")
        run, n = x, 1
        exact = type(x) is BlockArch and x._token is not None
    return ",".join(toks), keep
