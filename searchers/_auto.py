"""`--sampler auto`: a concrete sampler chosen by trial budget and objective count.

The rule is a table, so the benchmark that decides it (`benchmarks/search_quality.py`, which
prints the best sampler per budget) changes data, not code. docs/search.md carries the same
table with the figures behind it.
"""

from __future__ import annotations

import logging
import math

from hwnas.errors import ConfigError

__all__ = ["AUTO_RULE", "resolve_sampler"]

log = logging.getLogger("hwnas.searchers")

# (most objectives, most trials, sampler): the first row whose bounds hold. Provisional: set from
# the quick benchmark and the earlier TPE/NSGA-II figures (docs/search.md) until the full
# `benchmarks/search_quality.py` run (evo, nsga2, tpe, random at 100-3,000 trials) fills them.
# TPE is strongest at small budgets but its cost grows with the study, NSGA-III's reference
# points keep many objectives spread where crowding distance no longer does.
AUTO_RULE: tuple[tuple[float, float, str], ...] = (
    (3, 300, "tpe"),
    (3, math.inf, "evo"),
    (math.inf, math.inf, "nsga3"),
)


def resolve_sampler(name: str, *, n_trials: int | None, n_objectives: int) -> str:
    """`name` itself, or for `auto` the sampler `AUTO_RULE` gives for the budget (logged at INFO)."""
    if name != "auto":
        return name
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"sampler 'auto' picks by the trial budget: n_trials={n_trials!r} must be an int >= 1")
    if isinstance(n_objectives, bool) or not isinstance(n_objectives, int) or n_objectives < 1:
        raise ConfigError(f"n_objectives={n_objectives!r} must be an int >= 1")
    for most_objectives, most_trials, sampler in AUTO_RULE:
        if n_objectives <= most_objectives and n_trials <= most_trials:
            log.info("sampler auto -> %s (%d objective(s), %d trials; the table in searchers/_auto.py)",
                     sampler, n_objectives, n_trials)
            return sampler
    raise AssertionError("AUTO_RULE's last row must hold for every budget")
