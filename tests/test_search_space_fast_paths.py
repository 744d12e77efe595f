"""The search space's fast paths give what its checked paths give, and user input is still checked.

`from_choices` builds plain choice maps without checking the arch again, `validate` admits by set
lookups, an arch keeps its string from construction, `block_configs` reuses configurations,
`mutate` / `sample` reuse the space's own blocks (search_space/_tables.py). Each is compared here
with the long way on many random inputs, valid and not.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from hwnas.errors import ArchError
from hwnas.search_space import Arch, BlockArch, Space, StageArch, _choices, _configs, _tables
from hwnas.search_space._arch import _render, plain

PRESETS = ("fmnist-mbv3", "ofa-mbv3", "fmnist-mixed")


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as e:  # noqa: BLE001 - the type and message are what is compared
        return type(e).__name__, str(e)


@pytest.mark.parametrize("name", PRESETS)
def test_plain_from_choices_equals_the_checked_build(name):
    space = Space.preset(name)
    r = random.Random(0)
    known = space.choices()
    for _ in range(300):
        values = {k: r.choice(v) for k, v in known.items()}  # what a sampler gives: every name, plain values
        fast = _choices._plain_from_choices(space, values)
        assert fast is not None
        slow = _choices._checked_from_choices(space, values)
        assert fast == slow and repr(fast) == repr(slow) and str(fast) == str(slow)
        assert space.from_choices(values) == slow
        partial = {k: v for k, v in values.items() if r.random() < 0.5}  # missing names take the first choice
        assert space.from_choices(partial) == _choices._checked_from_choices(space, partial)


@pytest.mark.parametrize("name", PRESETS)
def test_from_choices_still_checks_user_values(name):
    space = Space.preset(name)
    r = random.Random(1)
    known = space.choices()
    for _ in range(200):
        values = {k: r.choice(v) for k, v in known.items()}
        k = r.choice(sorted(known))
        bad = dict(values)
        bad[k] = r.choice([99, "zz", None, 2.5, [1], -1])
        got = _outcome(space.from_choices, bad)
        assert got == _outcome(_choices._checked_from_choices, space, bad)
        unknown = dict(values, nope=1)
        with pytest.raises(ArchError, match="unknown choice name"):
            space.from_choices(unknown)
        # equal values of other types are the checked path's (numpy ints, floats, bools)
        odd = {k: (np.int64(v) if isinstance(v, int) and r.random() < 0.3 else v) for k, v in values.items()}
        assert _outcome(space.from_choices, odd) == _outcome(_choices._checked_from_choices, space, odd)
    # a value not among the choices is refused, naming it
    with pytest.raises(ArchError, match="not allowed"):
        space.from_choices({next(iter(known)): 12345})


def _variants(space: Space, arch: Arch, r: random.Random) -> list[Arch]:
    """`arch` with one block, width or the resolution changed to something valid or not."""
    st = list(arch.stages)
    i = r.randrange(len(st))
    s0, b = st[i], st[i].blocks[0]
    out = []
    for v in (BlockArch(b.kind, float(b.kernel), b.expand), BlockArch(b.kind, b.kernel, 99), BlockArch("conv", 3, 2),
              BlockArch("zz", 3, 1), BlockArch(b.kind, 4, b.expand), BlockArch(b.kind, True, b.expand)):
        st2 = list(st)
        st2[i] = StageArch(s0.width, (v,) + s0.blocks[1:])
        out.append(Arch(arch.resolution, tuple(st2)))
    st2 = list(st)
    st2[i] = StageArch(s0.width + 1, s0.blocks)
    out += [Arch(arch.resolution, tuple(st2)), Arch(arch.resolution + 1, arch.stages), Arch(arch.resolution, arch.stages[:-1]),
            Arch(float(arch.resolution), arch.stages), Arch(arch.resolution, list(arch.stages)), Arch(arch.resolution, "junk")]
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_set_lookups_admit_exactly_what_the_checks_pass(name):
    space = Space.preset(name)
    r = random.Random(2)
    admitted = refused = 0
    for a in space.sample_many(100, r):
        for v in [a, *_variants(space, a, r)]:
            checked = _outcome(space._refuse, v)
            if _tables.admits(space, v):
                admitted += 1
                assert checked == ("ok", None)  # admitted: the checks pass too
            else:
                refused += 1
                assert _outcome(space.validate, v)[0] == checked[0]  # refused: the checks say why
    assert admitted > 100 and refused > 100


@pytest.mark.parametrize("name", PRESETS)
def test_kept_string_is_the_rendered_one(name):
    space = Space.preset(name)
    r = random.Random(3)
    for a in space.sample_many(200, r):
        assert plain(a) and a.to_string() == _render(a.resolution, a.stages)[0]
        same = Arch(a.resolution, list(a.stages), a.space)  # not plain: rendered on every call
        assert not plain(same) and str(same) == str(a)
        assert str(space.parse(str(a))) == str(a)
        assert Arch(a.resolution, a.stages, a.space) == a and hash(Arch(a.resolution, a.stages, a.space)) == hash(a)
        assert "_string" not in repr(a) and [f.name for f in dataclasses.fields(a)] == ["resolution", "stages", "space"]
    # equal-looking runs: a conv block's token drops its expand, yet blocks of other expands are not one run
    odd = Arch(28, (StageArch(16, (BlockArch("conv", 3, 1), BlockArch("conv", 3, 2), BlockArch("conv", 3, 2))),))
    assert str(odd) == "r28|s1w16:conv_k3,conv_k3x2"
    assert str(Arch(28.0, odd.stages)) == "r28.0|s1w16:conv_k3,conv_k3x2" and not plain(Arch(28.0, odd.stages))
    assert BlockArch("mb", 3.0, 4).token() == "mb_k3.0_e4"


@pytest.mark.parametrize("name", PRESETS)
def test_reused_block_configs_equal_new_ones(name):
    space = Space.preset(name)
    r = random.Random(4)
    for a in space.sample_many(100, r):
        new = _configs.block_configs(space, Arch(a.resolution, list(a.stages), a.space))  # not plain: made anew
        got = space.block_configs(a)
        assert got == new and [c.key for c in got] == [c.key for c in new]
        assert [hash(c) for c in got] == [hash(c) for c in new]
        assert space.block_configs(a) == got and space.block_configs(a) is not got  # a fresh list each call
    # an arch of equal values of another type keeps its own values (no lookup swaps them)
    a = space.sample(5)
    b0 = a.stages[0].blocks[0]
    floaty = Arch(a.resolution, (StageArch(a.stages[0].width, (BlockArch(b0.kind, float(b0.kernel), b0.expand),)
                                           + a.stages[0].blocks[1:]),) + a.stages[1:])
    cfg = space.block_configs(floaty)[1]
    assert type(cfg.kernel) is float and f"_k{float(b0.kernel)}_" in cfg.key


@pytest.mark.parametrize("name", PRESETS)
def test_variation_with_the_space_blocks_equals_variation_with_new_ones(name):
    space = Space.preset(name)
    r = random.Random(6)
    archs = space.sample_many(60, r)
    for i, a in enumerate(archs):
        loose = Arch(a.resolution, list(a.stages), a.space)  # not plain: changed blocks are built anew
        for prob in (0.05, 0.5, 1.0):
            m = space.mutate(a, random.Random(i), prob=prob)
            assert m == space.mutate(loose, random.Random(i), prob=prob) and space.contains(m)
            assert str(m) == _render(m.resolution, m.stages)[0]
        x = space.crossover(a, archs[i - 1], random.Random(i))
        assert x == space.crossover(loose, archs[i - 1], random.Random(i)) and space.contains(x)


def test_per_space_tables_follow_the_space():
    a, b = Space.preset("fmnist-mbv3"), Space.preset("fmnist-mixed")
    assert _tables.blocks(a) is _tables.blocks(a) and _tables.blocks(a) is not _tables.blocks(b)
    copy = Space.from_dict(a.to_dict())  # equal, another object: the same table
    assert copy == a and _tables.blocks(copy) == _tables.blocks(a)
    assert all(_tables.plain(Space.preset(n)) for n in PRESETS)
    # a hand-built space holding a list cannot be hashed: tables are made per call, nothing breaks
    listed = dataclasses.replace(a, stages=list(a.stages))
    assert listed.sample(7) == a.sample(7)
    arch = a.sample(8)
    assert listed.validate(arch) == arch
    with pytest.raises(ArchError, match="width"):
        listed.validate(Arch(arch.resolution, (StageArch(1, arch.stages[0].blocks),) + arch.stages[1:]))
    # a space of equal values of other types is not plain: from_choices checks every value the long way
    floats = dataclasses.replace(a, resolutions=tuple(float(x) for x in a.resolutions))
    assert not _tables.plain(floats) and _tables.blocks(floats) is None
    values = {k: v[0] for k, v in floats.choices().items()}
    assert _choices._plain_from_choices(floats, values) is None
    assert floats.from_choices(values) == _choices._checked_from_choices(floats, values)
