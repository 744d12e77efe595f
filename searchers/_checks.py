"""Checks of a search's inputs that run before a study is created (a refused search leaves nothing behind)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hwnas.errors import ConfigError
from hwnas.search_space import Space
from hwnas.searchers._budgets import Budget, check_satisfiable
from hwnas.searchers._objectives import Objective, arch_cost, check_provided

__all__ = ["check_search_inputs", "MAX_TRIALS", "MAX_SEED"]

MAX_TRIALS = 10_000_000  # the CLI's --trials range too (hwnas._cli_choices.TRIALS)
MAX_SEED = 2**32 - 1  # what numpy and Optuna's samplers accept


def check_search_inputs(space: Space, providers: str | Sequence[str] | None, objs: Sequence[Objective],
                        buds: Sequence[Budget], n_trials: Any, seed: Any, population_size: Any,
                        warm_start: Sequence[Any]) -> None:
    """Refuse what would fail every trial, never end, or reach a library as a traceback.

    `providers` is None for a user's callable (whose metrics are unknown until it runs).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_TRIALS:
        raise ConfigError(f"n_trials={n_trials!r} must be an int in 1..{MAX_TRIALS}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ConfigError(f"seed={seed!r} must be None or an int in 0..2**32-1")
    if population_size is not None and (isinstance(population_size, bool) or not isinstance(population_size, int)
                                        or population_size < 2):
        raise ConfigError(f"population_size={population_size!r} must be an int >= 2 (NSGA-II/III need two parents)")
    if len(warm_start) > n_trials:
        # Optuna runs enqueued trials first: the ones beyond n_trials would be dropped without a word.
        raise ConfigError(f"{len(warm_start)} warm-start archs but n_trials={n_trials}: only the first {n_trials} "
                          f"would run; raise the trial count to at least {len(warm_start)} or pass fewer")
    if providers is not None:
        check_provided(providers, [o.name for o in objs], "objective")
        check_provided(providers, [b.metric for b in buds], "budget on")
    # The analytic costs are monotone in every choice: the min / max arch bound them exactly.
    floor, ceiling = arch_cost(space, space.min_arch()), arch_cost(space, space.max_arch())
    check_satisfiable(buds, floor, ceiling)
