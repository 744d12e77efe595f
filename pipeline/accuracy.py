"""Stage 3, accuracy: (arch, search-val accuracy) pairs through the supernet, each BN-recalibrated
(`<run>/accuracy_samples.csv`, resumable), and the accuracy predictor fitted on them.

A run on a shipped bundle takes both from the bundle (accuracy does not depend on the device):
its pairs are copied to `accuracy_samples.csv` and its predictor, whatever its kind, to
`accuracy_predictor.json`."""

from __future__ import annotations

from typing import Any

from hwnas._io import atomic_write_text
from hwnas.pipeline._stages import jsonable, say
from hwnas.pipeline.context import RunContext

__all__ = ["stage_accuracy", "FirstImages"]


def stage_accuracy(ctx: RunContext) -> dict[str, Any]:
    import pandas as pd
    import torch
    from hwnas.estimators import AccuracyPredictor
    from hwnas.supernet import evaluate
    from tqdm import tqdm

    cfg, space = ctx.cfg, ctx.space
    if ctx.bundle is not None:
        return _from_bundle(ctx)
    net = ctx.supernet()
    loaders = ctx.loaders()
    val = FirstImages(loaders.val, cfg.val_images)
    calib = loaders.calib_images(cfg.calib_images)
    archs = [space.min_arch(), space.max_arch()] + space.sample_many(cfg.accuracy_archs - 2, cfg.seed + 7, unique=True)
    path = ctx.run_dir / "accuracy_samples.csv"
    done: dict[str, float] = {}
    if path.is_file():  # resume: keep the pairs already measured
        prev = pd.read_csv(path)
        done = dict(zip(prev["arch"], prev["val_accuracy"]))
    rows = []
    with torch.no_grad():
        for k, a in enumerate(tqdm(archs, desc="accuracy pairs", disable=not ctx.progress, unit="arch")):
            s = str(a)
            if s not in done:
                done[s] = evaluate(net, a, val, calib=calib, num_calib=len(calib))
                if k % 10 == 9:
                    atomic_write_text(path, pd.DataFrame({"arch": list(done), "val_accuracy": list(done.values())}).to_csv(index=False))
            rows.append((s, done[s]))
    df = pd.DataFrame(rows, columns=["arch", "val_accuracy"])
    atomic_write_text(path, df.to_csv(index=False))
    pred = AccuracyPredictor.fit(space, [space.parse(a) for a in df["arch"]], df["val_accuracy"].to_numpy(), seed=cfg.seed)
    pred.save(ctx.run_dir / "accuracy_predictor.json")
    rep = jsonable(pred.report)
    say(f"    accuracy predictor: {rep}")
    return {"pairs": len(df), "val_images": min(cfg.val_images, loaders.val.num_images), "min_acc": float(df["val_accuracy"].min()),
            "max_acc": float(df["val_accuracy"].max()), "predictor": rep}


def _from_bundle(ctx: RunContext) -> dict[str, Any]:
    import pandas as pd

    b = ctx.pretrained()
    pairs = pd.read_csv(b.path / "accuracy_pairs.csv")
    atomic_write_text(ctx.run_dir / "accuracy_samples.csv", pairs.to_csv(index=False))
    pred = b.predictor()
    pred.save(ctx.run_dir / "accuracy_predictor.json")
    acc = b.manifest.get("accuracy") or {}
    rep = jsonable(pred.report)
    say(f"    accuracy: {len(pairs)} pairs and the {pred.kind!r} predictor of the bundle {b.path.name} "
        f"(held-out: {rep.get('heldout') or rep})")
    return {"pairs": len(pairs), "val_images": b.manifest.get("search_val_images"), "from_bundle": str(b.path),
            "min_acc": float(pairs["val_accuracy"].min()), "max_acc": float(pairs["val_accuracy"].max()),
            "predictor": rep, "kind": pred.kind, "comparison": jsonable(acc.get("predictor") or {})}


class FirstImages:
    """The first n images of an evaluation loader (a deterministic prefix)."""

    def __init__(self, loader: Any, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        seen = 0
        for x, y in self.loader:
            if seen >= self.n:
                break
            take = min(len(y), self.n - seen)
            seen += take
            yield x[:take], y[:take]
