"""No trial on an arch the study already holds: a sampler wrapper that re-draws repeats.

Many parameter maps give one arch (a slot past its stage's depth is not used), and a converged
NSGA-II or TPE proposes the same few archs again and again: the main job's 1,000-trial study held 6
distinct archs on its front. `DedupSampler` wraps any Optuna sampler and proposes every choice of
the space in `sample_relative` (so the whole arch is known before the trial runs): a proposal
whose arch the study holds is drawn again from the wrapped sampler (its random state has moved),
up to `redraws` times, then replaced by a random arch the study does not hold. Being a sampler, it
works on every runner: in process, worker processes on one storage, Ray Tune. (This module imports Optuna: import it where a search starts, not at package import.)

`HeldArchs` is what "holds" means: the `arch` user attribute of every COMPLETE, RUNNING or
WAITING trial, and of FAIL trials whose objective failed on that arch (evaluating it again fails
again); trials failed as interrupted by a killed search are not held (their arch was never
evaluated). It is read incrementally from the storage (other workers' trials included) and the
archs this process proposed are added as it proposes them. Two workers proposing the same arch in
the same instant are caught after the ask (`claim`): the later trial is given back. "Later" is the
trial number, so a claim first waits (up to `CLAIM_WAIT_S`) for every lower-numbered running trial
of another worker to record its arch: without the wait, trial 12 could claim before trial 11 recorded
the same arch, each would see itself as the first holder, and both would run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from hwnas.search_space import Space
from hwnas.searchers._optuna_internals import (
    enqueued_params,
    random_batch_drawer,
    trial_archs_since,
)
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler

__all__ = ["DedupSampler", "HeldArchs", "MAX_REDRAWS"]

log = logging.getLogger("hwnas.searchers")

# Proposals drawn again from the wrapped sampler before a random unseen arch is taken instead.
MAX_REDRAWS = 16
# Random draws tried for an unseen arch before enumerating the space (only spaces this small).
_RANDOM_TRIES = 64
_ENUMERATE_LIMIT = 200_000
_NOT_HELD_ERRORS = ("interrupted", "surplus")
# Seconds a claim waits for lower-numbered trials of other workers to record their arch; a trial
# still without one then (its process died between the ask and the record) is not waited for again.
CLAIM_WAIT_S = 10.0


class HeldArchs:
    """The archs a study holds, each with the smallest trial number holding it."""

    def __init__(self, space: Space):
        self.space = space
        self.owner: dict[str, int] = {}
        self._next = 0  # trials numbered below this were read (except `_pending` ones)
        self._size: int | None = None
        self.mine: set[int] = set()  # trial numbers this process proposed (their arch is known here)
        self._archless: list[int] = []  # running trials without an arch at the last refresh
        self._stuck: set[int] = set()  # archless trials a claim waited for in vain

    def __len__(self) -> int:
        return len(self.owner)

    def __contains__(self, arch: str) -> bool:
        return arch in self.owner

    @property
    def space_size(self) -> int:
        if self._size is None:
            self._size = int(self.space.size())
        return self._size

    def exhausted(self) -> bool:
        """Whether the study holds every arch of the space."""
        return len(self.owner) >= self.space_size

    def propose(self, arch: str, number: int) -> None:
        """This process proposed `arch` for trial `number`."""
        self.mine.add(number)
        self.add(arch, number)

    def add(self, arch: str, number: int) -> None:
        if number < self.owner.get(arch, number + 1):
            self.owner[arch] = number

    def refresh(self, study: Any) -> None:
        """Read the trials added (or given an arch) since the last refresh."""
        rows = trial_archs_since(study, self._next)
        pending = None
        self._archless = []
        for number, state, arch, error in rows:
            if arch is None:
                if state in ("RUNNING", "WAITING"):
                    self._archless.append(number)
                    if pending is None:
                        pending = number  # its arch is set in a moment: read it again next time
                continue
            if state == "FAIL" and isinstance(error, str) and error.startswith(_NOT_HELD_ERRORS):
                continue
            self.add(arch, number)
        if rows:
            self._next = pending if pending is not None else rows[-1][0] + 1

    def claim(self, study: Any, arch: str, number: int) -> int | None:
        """After trial `number` recorded `arch`: None when it is the arch's first holder, else the
        number of the trial that holds it (another worker asked in the same instant)."""
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            self.refresh(study)
            waiting = [n for n in self._archless if n < number and n not in self.mine and n not in self._stuck]
            if not waiting:
                break
            if time.monotonic() > deadline:
                log.warning("trial(s) %s recorded no arch in %.0f s; not waiting for them again", waiting, CLAIM_WAIT_S)
                self._stuck.update(waiting)
                break
            time.sleep(0.005)
        self.add(arch, number)
        first = self.owner[arch]
        return None if first == number else first

    def unseen(self, rng: random.Random) -> Any | None:
        """A random arch of the space the study does not hold; None when there is none."""
        for _ in range(_RANDOM_TRIES):
            a = self.space.sample(rng)
            if a.to_string() not in self.owner:
                return a
        if self.space_size > _ENUMERATE_LIMIT:
            return None  # a space this large is not exhausted by a search; the proposal stays
        free = [a for a in self.space.enumerate(limit=_ENUMERATE_LIMIT) if a.to_string() not in self.owner]
        return rng.choice(free) if free else None


class DedupSampler(BaseSampler):
    """An Optuna sampler that wraps another and never proposes an arch the study holds."""

    def __init__(self, inner: Any, space: Space, *, held: HeldArchs | None = None, seed: int | None = 0,
                 redraws: int = MAX_REDRAWS):
        if not isinstance(redraws, int) or redraws < 0:
            raise ValueError(f"redraws={redraws!r} must be an int >= 0")
        self.inner, self.space, self.redraws = inner, space, redraws
        self.held = held if held is not None else HeldArchs(space)
        self.distributions = {k: CategoricalDistribution(list(v)) for k, v in space.choices().items()}
        self.proposed: dict[int, dict[str, Any]] = {}  # trial number -> its params, until told
        self.redrawn = 0  # proposals drawn again (how often the wrapped sampler repeats itself)
        self._rng = random.Random(None if seed is None else seed + 7919)

    def __getattr__(self, name: str) -> Any:
        # population_size and the like: what callers read off the wrapped sampler
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self.distributions)

    def sample_relative(self, study: Any, trial: Any, search_space: Mapping[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        fixed = enqueued_params(trial)
        if fixed is not None:  # an enqueued (warm-start) trial: its params are given, not sampled
            params = {k: fixed.get(k, d.choices[0]) for k, d in self.distributions.items()}
            self._propose(trial.number, params)
            return params
        self.held.refresh(study)
        params = self._draw(study, trial)
        arch = self.space.from_choices(params).to_string()
        tries = 0
        while arch in self.held and tries < self.redraws:
            tries += 1
            params = self._draw(study, trial)
            arch = self.space.from_choices(params).to_string()
        self.redrawn += tries
        if arch in self.held:
            other = self.held.unseen(self._rng)
            if other is not None:  # else the space is exhausted: the runner stops on the claim
                params = self.space.to_choices(other)
        self._propose(trial.number, params)
        return params

    def sample_batch(self, study: Any, first: int, k: int) -> list[tuple[dict[str, Any], Any, str, dict[str, Any]]] | None:
        """Proposals for the next `k` trials, numbered `first`, `first + 1`, ..., of a study only this
        process writes, without asking them: (params, arch, arch string, system attributes) each, as
        `sample_relative` would give trials asked one after another and told after all of them (the
        generation path). None when the wrapped sampler cannot draw without a trial (no
        `batch_drawer`, and not Optuna's RandomSampler). The list stops early after a proposal whose arch the study holds (the space
        has no unseen arch left): a trial asked for it is a duplicate, and none is asked after it."""
        make = getattr(self.inner, "batch_drawer", None)
        draw = make(study, self.distributions) if callable(make) else random_batch_drawer(self.inner, self.distributions)
        if draw is None:
            return None
        self.held.refresh(study)
        out = []
        for number in range(first, first + k):
            params, arch, attrs = draw(number)
            arch = arch if arch is not None else self.space.from_choices(params)
            s = arch.to_string()
            tries = 0
            while s in self.held and tries < self.redraws:
                tries += 1
                params, arch, attrs = draw(number)
                arch = arch if arch is not None else self.space.from_choices(params)
                s = arch.to_string()
            self.redrawn += tries
            if s in self.held:
                other = self.held.unseen(self._rng)
                if other is not None:
                    params = self.space.to_choices(other)
                    arch = self.space.from_choices(params)
                    s = arch.to_string()
            self.held.propose(s, number)
            out.append((params, arch, s, attrs))
            if self.held.owner[s] != number:
                break
        return out

    def _draw(self, study: Any, trial: Any) -> dict[str, Any]:
        inner_space = self.inner.infer_relative_search_space(study, trial)
        rel = self.inner.sample_relative(study, trial, inner_space) if inner_space else {}
        return {k: rel[k] if k in rel else self.inner.sample_independent(study, trial, k, d)
                for k, d in self.distributions.items()}

    def _propose(self, number: int, params: dict[str, Any]) -> None:
        self.proposed[number] = params
        self.held.propose(self.space.from_choices(params).to_string(), number)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.proposed.pop(trial.number, None)
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng = random.Random()
