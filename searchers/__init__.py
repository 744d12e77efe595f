"""Multi-objective, hardware-aware architecture search under budgets, and Pareto fronts.

    from hwnas.searchers import search, ParetoFront
    study = search(space, objective_fn, objectives="accuracy,latency_ms@cpu",
                   budgets="latency_ms@cpu<=4", n_trials=1000, sampler="nsga2")
    front = ParetoFront.from_study(study)
    front.pick("latency_ms@cpu<=3").arch

The searchers never import the supernet: an objective is any callable `Arch -> dict[str, float]`,
or a registered provider name (`macs`, `flops`, `analytic`, `predictors`: trained predictors passed in
as options, or ones added by `register_objective_provider`).
Cost units: `macs` are multiply-accumulates, `flops` = 2 x `macs` exactly (docs/search.md).

The room for choosing archs. May import `search_space` (the `Space`, its choice map, the block-kind
registry's closed-form costs), Optuna and Ray; never `supernet`, `estimators` or `kernels`.
"""

from __future__ import annotations

from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers._objectives import (
    BASE_METRICS,
    Objective,
    ObjectiveFn,
    analytic_objective,
    arch_cost,
    check_values,
    make_objective,
    objective_providers,
    parse_objectives,
    register_objective_provider,
)
from hwnas.searchers._optuna import (
    SAMPLERS,
    StudySpec,
    load_study,
    make_sampler,
    study_spec,
)
from hwnas.searchers._predictors_objective import PredictorObjective, predictor_objective
from hwnas.searchers._search import search
from hwnas.searchers._storage import open_storage
from hwnas.searchers.pareto import (
    ParetoFront,
    Pick,
    hypervolume,
    knee_index,
    nondominated_mask,
    pareto_ranks,
)

__all__ = [
    "BASE_METRICS",
    "Budget",
    "Objective",
    "ObjectiveFn",
    "ParetoFront",
    "Pick",
    "PredictorObjective",
    "SAMPLERS",
    "StudySpec",
    "arch_cost",
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
    "predictor_objective",
    "register_objective_provider",
    "search",
    "study_spec",
]


def __getattr__(name: str) -> object:
    if name == "analytic_cost":  # renamed: its `flops` held MACs; say so instead of a bare ImportError
        from hwnas.searchers import _objectives

        return getattr(_objectives, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
