"""The block-kind registry, the one network walk, and the units of the cost metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hwnas.errors import SpaceError
from hwnas.search_space import (
    BLOCK_KINDS,
    Space,
    block_kind,
    block_kinds,
    block_macs,
    block_module,
    block_params,
    walk,
)
from hwnas.search_space._blocks import MODULE_ROLES

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("fmnist-mbv3", "fmnist-mixed", "ofa-mbv3")


def test_every_kind_has_every_module_once_supernet_and_kernels_are_imported():
    import hwnas.kernels  # noqa: F401 - registers the fused modules
    import hwnas.supernet  # noqa: F401 - registers the static and dynamic modules

    for kind in block_kinds(searchable=False):
        for role in MODULE_ROLES:
            if role == "dynamic" and not block_kind(kind).searchable:
                continue  # the supernet's stem and head are not elastic blocks
            assert block_module(kind, role) is not None, (kind, role)
    assert BLOCK_KINDS == ("mb", "fmb", "conv")
    with pytest.raises(SpaceError, match="unknown block kind 'nope'"):
        block_kind("nope")


# `kind == "mb"`, `kind != 'conv'`, `kind in ("mb", ...)`, `{"MBConv": ...}[fused.kind]`: a branch on a
# block kind's name. Other "kinds" (storage kinds, metric kinds) are not block kinds.
_NAMES = "|".join(block_kinds(searchable=False))
_CHAIN = re.compile(
    rf"""kind\s*(==|!=)\s*["']({_NAMES})["']"""
    rf"""|["']({_NAMES})["']\s*(==|!=)\s*[\w.]*kind"""
    rf"""|kind\s+(not\s+)?in\s*[(\[{{]\s*["']({_NAMES})["']"""
    r"""|\{\s*["'](MBConv|FusedMBConv|ConvBlock)["']\s*:"""
)


def test_no_kind_chain_outside_the_registry():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", ".venv/", "results/")) or rel == "search_space/_blocks.py" or "/." in rel:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if _CHAIN.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "branches on block kinds outside search_space/_blocks.py:\n" + "\n".join(offenders)


def test_the_chain_pattern_catches_what_it_is_for():
    for line in ('if c.kind == "mb":', "elif kind != 'conv':", 'if kind in ("mb", "fmb"):',
                 'parts = {"MBConv": (1,)}[fused.kind]', 'if "stem" == c.kind:'):
        assert _CHAIN.search(line), line
    for line in ('if kind == "memory":', "block_kind(c.kind).takes_expand"):
        assert not _CHAIN.search(line), line


@pytest.mark.parametrize("preset", PRESETS)
def test_registry_macs_and_params_agree_with_fvcore_and_the_static_net(preset):
    torch = pytest.importorskip("torch")
    from hwnas.estimators.flops import count_fvcore
    from hwnas.supernet import build_static
    from hwnas.supernet.static import build_block

    space = Space.preset(preset)
    n = 6 if preset == "ofa-mbv3" else 25  # ofa-mbv3's nets are 224x224: fvcore traces them slowly
    archs = space.sample_many(n, 7) + [space.min_arch(), space.max_arch()]
    with torch.no_grad():
        for arch in archs:
            cfgs = space.block_configs(arch)
            net = build_static(space, arch)
            assert sum(block_params(space, c) for c in cfgs) == sum(p.numel() for p in net.parameters()), str(arch)
            r = count_fvcore(net, (1, space.in_channels, arch.resolution, arch.resolution))
            # conv + linear MACs exactly; fvcore's total adds BN / SE multiplies / pooling on top
            assert sum(block_macs(space, c) for c in cfgs) == r["conv_linear_macs"], str(arch)
        # and per block: each distinct configuration's module, as the profiler builds it
        for c in space.distinct_block_configs()[:: 15 if preset == "ofa-mbv3" else 3]:
            m = build_block(space, c)
            assert block_params(space, c) == sum(p.numel() for p in m.parameters()), c.key
            r = count_fvcore(m, (1, c.cin, c.in_size, c.in_size))
            assert block_macs(space, c) == r["conv_linear_macs"], c.key


@pytest.mark.parametrize("preset", PRESETS)
def test_arch_cost_units_and_estimators_agree(preset):
    from hwnas.estimators.flops import arch_macs, arch_params
    from hwnas.searchers import arch_cost

    space = Space.preset(preset)
    for arch in space.sample_many(40, 3):
        cost = arch_cost(space, arch)
        assert cost["macs"] == arch_macs(space, arch)
        assert cost["flops"] == 2 * cost["macs"]
        assert cost["params"] == arch_params(space, arch)


def test_old_flops_name_is_a_clear_error_not_a_silent_doubling():
    with pytest.raises(ImportError, match="renamed arch_cost.*2 x MACs"):
        from hwnas.searchers import analytic_cost  # noqa: F401
    from hwnas.searchers import make_objective

    space = Space.preset("fmnist-mbv3")
    arch = space.sample(0)
    assert make_objective(space, "flops")(arch)["flops"] == 2 * make_objective(space, "macs")(arch)["macs"]


@pytest.mark.parametrize("preset", PRESETS)
def test_walk_matches_the_configs_and_the_static_net(preset):
    torch = pytest.importorskip("torch")
    from hwnas.supernet import build_static

    space = Space.preset(preset)
    for arch in space.sample_many(5, 11):
        sites = list(walk(space, arch))
        cfgs = space.block_configs(arch)[1:-1]
        assert [(s.cin, s.cout, s.stride, s.in_size, s.stage) for s in sites] == \
            [(c.cin, c.cout, c.stride, c.in_size, c.stage) for c in cfgs]
        assert [s.index for s in sites if s.stage == 0] == list(range(arch.stages[0].depth))
        net = build_static(space, arch).eval()
        x = net.stem(torch.zeros(1, space.in_channels, arch.resolution, arch.resolution))
        for s, blk in zip(sites, net.blocks):
            assert tuple(x.shape[1:]) == (s.cin, s.in_size, s.in_size)
            x = blk(x)
            assert tuple(x.shape[1:]) == (s.cout, s.out_size, s.out_size)
        assert x.shape[-1] == space.feature_sizes(arch.resolution)[-1]


def test_block_configs_carry_their_stage_and_expand_conv():
    space = Space.preset("ofa-mbv3")  # its first stage has expand ratio 1 only: no expand conv there
    cfgs = space.block_configs(space.max_arch())
    assert cfgs[0].stage is None and cfgs[-1].stage is None
    stages = [c.stage for c in cfgs[1:-1]]
    assert stages == sorted(stages) and stages[0] == 0 and stages[-1] == len(space.stages) - 1
    assert not cfgs[1].has_expand and all(c.has_expand for c in cfgs[1:-1] if c.stage > 0)
    for c in space.distinct_block_configs():
        if c.stage is not None:
            ss = space.stages[c.stage]
            assert c.kind in ss.kinds and c.cout in ss.widths and c.se == ss.se and c.act == ss.act


def test_space_keeps_no_cache_on_itself():
    space = Space.preset("fmnist-mbv3")
    before = dict(space.__dict__)
    space.encode(space.sample(0))
    space.choices()
    assert space.__dict__ == before
