"""benchmarks/supernet_ablation.py's table: variants joined with the scratch runs of their own seed,
and the mean-of-seeds row the issue's goal is stated on."""

from __future__ import annotations

import json

import pytest

from tests._helpers import load_benchmark

abl = load_benchmark("supernet_ablation")

FIXED = {"min": "A", "macs25": "B", "macs50": "C", "macs75": "D", "max": "E"}


def _variant(seed: int, test: dict[str, float], name: str = "bignas-r3") -> dict:
    subnets = {k: {"arch": a, "val": test[k] + 0.01, "test": test[k]} for k, a in FIXED.items()}
    return {"kind": "variant", "variant": name, "seed": seed, "steps": 100, "train_seconds": 10.0 * (seed + 1),
            "subnets": subnets}


def _scratch(seed: int, name: str, test: float) -> dict:
    return {"kind": "scratch", "name": name, "arch": FIXED[name], "seed": seed, "steps": 100, "val": test + 0.01,
            "test": test}


def _write(tmp_path, runs):
    p = tmp_path / "abl.json"
    p.write_text(json.dumps({"benchmark": "supernet_ablation", "runs": runs}))
    return p


def test_rows_compare_with_scratch_of_their_own_seed_and_average_two_seeds(tmp_path):
    inh0 = {"min": 0.90, "macs25": 0.91, "macs50": 0.92, "macs75": 0.93, "max": 0.94}
    inh1 = {"min": 0.92, "macs25": 0.91, "macs50": 0.90, "macs75": 0.93, "max": 0.96}
    sc0 = {"min": 0.91, "macs25": 0.915, "macs50": 0.905, "macs75": 0.92, "max": 0.912}
    sc1 = {"min": 0.89, "macs25": 0.93, "macs50": 0.91, "macs75": 0.95, "max": 0.93}
    runs = [_variant(0, inh0), _variant(1, inh1)]
    runs += [_scratch(0, k, v) for k, v in sc0.items()] + [_scratch(1, k, v) for k, v in sc1.items()]
    doc = abl.table(_write(tmp_path, runs), write=False)
    rows = {str(r["seed"]): r for r in doc["rows"]}
    assert set(rows) == {"0", "1", "[0, 1]"}
    # the seed-1 row compares with seed 1's scratch runs, not with the mean of both seeds
    assert rows["1"]["fixed"]["min"]["scratch"] == pytest.approx(0.89)
    assert rows["1"]["fixed"]["min"]["gap"] == pytest.approx(100 * (0.92 - 0.89))
    mean = rows["[0, 1]"]
    assert mean["variant"] == "bignas-r3 (mean of 2 seeds)"
    for k in FIXED:
        assert mean["fixed"][k]["inherited"] == pytest.approx((inh0[k] + inh1[k]) / 2)
        assert mean["fixed"][k]["scratch"] == pytest.approx((sc0[k] + sc1[k]) / 2)
        assert mean["fixed"][k]["gap"] == pytest.approx(100 * ((inh0[k] + inh1[k]) - (sc0[k] + sc1[k])) / 2)
    assert mean["train_seconds"] == pytest.approx(15.0)
    assert "bignas-r3 (mean of 2 seeds) | 0,1 | 100 |" in doc["markdown"]
    # every Markdown row has as many cells as the header
    lines = doc["markdown"].strip().splitlines()
    assert {line.count("|") for line in lines} == {lines[0].count("|")}


def test_a_single_seed_gets_no_mean_row_and_a_missing_seed_falls_back_to_the_mean(tmp_path):
    inh = {"min": 0.90, "macs25": 0.91, "macs50": 0.92, "macs75": 0.93, "max": 0.94}
    runs = [_variant(2, inh), _scratch(0, "min", 0.88), _scratch(1, "min", 0.90)]
    doc = abl.table(_write(tmp_path, runs), write=False)
    assert len(doc["rows"]) == 1
    row = doc["rows"][0]
    assert row["fixed"]["min"]["scratch"] == pytest.approx(0.89)  # no seed-2 run: the mean of seeds 0 and 1
    assert row["fixed"]["max"]["scratch"] is None and row["fixed"]["max"]["gap"] is None
    assert row["spearman"] is None  # one subnet with both: too few to rank


def test_the_same_recipe_under_two_names_averages_and_another_recipe_does_not(tmp_path):
    inh = {"min": 0.90, "macs25": 0.91, "macs50": 0.92, "macs75": 0.93, "max": 0.94}
    cfg = {"policy": "sandwich", "num_random": 1, "lr": 0.1}
    shipped = {**_variant(0, inh, name="shipped:x"), "config": {**cfg, "schedule": "default", "seed": 0}}
    again = {**_variant(1, inh, name="bignas"), "config": {**cfg, "schedule": "ablation-100", "seed": 1,
                                                             "steps_per_epoch": 50, "threads": 1}}
    other = {**_variant(1, inh, name="bignas-r3"), "config": {**cfg, "num_random": 3, "seed": 1}}
    doc = abl.table(_write(tmp_path, [shipped, again, other]), write=False)
    means = [r for r in doc["rows"] if "mean" in r["variant"]]
    assert [r["variant"] for r in means] == ["shipped:x = bignas (mean of 2 seeds)"]
    assert means[0]["seed"] == [0, 1]


def test_scratch_only_rejects_a_name_that_is_not_a_fixed_subnet_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(abl, "OUT_JSON", tmp_path / "abl.json")
    with pytest.raises(SystemExit, match=r"--only mac25: not among the fixed subnets; allowed: min, macs25, macs50"):
        abl.main(["--scratch", "--only", "min,mac25", "--steps", "10"])
    assert not (tmp_path / "abl.json").exists()  # nothing trained, nothing written
