from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from hwnas.errors import ArchError, SpaceError
from hwnas.search_space import Arch, Space, available_presets, ofa_arch
from hypothesis import given, settings
from hypothesis import strategies as st

PRESETS = ["ofa-mbv3", "fmnist-mbv3", "fmnist-mixed"]

TINY = {
    "name": "tiny",
    "in_channels": 1,
    "num_classes": 3,
    "resolutions": [8, 12],
    "stem": {"channels": 8, "kernel": 3, "stride": 2},
    "stages": [
        {"kinds": ["mb", "conv"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [8, 16], "stride": 1},
        {"kinds": ["fmb"], "depths": [1], "kernels": [3], "expands": [2], "widths": [16], "stride": 2, "se": True},
    ],
    "head": {"expand_channels": 32},
}


def test_presets_are_listed_and_load():
    assert set(PRESETS) <= set(available_presets())
    for name in PRESETS:
        s = Space.preset(name)
        assert s.name == name
        assert s.size() > 1000


def test_ofa_space_matches_once_for_all():
    s = Space.preset("ofa-mbv3")
    assert s.resolutions == tuple(range(128, 225, 4))
    assert [stg.widths[0] for stg in s.stages] == [16, 24, 40, 80, 112, 160]
    assert [stg.stride for stg in s.stages] == [1, 2, 2, 2, 1, 2]
    assert [stg.se for stg in s.stages] == [False, False, True, False, True, True]
    assert [stg.act for stg in s.stages] == ["relu", "relu", "relu", "hswish", "hswish", "hswish"]
    for stg in s.stages[1:]:
        assert stg.depths == (2, 3, 4) and stg.kernels == (3, 5, 7) and stg.expands == (3, 4, 6)
    # (9^2 + 9^3 + 9^4)^5 block choices, times 25 resolutions
    assert s.size() == (9**2 + 9**3 + 9**4) ** 5 * 25


def test_every_row_of_the_ofa_latency_dataset_parses(shared_dir):
    df = pd.read_csv(shared_dir / "datasets/help-latency/ofa_mbv3_gpu_latency.csv")
    assert len(df) == 5000
    s = Space.preset("ofa-mbv3")
    ks = df[[f"ks{i}" for i in range(20)]].to_numpy()
    es = df[[f"e{i}" for i in range(20)]].to_numpy()
    ds = df[[f"d{i}" for i in range(5)]].to_numpy()
    seen = set()
    for r, k, e, d in zip(df["resolution"], ks, es, ds):
        a = ofa_arch(s, r, k, e, d)
        assert s.parse(a.to_string()) == a
        assert a.depths[1:] == tuple(d)
        seen.add(a)
    assert len(seen) == 5000


@pytest.mark.parametrize("name", PRESETS)
def test_sample_is_valid_and_roundtrips(name):
    s = Space.preset(name)
    rng = random.Random(0)
    for _ in range(200):
        a = s.sample(rng)
        assert s.contains(a)
        assert s.parse(a.to_string()) == a
        assert Arch.from_json(a.to_json()) == a
        assert s.from_choices(s.to_choices(a)) == a
    assert s.contains(s.min_arch()) and s.contains(s.max_arch())


def test_min_max_are_extremes():
    s = Space.preset("fmnist-mbv3")
    mn, mx = s.min_arch(), s.max_arch()
    assert mn.resolution == min(s.resolutions) and mx.resolution == max(s.resolutions)
    assert mn.depths == tuple(min(stg.depths) for stg in s.stages)
    assert mx.depths == tuple(max(stg.depths) for stg in s.stages)


def test_tiny_space_size_matches_enumeration():
    s = Space.from_dict(TINY)
    archs = list(s.enumerate())
    assert len(archs) == s.size() == len(set(archs))
    # per block: mb 2k x 2e + conv 2k = 6 choices; stage 1: 2 widths x (6 + 36); stage 2: 1; 2 resolutions
    assert s.size() == 2 * 2 * (6 + 36)


@st.composite
def archs(draw, name):
    s = Space.preset(name) if name != "tiny" else Space.from_dict(TINY)
    return s, s.sample(draw(st.integers(0, 2**32)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PRESETS + ["tiny"]).flatmap(archs), st.integers(0, 2**32), st.floats(0, 1))
def test_roundtrip_and_variation_stay_in_space(sa, seed, prob):
    s, a = sa
    assert s.parse(str(a)) == a
    assert Arch.from_json(a.to_json()) == a
    assert hash(s.parse(str(a))) == hash(a)
    m = s.mutate(a, seed, prob=prob)
    assert s.contains(m)
    b = s.sample(seed + 1)
    c = s.crossover(a, b, seed)
    assert s.contains(c)
    for i, stc in enumerate(c.stages):
        assert stc.depth in (a.stages[i].depth, b.stages[i].depth)
    assert s.encode(a).shape == (len(s.encoding_names()),)


def test_mutation_with_prob_zero_is_identity_and_one_changes():
    s = Space.preset("fmnist-mbv3")
    a = s.sample(1)
    assert s.mutate(a, 3, prob=0.0) == a
    changed = sum(s.mutate(a, i, prob=1.0) != a for i in range(20))
    assert changed >= 18


def test_encoding_is_fixed_length_and_distinguishes():
    s = Space.preset("ofa-mbv3")
    a, b = s.sample(1), s.sample(2)
    X = s.encode_many([a, b, a])
    assert X.dtype == np.float32 and X.shape[0] == 3
    np.testing.assert_array_equal(X[0], X[2])
    assert not np.array_equal(X[0], X[1])
    np.testing.assert_array_equal(X[0], s.encode(a))


@pytest.mark.parametrize("name", PRESETS)
def test_block_configs_are_among_the_distinct_ones(name):
    s = Space.preset(name)
    distinct = {c.key for c in s.distinct_block_configs()}
    for i in range(50):
        a = s.sample(i)
        cfgs = s.block_configs(a)
        assert cfgs[0].kind == "stem" and cfgs[-1].kind == "head"
        assert len(cfgs) == a.num_blocks + 2
        assert {c.key for c in cfgs} <= distinct
        # the stride chain gives the head's input size
        assert cfgs[-1].in_size == s.feature_sizes(a.resolution)[-1]
        assert cfgs[-1].in_size == math.ceil(a.resolution / 2 ** (1 + sum(st.stride == 2 for st in s.stages)))


def test_choices_map_excludes_fixed_choices():
    s = Space.preset("ofa-mbv3")
    ch = s.choices()
    assert "r" in ch and "s2.d" in ch and "s2.b3.k" in ch
    assert not any(k.startswith("s1.") for k in ch)  # the fixed first block
    assert "s2.w" not in ch


# ---- bad inputs: ValueError naming the offending token and the allowed values ----------------------------
BASE = "r28|s1w16:mb_k3_e1|s2w24:mb_k5_e4x2|s3w40:mb_k3_e3|s4w80:mb_k3_e6|s5w96:mb_k7_e4"


@pytest.mark.parametrize(
    "bad, needles",
    [
        (BASE.replace("s3w40:mb_k3_e3", "s3w40:xb_k3_e3"), ["xb", "mb", "fmb", "conv"]),  # unknown block kind
        (BASE.replace("s2w24:mb_k5_e4x2", "s2w24:mb_k9_e4x2"), ["k9", "[3, 5, 7]"]),  # kernel not allowed
        (BASE.replace("s2w24:mb_k5_e4x2", "s2w24:mb_k5_e4x3"), ["depth 3", "[1, 2]"]),  # depth out of range
        (BASE.replace("r28", "r27"), ["r27", "[20, 24, 28]"]),  # resolution not in space
        ("r28|s1w16:mb_k3_e1|s2w24:mb_k5_e4x2", ["2 stages", "5"]),  # truncated
        ("r28|s1w16:mb_k3_e1|s2w24:", ["no blocks"]),  # truncated mid-stage
        (BASE.replace("s3w40:mb_k3_e3", "s3w40:mb_k3_e5"), ["e5", "[3, 4, 6]"]),  # expand not allowed
        (BASE.replace("s4w80", "s4w64"), ["w64", "[80]"]),  # width not allowed
        ("28|s1w16:mb_k3_e1", ["'28'", "r<int>"]),  # missing r
        ("", ["empty"]),
        (BASE.replace("s3w40:mb_k3_e3", "s3w40:conv_k3_e3"), ["conv", "no expand"]),
        (BASE.replace("s3w40", "s4w40"), ["out of order", "s3"]),
    ],
)
def test_bad_arch_strings_name_the_problem(bad, needles):
    s = Space.preset("fmnist-mbv3")
    with pytest.raises(ValueError) as ei:
        s.parse(bad)
    assert isinstance(ei.value, ArchError)
    for n in needles:
        assert n in str(ei.value), (n, str(ei.value))


def test_arch_from_another_space_is_refused():
    a = Space.preset("fmnist-mixed").sample(0)
    with pytest.raises(ArchError, match="fmnist-mixed"):
        Space.preset("fmnist-mbv3").validate(a)


def test_bad_space_definitions():
    with pytest.raises(SpaceError, match="unknown space preset 'nope'"):
        Space.preset("nope")
    bad = dict(TINY, stages=[dict(TINY["stages"][0], kinds=["xx"])])
    with pytest.raises(SpaceError, match="unknown block kind 'xx'"):
        Space.from_dict(bad)
    bad = dict(TINY, stages=[dict(TINY["stages"][0], kernels=[4])])
    with pytest.raises(SpaceError, match="must be odd"):
        Space.from_dict(bad)
    bad = dict(TINY, colour="blue")
    with pytest.raises(SpaceError, match="colour"):
        Space.from_dict(bad)


def test_space_yaml_roundtrip(tmp_path):
    import yaml

    s = Space.preset("fmnist-mixed")
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(s.to_dict()))
    assert Space.from_yaml(p) == s
    assert Space.from_dict(s.to_dict()) == s
