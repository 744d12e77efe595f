"""The main job: from nothing to a measured Pareto front with exported subnets, in one command.

    hwnas run --config configs/fmnist-cpu.yaml

    from hwnas.pipeline import load_run_config, run
    run_dir = run(load_run_config("configs/tiny-cpu.yaml", out_root="/tmp/runs"))

Stages (each writes its outputs under `results/runs/<name>/` and a stamp in `stages/`; a re-run
skips a stage whose stamp matches the config, so a crash or Ctrl-C resumes where it stopped):

1. train     once-for-all supernet (hwnas.supernet.train), demo schedule by default
2. profile   each device's lookup table + whole-network timings -> latency predictors
3. accuracy  (arch, search-val accuracy) pairs from the supernet (BN recalibrated) -> accuracy predictor
4. search    multi-objective Optuna study (sqlite in the run directory) under the budgets, over the
             `predictors` objective provider of hwnas.searchers
5. pareto    the search re-measured: up to `search.refine` distinct archs by Pareto rank (the
             predicted front first) scored on search-val through the supernet like the pairs;
             the final front (pareto.csv, pareto.png) is taken over those and the pairs, with
             measured search-val accuracy and predicted latency/memory/energy (candidates.csv)
6. export    the best subnet under each of three latency budgets: extracted, BN recalibrated,
             test accuracy and latency MEASURED, written as checkpoints with predicted and measured
             metrics side by side
7. report    report.md and predicted_vs_measured.png

What this room is for: wiring the five components into the main job and its outputs. It is the
only room that may import all of them (search_space, supernet, estimators, searchers, data);
nothing imports the pipeline but the `hwnas` CLI, the tests and the benchmarks that re-read a
finished run. Heavy imports (torch, optuna, pandas) stay inside
the functions so that `hwnas --help` and reading a config stay quick.

Rooms: `config` (RunConfig, the YAML schema), `context` (RunContext: what the stages share),
`_stages` (stage order and stamps), one module per stage (`train`, `profile`, `accuracy`, `search`,
`pareto`, `export`, `report`), `plots` (the two figures), `runner` (`run`), `cli` (`hwnas run`,
`hwnas export`).
"""

from __future__ import annotations

from hwnas.pipeline._stages import STAGES
from hwnas.pipeline.config import RunConfig, load_run_config
from hwnas.pipeline.context import RunContext
from hwnas.pipeline.export import auto_latency_budgets, export_pick
from hwnas.pipeline.pareto import final_front, study_front
from hwnas.pipeline.runner import run
from hwnas.pipeline.search import search_objective, study_storage

__all__ = [
    "STAGES",
    "RunConfig",
    "RunContext",
    "auto_latency_budgets",
    "export_pick",
    "final_front",
    "load_run_config",
    "run",
    "search_objective",
    "study_front",
    "study_storage",
]
