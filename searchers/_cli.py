"""`hwnas search` and `hwnas pareto`: multi-objective search under budgets, and front queries."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from hwnas._cli_choices import POPULATION, SEED, TOP, TRIALS, WORKERS, ChoicesOf

SAMPLER_CHOICES = ChoicesOf("hwnas.searchers", "SAMPLERS")

SEARCH_EPILOG = """\
objectives: accuracy (max), latency_ms@DEV, peak_mem_mb@DEV, energy_mj@DEV, flops, params (min);
  add :max / :min to override a direction (e.g. params:max as a capacity stand-in for accuracy).
budgets: METRIC<=VALUE or METRIC>=VALUE, e.g. "latency_ms@cpu<=4", "params<=1e6", "flops<5M".
storage: sqlite:///PATH, postgresql://..., a journal file (*.log / *.journal), or none (in memory).
examples:
  hwnas search --space fmnist-mbv3 --objective flops --objective params:max --budget "params<=6e5" \\
      --trials 1000 --storage sqlite:///results/runs/search.db --study demo-small --generation
                                                     one process, the study written in bulk (seconds)
  hwnas search ... --workers 2                       two processes share the study (trial by trial)
  hwnas search ... --ray-address auto --workers 4    Ray Tune trials on a running cluster
  hwnas search ... --resume                          continue a stopped search (same --trials total)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="multi-objective architecture search under hardware budgets",
        description="Search a space for Pareto-optimal archs with Optuna (in process, several processes on "
        "one storage) or Ray Tune, under hard budgets.",
        epilog=SEARCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", default="fmnist-mbv3", help="preset name or space YAML (default fmnist-mbv3)")
    p.add_argument("--objective", action="append", metavar="METRIC",
                   help="objective to optimise (repeat or comma-separate; default: flops,params:max)")
    p.add_argument("--budget", action="append", default=[], metavar="EXPR", help="hard budget, e.g. 'latency_ms@cpu<=4' (repeatable)")
    p.add_argument("--provider", default="flops", metavar="NAME[,NAME]",
                   help="objective provider(s) computing the metrics (default flops: analytic MACs/params; "
                   "'analytic': test function f1/f2; see --list-providers)")
    p.add_argument("--list-providers", action="store_true", help="list objective providers and exit")
    p.add_argument("--supernet", default=None, metavar="BUNDLE_OR_RUN",
                   help="search the main job's objective (the 'predictors' provider): the accuracy predictor of this "
                   "bundle (path or name) or run directory, with --profile; default objectives then: accuracy and "
                   "latency_ms@DEVICE of each profile")
    p.add_argument("--profile", action="append", default=[], metavar="DIR",
                   help="a device's profile directory (latency_predictor.json; a run's profiles/DEVICE/), with "
                   "--supernet: latency_ms, peak_mem_mb and energy_mj @DEVICE (repeatable)")
    p.add_argument("--trials", type=TRIALS, default=200, metavar="N",
                   help=f"total COMPLETE trials the study should hold, {TRIALS.lo}..{TRIALS.hi} (default 200)")
    p.add_argument("--sampler", default="nsga2", choices=SAMPLER_CHOICES, metavar="SAMPLER",
                   help="Optuna sampler, one of %(choices)s (default nsga2; auto picks by --trials and the "
                   "number of objectives, docs/search.md)")
    p.add_argument("--population-size", type=POPULATION, default=None, metavar="N",
                   help=f"NSGA-II/III and evo population, {POPULATION.lo}..{POPULATION.hi} (default 50; evo 20; evo-hvi 60 with 3+ objectives)")
    p.add_argument("--seed", type=SEED, default=0, help="sampler seed, 0..2**32-1 (default 0)")
    p.add_argument("--storage", default=None, metavar="URL", help="Optuna storage (default: in memory, lost at exit)")
    p.add_argument("--study", default=None, metavar="NAME", help="study name (default hwnas-SPACE)")
    p.add_argument("--workers", type=WORKERS, default=1, metavar="N", help="processes (or concurrent Ray trials) (default 1)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="run on Ray: 'auto', HOST:PORT, or 'local' for a local instance")
    p.add_argument("--resources", default=None, metavar="K=V[,K=V]",
                   help="with --ray-address: Ray resources per trial (default cpu=1)")
    p.add_argument("--ray-storage-path", default=None, metavar="DIR", help="with --ray-address: Ray Tune results directory (default results/runs/ray)")
    p.add_argument("--resume", action="store_true", help="continue an existing study (completed trials are kept)")
    p.add_argument("--warm-start", action="append", default=[], metavar="ARCH", help="arch string, 'min' or 'max' to try first (repeatable)")
    p.add_argument("--top", type=TOP, default=10, metavar="K", help="front rows to print at the end (default 10)")
    p.add_argument("--format", default="table", choices=["table", "csv", "json"],
                   help="how to print the front at the end, as `hwnas pareto` does (default table)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--generation", action="store_true",
                   help="score a generation at a time in memory and write it to --storage in bulk (every 1,000 trials "
                   "or 10 s and at the end; one process only: no other search may share the study). Default without "
                   "--storage")
    g.add_argument("--trial-by-trial", action="store_true",
                   help="write each trial to the storage as it ends; the default with --storage, where other "
                   "processes may share the study")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)

    q = sub.add_parser(
        "pareto", help="query the Pareto front of a study",
        description="Print the constrained Pareto front of a stored study (arch strings and metrics), "
        "optionally under extra budgets; plot it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  hwnas pareto --study demo --storage sqlite:///results/runs/search.db "
        "--budget 'flops<=3e6' --sort flops --top 5 --format json",
    )
    q.add_argument("--study", default=None, metavar="NAME", help="study name (optional when the storage holds one)")
    q.add_argument("--storage", required=True, metavar="URL", help="sqlite:///PATH, postgresql://..., or a journal file")
    q.add_argument("--budget", action="append", default=[], metavar="EXPR", help="extra budget to filter by (repeatable)")
    q.add_argument("--sort", default=None, metavar="METRIC", help="sort by this metric (default: first objective, best first)")
    q.add_argument("--top", type=TOP, default=None, metavar="K", help="print only the first K rows")
    q.add_argument("--format", default="table", choices=["table", "csv", "json"], help="default table")
    one = q.add_mutually_exclusive_group()  # a knee and a pick are two different answers: ask for one
    one.add_argument("--knee", action="store_true", help="print only the knee point")
    one.add_argument("--pick", default=None, metavar="EXPR", help="print the one member picked under these budgets")
    q.add_argument("--plot", default=None, metavar="PATH", help="also draw the front to PATH (.png or .svg)")
    q.add_argument("--predicted", action="store_true",
                   help="a `hwnas run` study: its search's own (predicted) values instead of its re-measured front, "
                   "which is shown and picked from by default")
    q.set_defaults(func=_pareto)


