"""Supernet bundles: a trained supernet shipped with what does not depend on a device.

Accuracy does not depend on the device, so a bundle carries, beside the weights, the
`(arch, search-val accuracy)` pairs measured through the supernet and the accuracy predictor
fitted on them; every device profile and search afterwards reuses them (train once, specialise
many times). Layout of `results/supernets/<space>/`::

    supernet.safetensors      the weights
    supernet.json             the manifest: space, resolved training config, policy, data split
                              seed, commit, test accuracies of 5 fixed subnets, the predictor's
                              held-out ranking quality, and the SHA-256 of every other file
    metrics.jsonl             the training log
    accuracy_pairs.csv        arch, val_accuracy, macs, depth (BN recalibrated, search-val)
    accuracy_predictor.json   the fitted predictor (+ its .npz arrays)

`make_bundle(run_dir, out)` writes one from a finished `hwnas train` run (atomically: the folder
appears whole or not at all); `load_bundle(name_or_path)` reads one back, hashes verified.

Imports: search_space, supernet, and this package's accuracy and flops modules.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_dir, atomic_write_json, read_json
from hwnas.errors import CheckpointError
from hwnas.search_space import Arch, Space

__all__ = ["Bundle", "make_bundle", "load_bundle", "fixed_subnets", "measure_pairs", "FIXED_SUBNETS"]

FIXED_SUBNETS = ("min", "macs25", "macs50", "macs75", "max")


def fixed_subnets(space: Space, n_pool: int = 4000, seed: int = 2026) -> dict[str, Arch]:
    """min, max and 3 archs whose MACs sit 25/50/75% of the way from the min's to the max's (the
    nearest of a seeded sample): the same 5 subnets for every run and report of a space."""
    from hwnas.estimators.flops import arch_macs

    lo, hi = space.min_arch(), space.max_arch()
    m_lo, m_hi = arch_macs(space, lo), arch_macs(space, hi)
    pool = space.sample_many(n_pool, seed, unique=True)
    macs = [arch_macs(space, a) for a in pool]
    out = {"min": lo}
    for q in (25, 50, 75):
        target = m_lo + q / 100 * (m_hi - m_lo)
        out[f"macs{q}"] = pool[min(range(len(pool)), key=lambda i: abs(macs[i] - target))]
    out["max"] = hi
    return out


def measure_pairs(net: Any, archs: Sequence[Arch], loader: Any, calib: Any, *, progress: bool = True) -> list[float]:
    """Search-val accuracy of each arch through the supernet, BN recalibrated on `calib`."""
    from hwnas.supernet.bn import evaluate

    it: Any = archs
    if progress:
        from tqdm import tqdm

        it = tqdm(archs, desc="accuracy pairs", unit="arch", dynamic_ncols=True)
    return [evaluate(net, a, loader, calib=calib, num_calib=len(calib)) for a in it]


def _commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _select_archs(space: Space, n: int, seed: int) -> list[Arch]:
    """The archs whose accuracy a bundle measures: stratified by MACs and depth, with the 5 fixed
    subnets always among them."""
    from hwnas.estimators.accuracy import stratified_archs

    archs = list(stratified_archs(space, n, seed))
    have = set(archs)
    extra = [a for a in fixed_subnets(space).values() if a not in have]
    return extra + archs[: max(0, n - len(extra))]


def _fit_predictor(space: Space, archs: list[Arch], accs: list[float], out: Path, seed: int,
                   kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Compare the accuracy predictor kinds by held-out rank quality (100 pairs, or 40% of fewer),
    fit the best on all pairs and save it to `out`: the choice is data, recorded in the manifest."""
    from hwnas.estimators.accuracy import best_kind, compare_kinds, fit_best

    res = compare_kinds(space, archs, accs, kinds=kinds, holdout=100, seeds=3)
    chosen = best_kind(res)
    fit_best(res, space, archs, accs, path=out, seed=seed)
    table = {name: {"spearman": r["spearman_summary"]["mean"], "kendall": r["kendall_summary"]["mean"],
                    "fit_s": r["fit_s_summary"]["mean"]} for name, r in res["candidates"].items()}
    proxy = res["macs_proxy"]
    return {"kind": chosen, "heldout_pairs": res["holdout_used"], "splits": res["seeds"],
            "heldout_spearman": table[chosen]["spearman"], "heldout_kendall": table[chosen]["kendall"],
            "candidates": table, "macs_proxy": {"spearman": proxy["spearman_summary"]["mean"],
                                                "kendall": proxy["kendall_summary"]["mean"]}}


