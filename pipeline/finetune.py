"""The export stage's optional fine-tuning (`export.finetune_steps` > 0): each exported checkpoint
is fine-tuned in place by distillation from the run's supernet (hwnas.supernet.finetune), on the
run's own training split, and its row in the export summary takes the new test accuracy."""

from __future__ import annotations

from typing import Any

from hwnas.pipeline._stages import say
from hwnas.pipeline.context import RunContext

__all__ = ["finetune_export"]


def finetune_export(ctx: RunContext, res: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune the checkpoint `res["dir"]` (a row of `export_pick`) when the config asks; update `res`."""
    steps = ctx.cfg.finetune_steps
    if not steps:
        return res
    from hwnas.supernet import finetune

    out = finetune(res["dir"], steps=steps, supernet=ctx.supernet(), loaders=ctx.loaders(),
                   calib_images=ctx.cfg.calib_images, seed=ctx.cfg.seed, progress=ctx.progress,
                   teacher_label=str(ctx.run_dir / "supernet"), say=lambda s: say(f"    {s}"))
    res["measured"]["accuracy_before_finetune"] = out.accuracy_before
    res["measured"]["accuracy"] = out.accuracy_after
    res["finetune"] = {"steps": out.steps, "accuracy_before": out.accuracy_before,
                       "accuracy_after": out.accuracy_after, "seconds": round(out.seconds, 1)}
    return res