def _parse_resources(s: str) -> dict[str, float]:
    from hwnas.errors import ConfigError

    out: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in s.split(","))):
        k, sep, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"--resources {s!r}: {part!r} is not NAME=NUMBER") from None
        if not sep or not k.strip():
            raise ConfigError(f"--resources {s!r}: {part!r} is not NAME=NUMBER")
    return out


def _search(args: argparse.Namespace) -> int:
    from hwnas.searchers import ParetoFront, objective_providers, search
    from hwnas.searchers._storage import redact_url  # a password in a database URL is not printed

    if args.list_providers:
        for name, (metrics, help_) in objective_providers().items():
            print(f"{name:12s} metrics {','.join(metrics) or 'any'}: {help_}")
        return 0
    from hwnas.errors import ConfigError

    objective_fn: Any = args.provider
    objectives = ",".join(args.objective) if args.objective else "flops,params:max"
    if args.supernet is not None or args.profile:
        from hwnas.pipeline.search import predictors_objective
        from hwnas.search_space import Space

        if args.supernet is None:
            raise ConfigError("--profile needs --supernet BUNDLE_OR_RUN (where the accuracy predictor comes from)")
        space = Space.from_yaml(args.space) if args.space.endswith((".yaml", ".yml")) else Space.preset(args.space)
        objective_fn = predictors_objective(space, args.supernet, args.profile)
        args.space = space
        if not args.objective:
            objectives = ",".join(["accuracy", *(f"latency_ms@{d}" for d in objective_fn.latency)])
    if args.sampler == "auto":
        from hwnas.searchers import parse_objectives
        from hwnas.searchers._auto import resolve_sampler

        args.sampler = resolve_sampler("auto", n_trials=args.trials, n_objectives=len(parse_objectives(objectives)))
        print(f"sampler auto -> {args.sampler} ({args.trials} trials; the table in docs/search.md)", file=sys.stderr)
    runner = "ray" if args.ray_address else "optuna"
    for flag, value in (("--resources", args.resources), ("--ray-storage-path", args.ray_storage_path)):
        if value is not None and runner != "ray":
            raise ConfigError(f"{flag} applies to Ray trials only: add --ray-address (auto, HOST:PORT or local) or drop it")
    resources = _parse_resources(args.resources or "cpu=1")
    if (args.storage or "").startswith("sqlite:///") and not args.storage.startswith("sqlite:////"):
        # Three slashes then a path is relative to here: `sqlite:///tmp/x.db` is ./tmp/x.db, not /tmp/x.db.
        from pathlib import Path

        where = Path(args.storage[len("sqlite:///"):]).expanduser().absolute()
        print(f"storage file: {where}", file=sys.stderr)
    if runner == "ray" and args.storage:
        # If the Ray head goes away, Ray ends this process itself (no exception reaches us to print
        # the resume command then), so say it up front.
        cmd = [redact_url(a) for a in ["hwnas", *(a for a in sys.argv[1:] if a != "--resume"), "--resume"]]
        print(f"trials are stored in {redact_url(args.storage)}; if the Ray cluster goes away, resume with:\n  "
              f"{shlex.join(cmd)}",
              file=sys.stderr, flush=True)
    try:
        study = search(
            args.space, objective_fn, objectives=objectives, budgets=args.budget, n_trials=args.trials,
            sampler=args.sampler, seed=args.seed, storage=args.storage, study_name=args.study, runner=runner,
            workers=args.workers, ray_address=None if args.ray_address == "local" else args.ray_address,
            resources_per_trial=resources, resume=args.resume,
            warm_start=args.warm_start, population_size=args.population_size,
            ray_storage_path=args.ray_storage_path, progress=not args.no_progress,
            # with a storage another process may share the study: trial by trial unless --generation
            generation=True if args.generation else False if (args.trial_by_trial or args.storage) else None,
        )
    except KeyboardInterrupt:
        if args.storage:
            cmd = [redact_url(a) for a in ["hwnas", *(a for a in sys.argv[1:] if a != "--resume"), "--resume"]]
            print(f"interrupted; completed trials are stored. Resume with:\n  {shlex.join(cmd)}", file=sys.stderr)
        raise
    front = ParetoFront.from_study(study)
    rows = front.rows(top=args.top)
    if args.format == "table":
        print(f"study {study.study_name!r}: {len(front)} complete trials, {int(front.feasible().sum())} feasible, "
              f"{int(front.front_mask().sum())} distinct archs on the front")
    _print_front(front, rows, (), args.format)
    return 0


