"""`hwnas run` (the main job) and `hwnas export` (a front member as a checkpoint).

Loaded by file path from `hwnas.cli` (the package `__init__` does not run): no heavy import here
outside the handlers. Choice lists are the code's constants (`hwnas._cli_choices.ChoicesOf`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwnas._cli_choices import TRIALS, ChoicesOf, Int

__all__ = ["register", "RUN_EPILOG", "EXPORT_EPILOG"]

STAGE_CHOICES = ChoicesOf("hwnas.pipeline._stages", "STAGES")
POLICY_CHOICES = ChoicesOf("hwnas.supernet.train", "POLICIES")
SAMPLER_CHOICES = ChoicesOf("hwnas.searchers", "SAMPLERS")
DATASET_CHOICES = ChoicesOf("hwnas.data", "DATASETS")

RUN_EPILOG = """\
examples:
  hwnas run --config configs/fmnist-cpu.yaml                        # the main job on the shipped supernet
  hwnas run --config configs/fmnist-cpu.yaml --retrain --name retrained   # train the supernet too (~1 h)
  hwnas run --config configs/tiny-cpu.yaml --out-root /tmp/runs     # a smoke run on a Fashion-MNIST subset
  hwnas run --config configs/fmnist-cpu.yaml --force search         # re-run the search and what follows