def make_bundle(run_dir: str | Path, out: str | Path, *, pairs: int = 500, val_images: int | None = None,
                test_images: int | None = None, calib_images: int = 2000, seed: int = 0, overwrite: bool = False,
                kinds: tuple[str, ...] | None = None, progress: bool = True) -> Path:
    """A bundle at `out` from the finished training run in `run_dir` (supernet.json + weights +
    metrics.jsonl): test accuracies of the 5 fixed subnets, `pairs` measured archs, the predictor.

    `val_images` / `test_images` cap the search-val and test images scored (default: all; smaller
    only for smoke tests: the manifest records the counts). `calib_images`: training images each
    subnet's BN statistics are recalibrated on (`hwnas train --bundle` passes the run's own
    `calib_images`: 2,000 for the shipped schedules, 200 for `tiny`)."""
    from hwnas.data import make_loaders
    from hwnas.estimators.flops import arch_macs
    from hwnas.supernet import load_supernet
    from hwnas.supernet.bn import evaluate
    from hwnas.supernet.checkpoint import BUNDLE_FORMAT, _sha256, versions

    run_dir, out = Path(run_dir), Path(out)
    if pairs < 20:
        raise ValueError(f"pairs={pairs}: a bundle needs at least 20 measured archs (500 or more to rank well)")
    if not (run_dir / "supernet.json").is_file():
        raise CheckpointError(f"{run_dir} holds no finished training run (no supernet.json); train it first")
    if out.exists() and not overwrite:
        raise CheckpointError(f"bundle folder {out} already exists; pass overwrite=True (--overwrite) to replace it")
    meta = read_json(run_dir / "supernet.json")
    cfg = meta.get("config") or {}
    net = load_supernet(run_dir).eval()
    space = net.space
    loaders = make_loaders(cfg.get("dataset", "fashion-mnist"), cfg.get("data_dir"), space=space,
                           seed=cfg.get("seed", 0), search_val=cfg.get("search_val", 5000))
    val, test = loaders.val, loaders.test
    if val_images is not None:
        val.x, val.y = val.x[:val_images], val.y[:val_images]
    if test_images is not None:
        test.x, test.y = test.x[:test_images], test.y[:test_images]
    calib = loaders.calib_images(calib_images)
    t0 = time.perf_counter()
    fixed = fixed_subnets(space)
    fixed_acc = {k: evaluate(net, a, test, calib=calib, num_calib=len(calib)) for k, a in fixed.items()}
    archs = _select_archs(space, pairs, seed)
    accs = measure_pairs(net, archs, val, calib, progress=progress)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        shutil.copyfile(run_dir / "supernet.safetensors", tmp / "supernet.safetensors")
        if (run_dir / "metrics.jsonl").is_file():
            shutil.copyfile(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        with open(tmp / "accuracy_pairs.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["arch", "val_accuracy", "macs", "depth"])
            for a, acc in zip(archs, accs):
                w.writerow([str(a), f"{acc:.6f}", arch_macs(space, a), sum(s.depth for s in a.stages)])
        predictor = _fit_predictor(space, archs, accs, tmp / "accuracy_predictor.json", seed, kinds)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": 1,
            "name": space.name,
            "space": space.to_dict(),
            "config": cfg,
            "policy": cfg.get("policy"),
            "data_split_seed": cfg.get("seed", 0),
            "search_val_images": len(val.y),
            "test_images": len(test.y),
            "calib_images": len(calib),
            "commit": _commit(Path(__file__).resolve().parents[1]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(),
            "train_report": meta.get("report") or {},
            "fixed_subnets": {k: {"arch": str(a), "test_acc": fixed_acc[k], "macs": arch_macs(space, a)}
                              for k, a in fixed.items()},
            "accuracy": {"pairs": len(archs), "mean": float(np.mean(accs)), "predictor": predictor,
                         "measure_seconds": time.perf_counter() - t0},
            "files": files,
        }
        atomic_write_json(tmp / "supernet.json", manifest)
    return out


@dataclass
class Bundle:
    """A loaded bundle: its folder and manifest; the supernet, pairs and predictor on demand."""

    path: Path
    manifest: dict[str, Any]
    _net: Any = field(default=None, repr=False)

    @property
    def space(self) -> Space:
        return Space.from_dict(self.manifest["space"])

    def supernet(self) -> Any:
        from hwnas.supernet import load_supernet

        if self._net is None:
            self._net = load_supernet(self.path, verify=False)  # verified when the bundle was loaded
        return self._net

    def pairs(self) -> tuple[list[Arch], np.ndarray]:
        space = self.space
        with open(self.path / "accuracy_pairs.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [space.parse(r["arch"]) for r in rows], np.array([float(r["val_accuracy"]) for r in rows])

    def predictor(self) -> Any:
        from hwnas.estimators.accuracy import load_accuracy_predictor

        return load_accuracy_predictor(self.path / "accuracy_predictor.json")


def load_bundle(name_or_path: str | Path, *, space: Space | str | None = None) -> Bundle:
    """A shipped bundle by name (`"fmnist-mbv3"`) or path; every file's SHA-256 is checked and a
    bundle of another space than `space` (or than its name) is refused with CheckpointError."""
    from hwnas.supernet.checkpoint import BUNDLE_FORMAT, read_supernet_meta

    d, meta = read_supernet_meta(name_or_path, verify=True, space=space)
    if meta.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{d} is a supernet checkpoint, not a bundle (no pairs or predictor); make one with "
                              f"`hwnas train --config ... --out {d} --bundle DIR`")
    return Bundle(d, meta)