def _pareto(args: argparse.Namespace) -> int:
    import json

    from hwnas.searchers import ParetoFront

    if args.plot:
        _check_plot_path(args.plot)
    front = ParetoFront.load(args.study, args.storage, measured=False if args.predicted else None)
    if args.knee or args.pick:
        p = front.knee(args.budget) if args.knee else front.pick(list(args.budget) + [args.pick])
        d = p.to_dict()
        if args.format == "json":
            print(json.dumps(d, indent=2))
        else:
            _print_rows([{"trial": p.trial, "trials": list(p.trials), "arch": p.arch, **d["metrics"]}], args.format)
        return 0
    rows = front.rows(args.budget, sort=args.sort, top=args.top)
    if args.plot:
        from hwnas.searchers.plots import draw_front, front_record

        draw_front(front_record(front, budgets=args.budget), args.plot)
    _print_front(front, rows, args.budget, args.format)
    return 0


def _print_front(front: Any, rows: list[dict[str, Any]], budgets: Any, fmt: str) -> None:
    """Front rows as a table, CSV, or one JSON document that also says what the values are."""
    import json

    if fmt != "json":
        _print_rows(rows, fmt)
        return
    doc = {"study": front.study_name, "values": front.view,
           "objectives": [front.label(o.name) + o.spec()[len(o.name):] for o in front.objectives],
           "budgets": [str(b) for b in front.budgets] + list(budgets),
           # the re-measured view holds candidates (distinct archs), not trials
           ("n_candidates" if front.view == "measured" else "n_trials"): len(front),
           "n_feasible": int(front.feasible(budgets).sum())}
    if front.sources:
        doc["sources"] = dict(front.sources)
    doc["front"] = rows
    print(json.dumps(doc, indent=2))


def _check_plot_path(plot: str) -> None:
    """Refuse a --plot path that cannot take the drawing, before the study is read."""
    from pathlib import Path

    from hwnas.errors import ConfigError

    p = Path(plot)
    if p.is_dir():
        raise ConfigError(f"--plot {plot!r} is a directory; give a file name ending in .png or .svg")
    if p.suffix.lower() not in ("", ".png", ".svg", ".pdf"):  # what plots._save writes (no suffix: PNG)
        raise ConfigError(f"--plot {plot!r}: suffix {p.suffix!r} not supported; use .png, .svg or .pdf")
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"--plot {plot!r}: {str(anc)!r} is a file, not a folder")


def _print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    import csv

    if not rows:
        print("(no trial meets the budgets)" if fmt == "table" else "", end="\n" if fmt == "table" else "")
        return
    keys = list(rows[0])
    if fmt == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=keys)
        w.writeheader()
        w.writerows({k: _fmt(v, "csv") if isinstance(v, (list, tuple)) else v for k, v in r.items()} for r in rows)
        return
    cells = [[_fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _fmt(v: Any, fmt: str = "table") -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):  # an arch's trial numbers: all in CSV, the first few in a table
        if fmt == "csv":
            return ";".join(str(x) for x in v)
        return ",".join(str(x) for x in v[:3]) + (f" (+{len(v) - 3})" if len(v) > 3 else "")
    return str(v)
