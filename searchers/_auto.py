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
# `benchmarks/search_quality.py` runs (5 seeds, 100-3,000 trials, 2026-11-30; docs/search.md):
# with 2 objectives (ofa-mbv3, MACs vs a GPU's latency) evo-gp led up to 1,000 trials (0.980 of the
# best-known hypervolume at 300, 0.990 at 1,000; evo 0.959 / 0.981, TPE 0.943 / 0.964) and costs
# ~130 s per 1,000 trials in GP fits, so beyond that evo (0.990 at 3,000 in ~1 s); with 3 objectives
# and a budget (fmnist-mbv3, accuracy and two devices' latency under a memory budget) TPE led up to
# 1,000 trials (0.937 / 0.980; evo-gp 0.923 / 0.967, evo 0.894 / 0.964) and evo at 3,000 (0.990;
# TPE's cost grows with the study: 47 s for 1,000 trials against 2 s). NSGA-III's reference points keep 4+ objectives
# spread where crowding distance no longer does (not measured).
AUTO_RULE: tuple[tuple[float, float, str], ...] = (
    (2, 1000, "evo-gp"),
    (2, math.inf, "evo"),
    (3, 1000, "tpe"),
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
