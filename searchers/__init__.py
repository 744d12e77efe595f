"""Multi-objective, hardware-aware architecture search under budgets, and Pareto fronts.

    from hwnas.searchers import search, ParetoFront
    study = search(space, objective_fn, objectives="accuracy,latency_ms@cpu",
                   budgets="latency_ms@cpu<=4", n_trials=1000, sampler="nsga2")
    front = ParetoFront.from_study(study)
    front.pick("latency_ms@cpu<=3").arch

The searchers never import the supernet: an objective is any callable `Arch -> dict[str, float]`,
or a registered provider name (`flops`, `analytic`, or ones added by `register_objective_provider`).

The names below load on first use (PEP 562), so `import hwnas.searchers` and the `hwnas` CLI
start without importing torch, triton or optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BASE_METRICS": ("hwnas.searchers._objectives", "BASE_METRICS"),
    "Budget": ("hwnas.searchers._budgets", "Budget"),
    "Objective": ("hwnas.searchers._objectives", "Objective"),
    "ObjectiveFn": ("hwnas.searchers._objectives", "ObjectiveFn"),
    "ParetoFront": ("hwnas.searchers.pareto", "ParetoFront"),
    "Pick": ("hwnas.searchers.pareto", "Pick"),
    "SAMPLERS": ("hwnas.searchers._optuna", "SAMPLERS"),
    "StudySpec": ("hwnas.searchers._optuna", "StudySpec"),
    "analytic_cost": ("hwnas.searchers._objectives", "analytic_cost"),
    "analytic_objective": ("hwnas.searchers._objectives", "analytic_objective"),
    "check_values": ("hwnas.searchers._objectives", "check_values"),
    "hypervolume": ("hwnas.searchers.pareto", "hypervolume"),
    "knee_index": ("hwnas.searchers.pareto", "knee_index"),
    "load_study": ("hwnas.searchers._optuna", "load_study"),
    "make_objective": ("hwnas.searchers._objectives", "make_objective"),
    "make_sampler": ("hwnas.searchers._optuna", "make_sampler"),
    "nondominated_mask": ("hwnas.searchers.pareto", "nondominated_mask"),
    "objective_providers": ("hwnas.searchers._objectives", "objective_providers"),
    "open_storage": ("hwnas.searchers._storage", "open_storage"),
    "pareto_ranks": ("hwnas.searchers.pareto", "pareto_ranks"),
    "parse_budgets": ("hwnas.searchers._budgets", "parse_budgets"),
    "parse_objectives": ("hwnas.searchers._objectives", "parse_objectives"),
    "register_objective_provider": ("hwnas.searchers._objectives", "register_objective_provider"),
    "search": ("hwnas.searchers._optuna", "search"),
    "study_spec": ("hwnas.searchers._optuna", "study_spec"),
}

__all__ = [
    "BASE_METRICS",
    "Budget",
    "Objective",
    "ObjectiveFn",
    "ParetoFront",
    "Pick",
    "SAMPLERS",
    "StudySpec",
    "analytic_cost",
    "analytic_objective",
    "check_values",
    "hypervolume",
    "knee_index",
    "load_study",
    "make_objective",
    "make_sampler",
    "nondominated_mask",
    "objective_providers",
    "open_storage",
    "pareto_ranks",
    "parse_budgets",
    "parse_objectives",
    "register_objective_provider",
    "search",
    "study_spec",
]


def __getattr__(name: str) -> Any:
    try:
        mod, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
