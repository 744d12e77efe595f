"""The block-kind registry: one record per kind of block a stage may hold (`mb`, `fmb`, `conv`).

A record says what a kind *is*, in the terms every component asks about: whether an expand ratio
is one of its choices, whether its blocks have a separate 1x1 expand conv in a given stage, and the
layers one block runs (conv + BN + activation steps, SE, pooling, linear). Every cost model derives
its numbers from those layers: MACs and parameters here (`block_macs`, `block_params`), activation
memory in `hwnas.estimators.memory` (a liveness simulation over the same layers). The fixed parts of
a network, `stem` and `head`, have records too (not searchable), so a `BlockConfig` of any part is
answered by `block_kind(config.kind)` and nobody writes `if kind == ...`.

How the imports stay one-way: `search_space` imports nothing of the other components, so the
records here hold only the arithmetic. The modules that *run* a kind live downstream and register
themselves under the kind's name where they are defined:

- `supernet.static`  registers each kind's static module (`@register_block_module("mb", "static")`),
- `supernet.blocks`  registers each kind's dynamic (weight-sharing) module (role `"dynamic"`),
- `kernels._fuse`    registers each kind's fused-kernel module (role `"fused"`).

`block_module(kind, role)` looks one up and names the package to import when it is missing;
`tests/test_registry.py` checks that every kind has every role once `hwnas.supernet` and
`hwnas.kernels` are imported. Adding a fourth kind therefore touches this file (one `BlockKind`
record, see docs/blocks.md) plus its modules, each decorated where it is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from hwnas.errors import SpaceError

if TYPE_CHECKING:
    from hwnas.search_space._configs import BlockConfig
    from hwnas.search_space._space import Space

__all__ = [
    "BLOCK_KINDS",
    "CHANNEL_DIVISOR",
    "MODULE_ROLES",
    "BlockKind",
    "Layer",
    "block_kind",
    "block_kinds",
    "block_layers",
    "block_macs",
    "block_module",
    "block_params",
    "make_divisible",
    "mid_channels",
    "register_block_module",
    "se_channels",
]

CHANNEL_DIVISOR = 8


# ---- channel arithmetic shared by every kind ----------------------------------------------------------
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


# ---- layers: what one block runs, as the cost models see it -----------------------------------------------
class Layer(NamedTuple):
    """One step of a block: `conv` (+BN when `bn`, + activation), `se` over `cout` channels, `pool`
    (global mean to 1x1) or `linear`. `in_size` is the input's spatial size."""

    op: str
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    in_size: int = 1
    groups: int = 1
    bn: bool = True
    bias: bool = False

    @property
    def out_size(self) -> int:
        return 1 if self.op in ("pool", "linear") else math.ceil(self.in_size / self.stride)

    def macs(self) -> int:
        """Multiply-accumulates of this layer at batch 1 (BN, activations and pooling excluded, as fvcore's convs/linears)."""
        if self.op == "conv":
            return self.cout * (self.cin // self.groups) * self.kernel**2 * self.out_size**2
        if self.op == "se":
            return 2 * self.cout * se_channels(self.cout)
        if self.op == "linear":
            return self.cin * self.cout
        return 0

    def params(self) -> int:
        """Parameters of this layer as `supernet.static` builds it (BN: weight and bias)."""
        if self.op == "conv":
            w = self.cout * (self.cin // self.groups) * self.kernel**2
            return w + (2 * self.cout if self.bn else 0) + (self.cout if self.bias else 0)
        if self.op == "se":
            c, m = self.cout, se_channels(self.cout)
            return (c * m + m) + (m * c + c)
        if self.op == "linear":
            return self.cin * self.cout + self.cout
        return 0


# ---- the record -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockKind:
    """What one kind of block is: its name, choices, expand conv and layers.

    - `takes_expand`: whether an expand ratio is one of its choices (False: always 1, and the arch
      token has no `_e<n>`, as `conv_k3`).
    - `has_expand(expands)`: whether its blocks have a separate 1x1 expand conv in a stage whose
      expand choices are `expands` (MBConv drops it when every ratio is 1, as OFA's first block).
    - `layers(space, config)`: the layers one block runs, in order.
    - `searchable`: False for the fixed parts `stem` and `head`.
    - `training_keeps_sum`: whether the training-memory model counts a residual block's sum among
      the tensors autograd keeps (as calibrated against measurements: MBConv and Fused-MBConv yes,
      the conv block, whose sum follows an in-place activation, no).
    """

    name: str
    summary: str
    takes_expand: bool
    has_expand: Callable[[Sequence[int]], bool]
    layers: Callable[[Space, BlockConfig], tuple[Layer, ...]]
    searchable: bool = True
    training_keeps_sum: bool = True

    def expand_of(self, expand: int) -> int:
        """The expand ratio a block of this kind records (1 when the kind takes none)."""
        return expand if self.takes_expand else 1

    def token(self, kernel: int, expand: int) -> str:
        """The block's token in an arch string (`mb_k3_e4`, `conv_k5`)."""
        return f"{self.name}_k{kernel}_e{expand}" if self.takes_expand else f"{self.name}_k{kernel}"


_KINDS: dict[str, BlockKind] = {}


def _register(kind: BlockKind) -> BlockKind:
    if kind.name in _KINDS:
        raise ValueError(f"block kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def block_kind(name: str) -> BlockKind:
    """The record of a block kind (or of the fixed parts `stem` / `head`)."""
    k = _KINDS.get(name)
    if k is None:
        raise SpaceError(f"unknown block kind {name!r}; allowed: {list(block_kinds())}")
    return k


def block_kinds(*, searchable: bool = True) -> tuple[str, ...]:
    """Names of the kinds a stage may hold (with `searchable=False`, `stem` and `head` too)."""
    return tuple(n for n, k in _KINDS.items() if k.searchable or not searchable)


# ---- layers of each kind (the costs follow from them) ----------------------------------------------------
def _residual_body(c: BlockConfig, mid: int, main: Layer) -> tuple[Layer, ...]:
    """main conv -> [SE over mid] -> 1x1 linear projection (the tail MBConv and Fused-MBConv share)."""
    ho = main.out_size
    se = (Layer("se", mid, mid, in_size=ho),) if c.se else ()
    return (main, *se, Layer("conv", mid, c.cout, 1, 1, ho))


def _mb_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    mid = mid_channels(c.cin, c.expand) if c.has_expand else c.cin
    pre = (Layer("conv", c.cin, mid, 1, 1, c.in_size),) if c.has_expand else ()
    return pre + _residual_body(c, mid, Layer("conv", mid, mid, c.kernel, c.stride, c.in_size, groups=mid))


def _fmb_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    mid = mid_channels(c.cin, c.expand)
    return _residual_body(c, mid, Layer("conv", c.cin, mid, c.kernel, c.stride, c.in_size))


def _conv_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    main = Layer("conv", c.cin, c.cout, c.kernel, c.stride, c.in_size)
    return (main, Layer("se", c.cout, c.cout, in_size=main.out_size)) if c.se else (main,)


def _stem_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    return (Layer("conv", c.cin, c.cout, c.kernel, c.stride, c.in_size),)


def _head_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    h, ch, out = space.head, c.cin, []
    if h.expand_channels:
        out.append(Layer("conv", ch, h.expand_channels, 1, 1, c.in_size))
        ch = h.expand_channels
    out.append(Layer("pool", ch, ch, in_size=c.in_size))
    if h.feature_channels:
        out.append(Layer("conv", ch, h.feature_channels, bn=False))
        ch = h.feature_channels
    out.append(Layer("linear", ch, space.num_classes, bias=True))
    return tuple(out)


def _never(expands: Sequence[int]) -> bool:
    return False


# The searchable kinds, in the order spaces and arch strings list them.
_register(BlockKind("mb", "inverted residual (MBConv): 1x1 expand, kxk depthwise, SE, 1x1 project", True,
                    lambda expands: max(expands) > 1, _mb_layers))
_register(BlockKind("fmb", "fused inverted residual (Fused-MBConv): kxk expand conv, SE, 1x1 project", True,
                    _never, _fmb_layers))
_register(BlockKind("conv", "regular block: kxk conv, BN, activation, SE", False, _never, _conv_layers,
                    training_keeps_sum=False))
# The fixed parts: not a stage's choice, but described the same way.
_register(BlockKind("stem", "first kxk conv, BN, activation", False, _never, _stem_layers, searchable=False))
_register(BlockKind("head", "[1x1 expand], pool, [1x1 feature], classifier", False, _never, _head_layers,
                    searchable=False))

BLOCK_KINDS = block_kinds()


def block_layers(space: Space, c: BlockConfig) -> tuple[Layer, ...]:
    """The layers the block of configuration `c` runs (any part: stem, stage block, head)."""
    return block_kind(c.kind).layers(space, c)


def block_macs(space: Space, c: BlockConfig) -> int:
    """Conv + linear MACs of one block configuration, batch 1 (BN, activations, pooling excluded)."""
    return sum(layer.macs() for layer in block_layers(space, c))


def block_params(space: Space, c: BlockConfig) -> int:
    """Parameter count of one block configuration's static module."""
    return sum(layer.params() for layer in block_layers(space, c))


# ---- the modules that run a kind, registered by the packages that define them ------------------------------
MODULE_ROLES = {
    "static": "hwnas.supernet",  # plain module: `cls.from_config(space, config)`
    "dynamic": "hwnas.supernet",  # weight-sharing module of a supernet slot (stage blocks only)
    "fused": "hwnas.kernels",  # fused-kernel module: `fn(static_module, tf32=...)`
}
_MODULES: dict[tuple[str, str], Any] = {}
_T = TypeVar("_T")


def register_block_module(kind: str, role: str) -> Callable[[_T], _T]:
    """Class decorator (or function wrapper) that registers the `role` module of block kind `kind`.

    Classes get a `block_kind` attribute, so code holding a module can find its record.
    """
    block_kind(kind)
    if role not in MODULE_ROLES:
        raise ValueError(f"unknown module role {role!r}; allowed: {list(MODULE_ROLES)}")

    def deco(obj: _T) -> _T:
        if (kind, role) in _MODULES and _MODULES[(kind, role)] is not obj:
            raise ValueError(f"block kind {kind!r} already has a {role} module: {_MODULES[(kind, role)]!r}")
        _MODULES[(kind, role)] = obj
        if isinstance(obj, type) and role == "static":
            obj.block_kind = kind  # type: ignore[attr-defined]
        return obj

    return deco


def block_module(kind: str, role: str) -> Any:
    """The `role` module (`static`, `dynamic`, `fused`) registered for block kind `kind`."""
    block_kind(kind)
    m = _MODULES.get((kind, role))
    if m is None:
        if role not in MODULE_ROLES:
            raise ValueError(f"unknown module role {role!r}; allowed: {list(MODULE_ROLES)}")
        raise SpaceError(f"no {role} module registered for block kind {kind!r} "
                         f"(import {MODULE_ROLES[role]} first, or register one with register_block_module)")
    return m
