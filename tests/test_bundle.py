"""Supernet bundles: `hwnas train --bundle` writes one that loads by path and by name; a tampered
file or a bundle of another space is refused; the shipped bundles' manifests hold what they say."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hwnas.errors import CheckpointError

from tests._train_helpers import HAVE_FMNIST

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "results" / "supernets"
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST Debian files not installed")


@needs_fmnist
@pytest.mark.slow
def test_train_bundle_writes_a_complete_bundle_that_loads(tiny_bundle):
    from hwnas.estimators import load_bundle
    from hwnas.supernet import Supernet, load_supernet

    names = {p.name for p in tiny_bundle.iterdir()}
    assert {"supernet.safetensors", "supernet.json", "metrics.jsonl", "accuracy_pairs.csv", "accuracy_predictor.json"} <= names
    man = json.loads((tiny_bundle / "supernet.json").read_text())
    assert man["format"] == "hwnas-supernet-bundle" and man["name"] == "fmnist-mbv3"
    assert set(man["files"]) == names - {"supernet.json"}  # every other file is hashed
    assert man["config"]["schedule"] == "tiny" and man["data_split_seed"] == 0 and man["policy"] == man["config"]["policy"]
    assert man["search_val_images"] == man["test_images"] == 300
    assert man["calib_images"] == man["config"]["calib_images"] == 200  # the tiny schedule's BN calibration
    assert list(man["fixed_subnets"]) == ["min", "macs25", "macs50", "macs75", "max"]
    macs = [man["fixed_subnets"][k]["macs"] for k in man["fixed_subnets"]]
    assert macs == sorted(macs) and macs[0] < macs[-1]
    b = load_bundle(tiny_bundle, space="fmnist-mbv3")
    archs, accs = b.pairs()
    assert len(archs) == man["accuracy"]["pairs"] == 24 and len(set(archs)) == 24
    assert all(0.0 <= a <= 1.0 for a in accs)
    fixed = {b.space.parse(v["arch"]) for v in man["fixed_subnets"].values()}
    assert fixed <= set(archs)  # the fixed subnets are always among the measured pairs
    assert man["accuracy"]["predictor"]["kind"] in ("gp", "mlp") and set(man["accuracy"]["predictor"]["candidates"]) == {"gp", "mlp"}
    pred = b.predictor()
    assert pred.predict_many(archs[:3]).shape == (3,)
    assert isinstance(load_supernet(tiny_bundle), Supernet)


@needs_fmnist
@pytest.mark.slow
def test_tampered_or_foreign_bundles_are_refused(tiny_bundle, tmp_path):
    from hwnas.estimators import load_bundle
    from hwnas.supernet import load_supernet

    bad = tmp_path / "fmnist-mbv3"
    shutil.copytree(tiny_bundle, bad)
    with open(bad / "accuracy_pairs.csv", "a", encoding="utf-8") as f:
        f.write("r20|s1w16:mb_k3_e1|s2w24:mb_k3_e3|s3w40:mb_k3_e3|s4w80:mb_k3_e3|s5w96:mb_k3_e3,0.99,1,5\n")
    with pytest.raises(CheckpointError, match="accuracy_pairs.csv does not match its SHA-256"):
        load_bundle(bad)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_supernet(bad)
    shutil.copyfile(tiny_bundle / "accuracy_pairs.csv", bad / "accuracy_pairs.csv")
    (bad / "metrics.jsonl").unlink()
    with pytest.raises(CheckpointError, match="metrics.jsonl listed in supernet.json is missing"):
        load_bundle(bad)
    with pytest.raises(CheckpointError, match="holds space 'fmnist-mbv3', not the expected space 'fmnist-mixed'"):
        load_bundle(tiny_bundle, space="fmnist-mixed")
    with pytest.raises(CheckpointError, match="not the expected space 'ofa-mbv3'"):
        load_supernet(tiny_bundle, space="ofa-mbv3")
    # a bundle whose folder name is not its space's is refused when named
    renamed = tmp_path / "fmnist-mixed"
    shutil.copytree(tiny_bundle, renamed)
    from hwnas.supernet import checkpoint

    old = checkpoint.BUNDLE_ROOT
    checkpoint.BUNDLE_ROOT = tmp_path  # resolve names under tmp_path for this check
    try:
        with pytest.raises(CheckpointError, match="holds space 'fmnist-mbv3', not 'fmnist-mixed'"):
            load_supernet("fmnist-mixed")
        with pytest.raises(CheckpointError, match="no supernet at 'nope'.*shipped"):
            load_supernet("nope")
    finally:
        checkpoint.BUNDLE_ROOT = old


def test_cli_refuses_bad_bundle_arguments_before_training(tmp_path):
    existing = tmp_path / "b"
    existing.mkdir()
    for extra, needle in ((["--bundle", str(existing)], "already exists"),
                          (["--bundle", str(tmp_path / "new"), "--bundle-pairs", "5"], "--bundle-pairs 5"),
                          (["--bundle", str(tmp_path / "new"), "--predictor-kinds", "gp,svm"], "unknown ['svm']")):
        proc = subprocess.run([sys.executable, "-m", "hwnas", "train", "--schedule", "tiny", "--out", str(tmp_path / "run"),
                               *extra], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "run").exists()  # refused before any work


@needs_fmnist
@pytest.mark.slow
@pytest.mark.skipif(not any(SHIPPED.glob("*/supernet.json")), reason="no shipped bundle in results/supernets yet")
def test_shipped_bundles_verify_and_reproduce_their_fixed_subnet_accuracies():
    """Each shipped bundle loads with its hashes verified, and the 5 fixed subnets' test accuracies
    recomputed from the weights equal the manifest's (to 0.05 points)."""
    from hwnas.data import make_loaders
    from hwnas.estimators import load_bundle
    from hwnas.supernet.bn import evaluate

    for d in sorted(p.parent for p in SHIPPED.glob("*/supernet.json")):
        b = load_bundle(d.name)
        net = b.supernet()
        cfg = b.manifest["config"]
        ld = make_loaders(cfg["dataset"], None, space=net.space, seed=cfg["seed"], search_val=cfg["search_val"])
        calib = ld.calib_images(2000)
        for name, rec in b.manifest["fixed_subnets"].items():
            acc = evaluate(net, net.space.parse(rec["arch"]), ld.test, calib=calib, num_calib=len(calib))
            assert abs(100 * acc - 100 * rec["test_acc"]) <= 0.05, (d.name, name, acc, rec["test_acc"])
