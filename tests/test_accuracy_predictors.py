"""The accuracy predictor kinds: they rank a known target, their files round-trip without pickle, bad
pairs are refused with a clear ValueError; `stratified_archs` covers the space; `best_kind` follows data."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest
from hwnas.errors import ProfileError
from hwnas.estimators.accuracy import (
    KINDS,
    AccuracyPredictor,
    GBMPredictor,
    best_kind,
    compare_kinds,
    features,
    fit_accuracy_predictor,
    fit_best,
    load_accuracy_predictor,
    rank_metrics,
    stratified_archs,
)
from hwnas.estimators.flops import arch_macs_many
from hwnas.search_space import Space

# small settings so that every kind fits in seconds on 2 busy cores; the defaults are what ships
FAST = {"mlp": {"epochs": 150, "hidden": 64, "lr": 3e-3}, "rank_mlp": {"epochs": 150, "hidden": 64, "lr": 3e-3},
        "ensemble": {"members": 3, "epochs": 150, "hidden": 64, "lr": 3e-3}, "gp": {}, "gbm": {"rounds": 300}}


MIN_SPEARMAN = {"gbm": 0.7, "mlp": 0.85}


@pytest.fixture(scope="module")
def space() -> Space:
    return Space.preset("fmnist-mbv3")


@pytest.fixture(scope="module")
def pairs(space):
    """A synthetic accuracy: linear in the encoding plus a monotone (saturating) function of MACs."""
    archs = stratified_archs(space, 260, seed=3)
    X = space.encode_many(archs)
    w = np.random.default_rng(0).normal(size=X.shape[1])
    macs = np.log(arch_macs_many(space, archs))
    y = 0.88 + 0.004 * (X @ w) + 0.02 * np.tanh(2.0 * (macs - macs.mean()))
    return archs, y


def test_every_kind_is_registered():
    assert set(KINDS) == {"mlp", "ensemble", "gp", "gbm", "rank_mlp"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAST))
def test_each_kind_ranks_a_known_target(space, pairs, kind, tmp_path):
    archs, y = pairs
    tr, te = slice(0, 200), slice(200, None)
    pred = fit_accuracy_predictor(space, archs[tr], y[tr], kind=kind, holdout=0.0, path=tmp_path / "p.json",
                                  **FAST[kind])
    p = pred.predict_many(archs[te])
    # Trees approximate a dense additive target from 200 pairs less well (measured 0.76) and the
    # small test MLP reaches 0.88; a broken fit ranks near 0.
    assert rank_metrics(p, y[te])["spearman"] > MIN_SPEARMAN.get(kind, 0.9)
    # the saved pair loads as the same kind and predicts exactly the same
    back = load_accuracy_predictor(tmp_path / "p.json")
    assert type(back) is type(pred) and back.kind == kind
    np.testing.assert_array_equal(back.predict_many(archs[te]), p)
    # one arch at a time equals the batch up to float32 summation order
    assert back.predict(archs[te][0]) == pytest.approx(p[0], rel=1e-6)
    assert json.loads((tmp_path / "p.json").read_text())["kind"] == kind


@pytest.mark.parametrize("kind", sorted(FAST))
def test_saved_file_is_json_and_plain_npz(space, pairs, kind, tmp_path):
    archs, y = pairs
    settings = {**FAST[kind], **({"epochs": 3} if "epochs" in FAST[kind] else {}),
                **({"rounds": 5} if kind == "gbm" else {}), **({"max_iter": 5} if kind == "gp" else {})}
    pred = fit_accuracy_predictor(space, archs[:40], y[:40], kind=kind, holdout=0.0, path=tmp_path / "p.json",
                                  **settings)
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["format"] == "hwnas-accuracy-predictor" and meta["kind"] == kind and meta["arrays"] == "p.npz"
    with zipfile.ZipFile(tmp_path / "p.npz") as z:  # .npy members only: nothing else rides along
        assert all(n.endswith(".npy") for n in z.namelist())
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:  # raises on an object (pickled) array
        assert all(z[k].dtype != object for k in z.files)
    np.testing.assert_array_equal(load_accuracy_predictor(tmp_path / "p.json").predict_many(archs[40:60]),
                                  pred.predict_many(archs[40:60]))


def test_kind_specific_load_refuses_another_kind(space, pairs, tmp_path):
    archs, y = pairs
    fit_accuracy_predictor(space, archs[:20], y[:20], kind="gbm", holdout=0.0, path=tmp_path / "g.json", rounds=3)
    assert isinstance(GBMPredictor.load(tmp_path / "g.json"), GBMPredictor)
    with pytest.raises(ProfileError, match="'gbm'"):
        AccuracyPredictor.load(tmp_path / "g.json")


def test_files_of_the_first_format_still_load(space, pairs, tmp_path):
    """A predictor saved before kinds existed (no `kind`, `features` or `train` keys) loads as the MLP."""
    archs, y = pairs
    pred = AccuracyPredictor.fit(space, archs[:20], y[:20], holdout=0.0, epochs=2, hidden=8, layers=2)
    path = pred.save(tmp_path / "old.json")
    d = json.loads(path.read_text())
    for k in ("kind", "features", "train"):
        d.pop(k)
    path.write_text(json.dumps(d))
    back = load_accuracy_predictor(path)
    assert type(back) is AccuracyPredictor and back.hidden == 8 and back.layers == 2
    np.testing.assert_array_equal(back.predict_many(archs[20:30]), pred.predict_many(archs[20:30]))


def test_derived_features_add_three_scaled_columns(space):
    archs = [space.min_arch(), space.max_arch(), *space.sample_many(5, rng=1)]
    plain, derived = features(space, archs, "encoding"), features(space, archs, "encoding+derived")
    assert derived.shape == (7, plain.shape[1] + 3)
    np.testing.assert_array_equal(derived[:, :-3], plain)
    np.testing.assert_allclose(derived[0, -3:], 0.0)  # min subnet: log MACs, log params, depth at 0
    np.testing.assert_allclose(derived[1, -3:], 1.0, rtol=1e-6)  # max subnet: at 1
    assert ((derived[2:, -3:] >= 0) & (derived[2:, -3:] <= 1)).all()


def test_holdout_report_and_derived_features_fit(space, pairs):
    archs, y = pairs
    pred = fit_accuracy_predictor(space, archs[:60], y[:60], kind="gp", features="encoding+derived", holdout=0.25)
    assert pred.report["holdout_n"] == 15 and pred.report["features"] == "encoding+derived"
    assert pred.report["holdout_spearman"] > 0.5 and math.isfinite(pred.report["holdout_kendall"])


# ---- bad inputs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(FAST))
def test_bad_pairs_raise_a_clear_value_error(space, pairs, kind):
    archs, y = pairs
    other = Space.preset("fmnist-mixed")
    cases = [
        ((archs[:9], y[:9]), "need >= 10"),
        ((archs[:20], y[:19]), "same length"),
        ((archs[:20], np.where(np.arange(20) == 4, np.nan, y[:20])), "NaN/inf .* row 4"),
        ((archs[:19] + [other.max_arch()], y[:20]), "row 19"),
    ]
    for (a, acc), msg in cases:
        with pytest.raises(ValueError, match=msg):
            fit_accuracy_predictor(space, a, acc, kind=kind, holdout=0.0)
    with pytest.raises(ValueError, match="unknown predictor kind"):
        fit_accuracy_predictor(space, archs[:20], y[:20], kind="forest")
    with pytest.raises(ValueError, match="features="):
        fit_accuracy_predictor(space, archs[:20], y[:20], kind=kind, features="macs")


def test_garbage_files_are_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"format": "hwnas-accuracy-predictor", "kind": "oracle"}))
    with pytest.raises(ProfileError, match="unknown predictor kind"):
        load_accuracy_predictor(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ProfileError):
        load_accuracy_predictor(tmp_path / "b.json")


def test_a_corrupt_gbm_model_text_is_refused(space, pairs, tmp_path):
    archs, y = pairs
    path = fit_accuracy_predictor(space, archs[:20], y[:20], kind="gbm", holdout=0.0, rounds=3).save(tmp_path / "g.json")
    d = json.loads(path.read_text())
    d["model"] = "tree\nnot a model"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError):
        load_accuracy_predictor(path)


# ---- stratified archs -----------------------------------------------------------------------------------
def test_stratified_archs_cover_every_macs_bin(space):
    a = stratified_archs(space, 200, seed=5)
    assert a == stratified_archs(space, 200, seed=5)  # deterministic for a seed
    assert a != stratified_archs(space, 200, seed=6)
    assert len(set(a)) == 200 and all(space.contains(x) for x in a)
    assert a[0] == space.min_arch() and a[1] == space.max_arch()
    lo, hi = np.log(arch_macs_many(space, [space.min_arch(), space.max_arch()]))
    counts = np.histogram(np.log(arch_macs_many(space, a)), bins=10, range=(lo, hi))[0]
    assert counts.min() >= 15, counts  # ~20 a bin; every bin covered
    uniform = np.histogram(np.log(arch_macs_many(space, space.sample_many(200, rng=5))), bins=10, range=(lo, hi))[0]
    assert uniform.min() < 5 < counts.min()  # what it fixes: uniform samples leave the ends empty
    depths = {sum(st.depth for st in x.stages) for x in a}
    assert depths == set(range(5, 12))  # every total depth of fmnist-mbv3 (1+1..2+1..3+1..3+1..2)


def test_stratified_archs_refuses_bad_sizes(space):
    with pytest.raises(ValueError, match="n=1"):
        stratified_archs(space, 1)
    with pytest.raises(ValueError, match="bins=0"):
        stratified_archs(space, 20, bins=0)


# ---- comparing kinds and choosing one -------------------------------------------------------------------
def test_compare_kinds_and_best_kind(space, pairs, tmp_path):
    archs, y = pairs
    fast = {"mlp": {"epochs": 20, "hidden": 16}, "gbm": {"rounds": 50}}
    r = compare_kinds(space, archs[:80], y[:80], kinds=("mlp", "gp", "gbm"), holdout=100, seeds=2, settings=fast)
    assert r["holdout_requested"] == 100 and r["holdout_used"] == 32  # 40% of a small file, said so
    assert set(r["candidates"]) == {"mlp", "gp", "gbm"} and set(r["plot"]) == {"mlp", "gp", "gbm", "MACs proxy"}
    for rec in r["candidates"].values():
        assert len(rec["spearman"]) == len(rec["kendall"]) == len(rec["fit_s"]) == 2
        assert len(r["plot"][rec["kind"]]["predicted"]) == 32
    assert len(r["macs_proxy"]["spearman"]) == 2
    # the choice follows the numbers: make each candidate the best in turn
    for win in ("mlp", "gp", "gbm"):
        fake = {"candidates": {n: {**rec, "spearman": [0.9 if n == win else 0.5] * 2} for n, rec in r["candidates"].items()}}
        assert best_kind(fake) == win
    tie = {"candidates": {"a": {"spearman": [0.8], "kendall": [0.6]}, "b": {"spearman": [0.8], "kendall": [0.7]}}}
    assert best_kind(tie) == "b"
    with pytest.raises(ValueError, match="no candidate"):
        best_kind({"candidates": {}})
    pred = fit_best(r, space, archs[:80], y[:80], path=tmp_path / "best.json", holdout=0.0)
    assert load_accuracy_predictor(tmp_path / "best.json").kind == best_kind(r) == pred.kind


def test_compare_kinds_refuses_tiny_holdouts(space, pairs):
    archs, y = pairs
    with pytest.raises(ValueError, match="need >= 5"):
        compare_kinds(space, archs[:12], y[:12], kinds=("gp",), holdout=100, seeds=1)
