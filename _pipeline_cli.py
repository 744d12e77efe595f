"""`hwnas run` (the main job) and `hwnas export` (a front member as a checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: train, profile, search, export, report (resumable)",
        description="Train the once-for-all supernet, profile this machine's devices, fit predictors, search the "
        "Pareto front under budgets, export the best subnet under three latency budgets with measured metrics, and "
        "write results/runs/<name>/report.md. Each stage is skipped when its outputs match the config, so a re-run "
        "after a crash resumes.",
    )
    p.add_argument("--config", default="configs/fmnist-cpu.yaml", help="run YAML (default: configs/fmnist-cpu.yaml)")
    p.add_argument("--name", help="run name: the directory under results/runs/ (default from the config)")
    p.add_argument("--out-root", help="parent directory of the run (default results/runs)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST *.gz files (default: Debian package, HWNAS_DATA_DIR, download)")
    p.add_argument("--subset", type=int, help="train on only N training images (smoke runs)")
    p.add_argument("--schedule", help="training schedule of the train config (e.g. demo, default, tiny)")
    p.add_argument("--policy", choices=["sandwich", "progressive", "deps"], help="training policy (default from the train config)")
    p.add_argument("--devices", help="comma-separated devices to profile (e.g. cpu,ort-cpu); see `hwnas devices`")
    p.add_argument("--trials", type=int, help="search trials")
    p.add_argument("--sampler", choices=["nsga2", "tpe", "random", "gp"], help="Optuna sampler")
    p.add_argument("--budget", action="append", dest="budgets", metavar="EXPR",
                   help="hard budget, e.g. 'peak_mem_mb@cpu<=3' (repeatable; replaces the config's)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run this stage even if it is up to date (repeatable): train, profile, accuracy, search, pareto, export, report")
    p.add_argument("--stop-after", metavar="STAGE", help="stop after this stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)

    e = sub.add_parser(
        "export",
        help="export a Pareto-front member as a checkpoint with predicted and measured metrics",
        description="Pick a member of a study's Pareto front by a budget (the most accurate one meeting it), extract it "
        "from the trained supernet, recalibrate BN, measure test accuracy and latency on this machine, and write a "
        "checkpoint directory (weights.safetensors, arch.json, optional model.onnx / model.pt).",
    )
    e.add_argument("--study", required=True, help="study name (see report.md or `hwnas pareto`)")
    e.add_argument("--storage", required=True, help="study storage URL, e.g. sqlite:///results/runs/NAME/study.db")
    e.add_argument("--pick", action="append", default=[], metavar="EXPR",
                   help="budget the member must meet, e.g. 'latency_ms@cpu<=3' (repeatable); none: the knee point")
    e.add_argument("--out", required=True, help="checkpoint directory to create (must not exist unless --overwrite)")
    e.add_argument("--supernet", help="trained supernet dir/file (default: the one recorded in the study)")
    e.add_argument("--devices", default="cpu", help="devices to measure latency on (default cpu)")
    e.add_argument("--formats", default="safetensors,onnx", help="safetensors,onnx,torchscript (default safetensors,onnx)")
    e.add_argument("--data-dir", help="Fashion-MNIST folder (for BN recalibration and test accuracy)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    e.set_defaults(func=_export)


def _run(args: argparse.Namespace) -> int:
    from hwnas._pipeline import load_run_config, run

    cfg = load_run_config(
        args.config, name=args.name, out_root=args.out_root, data_dir=args.data_dir, subset=args.subset,
        schedule=args.schedule, policy=args.policy, devices=args.devices, trials=args.trials, sampler=args.sampler,
        budgets=args.budgets,
    )
    try:
        run_dir = run(cfg, force=args.force, stop_after=args.stop_after, progress=not args.no_progress)
    except BaseException:
        print(f"hwnas run: stopped. To resume: hwnas run --config {args.config}"
              + (f" --name {args.name}" if args.name else ""), flush=True)
        raise
    print(f"report: {run_dir / 'report.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from hwnas._pipeline import export_pick
    from hwnas.data import make_loaders
    from hwnas.errors import CheckpointError, ConfigError
    from hwnas.search_space import Space
    from hwnas.searchers import ParetoFront, load_study
    from hwnas.supernet import load_supernet

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CheckpointError(f"export directory {str(out)!r} already exists (pass --overwrite to replace it)")
    study = load_study(args.study, args.storage)
    front = ParetoFront.from_study(study)
    pick = front.pick(args.pick) if args.pick else front.knee()
    supernet_path = args.supernet or study.user_attrs.get("supernet")
    if not supernet_path:
        raise ConfigError("the study records no supernet: pass --supernet PATH (a `hwnas train` output)")
    net = load_supernet(supernet_path).eval()
    space: Space = net.space
    loaders = make_loaders("fashion-mnist", args.data_dir, space=space)
    res = export_pick(supernet=net, space=space, arch=pick.arch, out_dir=out,
                      devices=[d.strip() for d in args.devices.split(",") if d.strip()], loaders=loaders,
                      predicted=pick.metrics, formats=args.formats.split(","), overwrite=args.overwrite,
                      extra={"study": args.study, "trial": pick.trial, "pick": args.pick})
    print(json.dumps(res, indent=2))
    return 0
