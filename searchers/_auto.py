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

# (most objectives, most trials, sampler): the first row whose bounds hold. From the full
# `benchmarks/search_quality.py` runs (5 seeds, 100-3,000 trials, 2026-12-01; docs/search.md): evo-hvi
# led up to 1,000 trials on both spaces — with 2 objectives (ofa-mbv3, MACs vs a GPU's latency) 0.991 of
# the best-known hypervolume at 300 and 0.997 at 1,000 (evo-gp 0.976 / 0.986, evo 0.955 / 0.977, TPE
# 0.939 / 0.960), with 3 objectives and a budget (fmnist-mbv3, accuracy and two devices' latency under a
# memory budget) 0.983 / 0.998 (TPE 0.942 / 0.981, evo 0.926 / 0.972). Its GP fits cost ~50-75 s per
# 1,000 trials, so beyond that evo (0.986 / 0.994 at 3,000 in ~2 s). NSGA-III's reference points keep 4+
# objectives spread where crowding distance no longer does (not measured).
AUTO_RULE: tuple[tuple[float, float, str], ...] = (
    (3, 1000, "evo-hvi"),
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