"""

EXPORT_EPILOG = """\
examples (after `hwnas run --config configs/fmnist-cpu.yaml`; its study.db holds one study):
  hwnas export --storage sqlite:///results/runs/fashion-mnist-cpu/study.db --pick "latency_ms@cpu<=3" \\
      --out results/runs/fashion-mnist-cpu/my-subnet
  hwnas export --storage sqlite:///results/runs/fashion-mnist-cpu/study.db --out results/runs/knee --formats safetensors
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: train, profile, search, export, report (resumable)",
        description="Take the shipped once-for-all supernet of the space (results/supernets/<space>/, hash-verified: "
        "its weights, accuracy pairs and accuracy predictor; --retrain trains one instead), profile this machine's "
        "devices, fit predictors, search the Pareto front under budgets, export the best subnet under three latency "
        "budgets with measured metrics, and write results/runs/<name>/report.md. Each stage is skipped when its "
        "outputs match the config, so a re-run after a crash resumes.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="configs/fmnist-cpu.yaml", help="run YAML (default: configs/fmnist-cpu.yaml)")
    p.add_argument("--name", help="run name: the directory under results/runs/ (default from the config)")
    p.add_argument("--out-root", help="parent directory of the run (default results/runs)")
    p.add_argument("--data-dir", help="folder with the dataset files (default: the config's data.data_dir; for "
                   "Fashion-MNIST else HWNAS_DATA_DIR, the Debian package, download)")
    p.add_argument("--subset", type=Int(1, 100_000_000), help="train on only N training images (smoke runs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pretrained", metavar="BUNDLE",
                   help="supernet bundle (name under results/supernets/ or folder) to use instead of training "
                   "(default: the config's train.pretrained; 'auto' = the shipped bundle of the space, if any)")
    g.add_argument("--retrain", action="store_true",
                   help="train the supernet (--schedule, --policy) instead of taking a shipped bundle: about an hour "
                   "on 2 cores with the default schedule, ~5 min with demo")
    p.add_argument("--schedule", help="with --retrain: training schedule of the train config (e.g. demo, default, tiny)")
    p.add_argument("--policy", choices=POLICY_CHOICES, metavar="POLICY",
                   help="training policy, one of %(choices)s (default from the train config)")
    p.add_argument("--devices", help="comma-separated devices to profile (e.g. cpu,ort-cpu); see `hwnas devices`")
    p.add_argument("--trials", type=TRIALS, help=f"search trials, {TRIALS.lo}..{TRIALS.hi}")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, metavar="SAMPLER", help="Optuna sampler, one of %(choices)s")
    p.add_argument("--budget", action="append", dest="budgets", metavar="EXPR",
                   help="hard budget, e.g. 'peak_mem_mb@cpu<=3' (repeatable; replaces the config's)")
    p.add_argument("--force", action="append", default=[], choices=STAGE_CHOICES, metavar="STAGE",
                   help="re-run this stage even if it is up to date, and every stage after it (repeatable): %(choices)s")
    p.add_argument("--stop-after", choices=STAGE_CHOICES, metavar="STAGE", help="stop after this stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)

    e = sub.add_parser(
        "export",
        help="export a Pareto-front member as a checkpoint with predicted and measured metrics",
        description="Pick a member of a study's Pareto front by a budget (the most accurate one meeting it), extract it "
        "from the trained supernet, recalibrate BN, measure test accuracy and latency on this machine, and write a "
        "checkpoint directory (weights.safetensors, arch.json, optional model.onnx / model.pt). The dataset (BN "
        "recalibration, test accuracy) is the run's (the study records its run directory), else the one the "
        "supernet was trained on, else Fashion-MNIST; --dataset / --data-dir override it.",
        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--study", default=None, help="study name (optional when the storage holds one; see report.md or "
                   "`hwnas pareto`)")
    e.add_argument("--storage", required=True, help="study storage URL, e.g. sqlite:///results/runs/NAME/study.db")
    e.add_argument("--pick", action="append", default=[], metavar="EXPR",
                   help="budget the member must meet, e.g. 'latency_ms@cpu<=3' (repeatable); none: the knee point")
    e.add_argument("--out", required=True, help="checkpoint directory to create (must not exist unless --overwrite)")
    e.add_argument("--supernet", help="trained supernet dir/file (default: the one recorded in the study)")
    e.add_argument("--devices", default="cpu", help="devices to measure latency on (default cpu)")
    e.add_argument("--formats", default="safetensors,onnx", help="safetensors,onnx,torchscript (default safetensors,onnx)")
    e.add_argument("--dataset", choices=DATASET_CHOICES, metavar="DATASET",
                   help="dataset for BN recalibration and test accuracy, one of %(choices)s (default: the run's, else "
                   "the supernet's training dataset, else fashion-mnist)")
    e.add_argument("--data-dir", help="folder with the dataset files (default: the run's or the supernet's, when "
                   "the dataset is theirs)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    e.set_defaults(func=_export)


def _run(args: argparse.Namespace) -> int:
    from hwnas.pipeline import load_run_config, run

    cfg = load_run_config(
        args.config, name=args.name, out_root=args.out_root, data_dir=args.data_dir, subset=args.subset,
        schedule=args.schedule, policy=args.policy, devices=args.devices, trials=args.trials, sampler=args.sampler,
        budgets=args.budgets, pretrained=args.pretrained, retrain=args.retrain,
    )
    try:
        run_dir = run(cfg, force=args.force, stop_after=args.stop_after, progress=not args.no_progress)
    except BaseException:
        print(f"hwnas run: stopped. To resume: hwnas run --config {args.config}"
              + (f" --name {args.name}" if args.name else ""), flush=True)
        raise
    print(f"report: {run_dir / 'report.md'}")
    return 0


def recorded_data(run_dir: str | None, supernet_path: str | Path) -> tuple[str, str | None]:
    """(dataset, data_dir) a front member is exported with when no flag says: the run's config
    (`<run>/config.json`), else the supernet's training config (`supernet.json`), else Fashion-MNIST."""
    import json

    from hwnas._io import read_json

    def read(p: Path, *keys: str) -> dict[str, Any] | None:
        try:
            d: Any = read_json(p)
        except (OSError, json.JSONDecodeError):
            return None
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d if isinstance(d, dict) and d.get("dataset") else None

    sp = Path(supernet_path)
    for rec in (read(Path(run_dir) / "config.json") if run_dir else None,
                read((sp if sp.is_dir() else sp.parent) / "supernet.json", "config")):
        if rec is not None:
            return str(rec["dataset"]), rec.get("data_dir") or None
    return "fashion-mnist", None


def _export(args: argparse.Namespace) -> int:
    import json

    from hwnas.data import make_loaders
    from hwnas.errors import CheckpointError, ConfigError
    from hwnas.pipeline import export_pick
    from hwnas.search_space import Space
    from hwnas.searchers import ParetoFront, load_study
    from hwnas.supernet import load_supernet

    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise CheckpointError(f"export directory {str(out)!r} already exists (pass --overwrite to replace it)")
    # Everything a flag can get wrong is checked here, before the study, the supernet and the
    # tens of seconds of extraction, BN recalibration and measurement.
    formats, devices = _export_formats(args.formats), _export_devices(args.devices)
    check_writable(out, "--out")
    if args.supernet:
        from hwnas.supernet.checkpoint import resolve_supernet

        resolve_supernet(args.supernet)
    study = load_study(args.study, args.storage)
    front = ParetoFront.from_study(study)
    pick = front.pick(args.pick) if args.pick else front.knee()
    supernet_path = args.supernet or study.user_attrs.get("supernet")
    if not supernet_path:
        raise ConfigError("the study records no supernet: pass --supernet PATH (a `hwnas train` output)")
    net = load_supernet(supernet_path).eval()
    space: Space = net.space
    dataset, data_dir = recorded_data(study.user_attrs.get("run_dir"), supernet_path)
    if args.dataset is not None and args.dataset != dataset:
        dataset, data_dir = args.dataset, None  # the recorded folder holds the recorded dataset
    loaders = make_loaders(dataset, args.data_dir or data_dir, space=space)
    res = export_pick(supernet=net, space=space, arch=pick.arch, out_dir=out,
                      devices=devices, loaders=loaders,
                      predicted=pick.metrics, formats=formats, overwrite=args.overwrite,
                      extra={"study": study.study_name, "trial": pick.trial, "pick": args.pick})
    print(json.dumps(res, indent=2))
    return 0


def _export_formats(text: str) -> list[str]:
    from hwnas.errors import CheckpointError
    from hwnas.supernet.checkpoint import FORMATS

    fmts = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise CheckpointError(f"--formats {text!r}: unknown format(s) {bad}; allowed: {list(FORMATS)}")
    return fmts


def _export_devices(text: str) -> list[str]:
    from hwnas.errors import ConfigError
    from hwnas.estimators.devices import Device

    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise ConfigError(f"--devices {text!r}: name at least one device (see `hwnas devices`)")
    for n in names:
        try:
            Device.from_name(n)
        except ValueError as e:
            raise ConfigError(f"--devices {text!r}: {e}") from None
    return names


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be created, before any work: its nearest existing
    ancestor must be a folder this process can create entries in (probed by making and removing
    a temporary folder there, which /proc, a read-only mount or a file in the way all refuse)."""
    import os
    import tempfile

    from hwnas.errors import ConfigError

    anc = path.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{flag} {str(path)!r}: {str(anc)!r} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hwnas-probe-", dir=anc))
    except OSError as e:
        raise ConfigError(f"{flag} {str(path)!r}: cannot create it in {str(anc)!r} ({e.strerror or e})") from None
