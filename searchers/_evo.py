"""`evo`: an evolutionary sampler that varies whole archs of the space, as an Optuna sampler.

Optuna's GA samplers see a trial as a flat set of categorical parameters. Crossing over two parents'
`s2.b3.k` means nothing when either runs stage 2 at depth 2, and most mutations land in slots the
arch does not use, so a child often is its parent again (the main job's 1,000-trial NSGA-II study
held 6 distinct archs on its front). Here a proposal is an `Arch`, varied with `Space.mutate` and
`Space.crossover` (a stage's depth and its blocks change together; no parameter of an unused slot
is ever varied), and the params Optuna stores are `space.to_choices(arch)`.

How it maps onto Optuna: `infer_relative_search_space` is the space's choice map (the
distributions the study model suggests), `sample_relative` proposes one whole arch and returns
its choices, so every runner and storage (in process, worker processes on one storage, Ray Tune)
uses it unchanged. The sampler keeps nothing that is not derived from the study, so a resumed
search, or another process on the same storage, carries on from what the study holds:

- Generation g is proposed while the study holds g*P .. (g+1)*P - 1 COMPLETE trials (P the
  population size; completed trials taken in trial-number order). Generation 0 is the
  `warm_start` archs, then (`init="spread"`, the default) P archs spread over the space's size:
  member j takes every choice at level t_j of its values (the space lists them small to large),
  rounded at random, with t = 0, 1, 1/2, 1/4, 3/4, 1/8, ... (so the min and max archs come
  first and any prefix covers the range). Random archs (`init="random"`) crowd the middle of
  the size range; the fronts of accuracy / latency / MACs trade-offs run from the smallest arch
  to the largest, and their ends are what random archs miss (`benchmarks/search_quality.py`:
  on `ofa-mbv3` at 300 trials, 0.82 of the best-known front's hypervolume from random archs,
  0.94 with just the min and max arch added). A study that already holds trials (another sampler's, a
  resumed search's) is that history: its completed trials are the first generations' members.
- The parents of generation g >= 1 are the P best of generation g-1's parents and the P trials
  completed in generation g-1 (NSGA-II's elitist selection), ranked by Deb's constraint-
  domination: a feasible trial beats an infeasible one, a smaller total violation a larger one,
  and feasible trials are ranked by non-dominated sorting, ties in a front broken by crowding
  distance (then by trial number, so selection is deterministic).
- Proposals of generation g are a stream drawn from a `random.Random` seeded by (seed, g):
  binary tournament, crossover (probability `crossover_prob`), mutation (each choice with
  probability `mutation_prob`). A trial takes the stream's first arch the study does not hold
  yet, where held means the `arch` of any trial, or the choices of one still running, except a
  trial failed without being evaluated (a killed search's, or a surplus one given back). So a seed
  gives the same sequence of archs, and the sampler never proposes an arch the study holds while
  any other is left: after a few hundred repeats it draws random archs, and in a space small
  enough to enumerate, the first arch not held.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from hwnas.errors import ArchError, ConfigError
from hwnas.search_space import Arch, Space
from hwnas.searchers._surrogate import FIT_MEMBERS, SCREEN, SURROGATES, screen_children
from hwnas.searchers.pareto import pareto_ranks
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["EVO_SAMPLERS", "EvoSampler", "Member", "constrained_ranks", "crowding_distance", "default_population", "spread_archs", "survivors"]

log = logging.getLogger("hwnas.searchers")

# A FAIL trial whose `error` starts with one of these never ran its objective (searchers/_optuna.py:
# `--resume` fails the trial a killed search was running; a worker gives back a surplus trial), so
# it does not hold its arch: proposing that arch again loses nothing and repeats nothing.
NOT_EVALUATED = ("interrupted", "surplus")
# Children drawn for one proposal before taking random archs instead (all repeats of held archs).
MAX_DRAWS = 256
# Spaces up to this size are enumerated when random draws only find held archs (nearly exhausted).
ENUMERATE_LIMIT = 200_000
MAX_POPULATION = 100_000
MAX_SCREEN = 1000  # children bred per proposal with a surrogate
# Chosen by `benchmarks/search_quality.py` (5 seeds, the spread first generation): population 20 beat 50
# at 300 and 1,000 trials on both spaces (ofa-mbv3: 0.959 / 0.995 vs 0.938 / 0.991; fmnist-mbv3 with
# its predictors: 0.894 / 0.964 vs 0.880 / 0.957), and 10 / 30 / 100 were no better than 20.
DEFAULT_POPULATION = 20
# evo-hvi's with 3 or more objectives (`benchmarks/search_quality.py`, fmnist-mbv3: accuracy and 2 devices'
# latency under a memory budget, 5 seeds, one reference: population 20 / 60 / 100 gave 0.924 / 0.985 / 0.960
# of the best-known hypervolume at 300 trials and 0.999 / 0.998 / 0.999 at 1,000; with 20 one seed stays at
# 0.84 up to 300 trials). With 2 objectives 20 (ofa-mbv3, one reference: 20 / 40 / 60 gave 0.991 / 0.989 / 0.984
# at 300 trials, 0.996 / 0.996 / 0.997 at 1,000).
EVO_HVI_POPULATION_3D = 60
INITS = ("spread", "random")  # the first generation: spread over the space's size, or random archs
# The sampler names of this class and the surrogate each one screens with (searchers/_optuna.make_sampler).
EVO_SAMPLERS: dict[str, str | None] = {"evo": None, "evo-gp": "gp", "evo-hvi": "gp-hvi"}


def default_population(sampler: str, n_objectives: int) -> int:
    """The population an evo sampler runs with when none is given."""
    return EVO_HVI_POPULATION_3D if sampler == "evo-hvi" and n_objectives >= 3 else DEFAULT_POPULATION


@dataclass(frozen=True)
class Member:
    """A completed trial as selection sees it: arch, objective values to minimise, total violation."""

    number: int
    arch: Arch
    values: tuple[float, ...]  # maximised objectives negated
    violation: float  # sum of the positive constraint values; 0 when feasible, inf when unknown


def constrained_ranks(F: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Deb's constraint-domination as ranks (1 = best): feasible rows by non-dominated sorting, then
    infeasible rows after all of them, one rank per distinct total violation, smaller first."""
    F = np.asarray(F, dtype=float)
    v = np.asarray(violation, dtype=float)
    ranks = np.zeros(len(F), dtype=np.int64)
    feas = v <= 0
    top = 0
    if feas.any():
        ranks[feas] = pareto_ranks(F[feas])
        top = int(ranks[feas].max())
    if (~feas).any():
        ranks[~feas] = top + 1 + np.unique(v[~feas], return_inverse=True)[1]
    return ranks


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of the rows of one front (inf at each objective's extremes)."""
    F = np.asarray(F, dtype=float)
    n = len(F)
    if n <= 2:
        return np.full(n, math.inf)
    d = np.zeros(n)
    for j in range(F.shape[1]):
        order = np.argsort(F[:, j], kind="stable")
        col = F[order, j]
        d[order[0]] = d[order[-1]] = math.inf
        span = col[-1] - col[0]
        if span > 0:
            d[order[1:-1]] += (col[2:] - col[:-2]) / span
    return d


def survivors(members: Sequence[Member], k: int) -> list[Member]:
    """The `k` best members, best first: by constrained rank, then crowding (larger first), then number."""
    if not members:
        return []
    F = np.array([m.values for m in members], dtype=float)
    v = np.array([m.violation for m in members], dtype=float)
    ranks = constrained_ranks(F, v)
    crowd = np.zeros(len(members))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        if v[idx[0]] <= 0:  # a front of feasible members; an infeasible rank is one violation level
            crowd[idx] = crowding_distance(F[idx])
    order = sorted(range(len(members)), key=lambda i: (ranks[i], -crowd[i], members[i].number))
    return [members[i] for i in order[:k]]


def warm_archs(space: Space, items: Sequence[Arch | str]) -> list[Arch]:
    """Warm-start archs: each an `Arch`, an arch string, `"min"` or `"max"` (the space's extremes)."""
    return [space.min_arch() if a == "min" else space.max_arch() if a == "max" else space.parse(a) for a in items]


def spread_levels(n: int) -> list[float]:
    """`n` levels in [0, 1]: 0, 1, then the van der Corput sequence (1/2, 1/4, 3/4, 1/8, ...), so
    every prefix of the list spreads over the whole range."""
    out = [0.0, 1.0][:n]
    j = 1
    while len(out) < n:
        t, f, k = 0.0, 0.5, j
        while k:
            t += f * (k & 1)
            k >>= 1
            f /= 2
        out.append(t)
        j += 1
    return out


def spread_archs(space: Space, n: int, rng: random.Random) -> list[Arch]:
    """`n` archs spread over `space`'s size, one per level of `spread_levels(n)` (the first
    generation of `init="spread"`): at level t every choice takes the value at index
    t * (count - 1) of its values, rounded down or up at random with the fraction as the chance of
    up; t = 0 is the min arch, t = 1 the max. A small space may give the same arch twice (the
    sampler skips an arch the study holds)."""
    choices = space.choices()
    out: list[Arch] = []
    for t in spread_levels(n):
        pick = {}
        for k, vals in choices.items():
            x = t * (len(vals) - 1)
            i = int(x)
            pick[k] = vals[min(i + (rng.random() < x - i), len(vals) - 1)]
        out.append(space.from_choices(pick))
    return out


@dataclass
class _Generation:
    """One generation's parents (best first) and its stream of proposals so far."""

    parents: list[Member]
    rng: random.Random
    proposals: list[Arch] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


class EvoSampler(optuna.samplers.BaseSampler):
    """Space-aware evolutionary multi-objective sampler (see the module docstring for how it works).

    `space`: the Space the study searches (None: read from the study's `hwnas.space` attribute,
    which `hwnas.searchers.search` sets). `warm_start`: archs (or `"min"` / `"max"`) proposed
    before anything else, each once. `mutation_prob`: per-choice mutation probability (default
    1 / the number of choices, at least 0.02). `init`: the first generation, `"spread"` over the
    space's size (default) or `"random"`. `surrogate="gp"`: each generation after the first breeds
    `screen` (default 10) children per proposal and proposes those Gaussian processes fitted on the
    study rank best (searchers/_surrogate.py; the `evo-gp` sampler); `surrogate="gp-hvi"`: 30 by
    default, picked by predicted hypervolume gain (the `evo-hvi` sampler). `seed`: the same seed gives
    the same archs.
    """

    def __init__(self, space: Space | str | None = None, *, population_size: int = DEFAULT_POPULATION, seed: int | None = None,
                 mutation_prob: float | None = None, crossover_prob: float = 0.9,
                 warm_start: Sequence[Arch | str] = (), init: str = "spread", surrogate: str | None = None,
                 screen: int | None = None) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or \
                not 2 <= population_size <= MAX_POPULATION:
            raise ConfigError(f"population_size={population_size!r} must be an int in [2, {MAX_POPULATION}]")
        if mutation_prob is not None and not 0.0 < mutation_prob <= 1.0:
            raise ConfigError(f"mutation_prob={mutation_prob!r} must be in (0, 1]")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ConfigError(f"crossover_prob={crossover_prob!r} must be in [0, 1]")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ConfigError(f"seed={seed!r} must be an int or None")
        if init not in INITS:
            raise ConfigError(f"init={init!r} not allowed; allowed: {list(INITS)}")
        if surrogate is not None and surrogate not in SURROGATES:
            raise ConfigError(f"surrogate={surrogate!r} not allowed; allowed: None, {', '.join(map(repr, SURROGATES))}")
        screen = (SURROGATES[surrogate][1] if surrogate else SCREEN) if screen is None else screen
        if isinstance(screen, bool) or not isinstance(screen, int) or not 1 <= screen <= MAX_SCREEN:
            raise ConfigError(f"screen={screen!r} must be an int in [1, {MAX_SCREEN}]")
        self.surrogate, self.screen = surrogate, screen
        self.population_size = population_size
        self.init = init
        self.crossover_prob = crossover_prob
        self._mutation_prob = mutation_prob
        self._seed = int(seed) if seed is not None else random.SystemRandom().getrandbits(62)
        self._space = Space.preset(space) if isinstance(space, str) else space
        self._warm_raw = tuple(warm_start)
        self._independent = optuna.samplers.RandomSampler(seed=seed)
        self._default_mutation: tuple[Space, float] | None = None
        self._study_name: str | None = None
        self._reset()

    def _reset(self) -> None:
        self._held: set[str] = set()  # archs of finished trials that hold theirs
        self._recorded: set[int] = set()  # numbers of finished trials read
        self._pending: dict[int, str] = {}  # trial number -> arch this sampler proposed, not finished yet
        self._scan_from = 0  # every trial listed before this index is finished and read
        self._complete: dict[int, Member] = {}
        self._parents: dict[int, list[Member]] = {0: []}
        self._gens: dict[int, _Generation] = {}
        self._warm: list[Arch] | None = None
        self._enumerated: list[tuple[str, Arch]] | None = None
        self._proposed: dict[str, Arch] = {}  # key -> the arch proposed for a trial not read finished yet

    @property
    def space(self) -> Space | None:
        return self._space

    @property
    def mutation_prob(self) -> float:
        if self._mutation_prob is not None:
            return self._mutation_prob
        if self._space is None:
            return 0.1
        if self._default_mutation is None or self._default_mutation[0] is not self._space:  # once per space
            n = len(self._space.choices())
            self._default_mutation = (self._space, max(1.0 / n, 0.02) if n else 0.1)
        return self._default_mutation[1]

    # ---- Optuna's sampler interface ----------------------------------------------------------------
    def infer_relative_search_space(self, study: Any, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._bind(study)
        return {k: CategoricalDistribution(list(v)) for k, v in self._space.choices().items()}

    def sample_relative(self, study: Any, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        arch = self.propose(study)
        # Remembered until the trial finishes: a caller that asks a whole generation before telling any
        # (searchers/_generation.py) records the arch only at tell time, so the study cannot show it yet.
        self._pending[trial.number] = str(arch)
        return {k: v for k, v in self._space.to_choices(arch).items() if k in search_space}

    def sample_independent(self, study: Any, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        # Only parameters outside the space's choice map get here (an objective suggesting its own).
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        # Optuna reseeds samplers it runs in threads; the proposals stay those of the seed.
        self._independent.reseed_rng()

    # ---- proposals ------------------------------------------------------------------------------
    def propose(self, study: Any) -> Arch:
        """The next arch for a trial of `study`: a warm-start arch, else its generation's next one."""
        self._bind(study)
        return self._next(study, self._read(study))

    def batch_drawer(self, study: Any, distributions: dict[str, BaseDistribution]) -> Any:
        """`draw(number) -> (params, arch, {})`: the proposal `sample_relative` would give trial
        `number` asked now, with the study read once for a whole batch of trials asked before any is
        told (`DedupSampler.sample_batch`, the generation path), instead of once per trial. None when
        `distributions` are not the space's choices (then trials are asked one by one)."""
        self._bind(study)
        if set(distributions) != set(self._space.choices()):
            return None
        base = self._read(study, pending=False)
        self._proposed.clear()  # left by proposals a caller drew again (every trial proposed before is read)

        def draw(number: int) -> tuple[dict[str, Any], Arch, dict[str, Any]]:
            running = base | {k for n, k in self._pending.items() if n not in self._recorded}
            arch = self._next(study, running)
            self._pending[number] = key = str(arch)
            self._proposed[key] = arch
            choices = self._space.to_choices(arch)
            return {k: choices[k] for k in distributions}, arch, {}

        return draw

    def _next(self, study: Any, running: set[str]) -> Arch:
        def held(key: str) -> bool:
            return key in self._held or key in running

        for a in self._warm_archs():
            if not held(str(a)):
                return a
        gen = self._generation(len(self._complete) // self.population_size)
        for a, k in zip(gen.proposals, gen.keys):
            if not held(k):
                return a
        child = None
        for draw in (lambda: self._breed(gen), lambda: self._space.sample(gen.rng)):
            for _ in range(MAX_DRAWS):
                child = draw()
                k = str(child)
                if not held(k):
                    gen.proposals.append(child)
                    gen.keys.append(k)
                    return child
        for k, a in self._enumeration():
            if not held(k):
                return a
        log.warning("evo: every arch drawn is already in study %r (the space is exhausted or nearly so); "
                    "proposing a repeat", study.study_name)
        return child

    def parents(self, study: Any) -> list[Member]:
        """The parents the next proposal for `study` is bred from, best first (empty in generation 0)."""
        self._bind(study)
        self._read(study)
        return list(self._generation(len(self._complete) // self.population_size).parents)

    def _breed(self, gen: _Generation) -> Arch:
        parents, r, space = gen.parents, gen.rng, self._space
        if not parents:
            return space.sample(r)
        # Binary tournament: parents are sorted best first, so the smaller index wins.
        a = parents[min(r.randrange(len(parents)), r.randrange(len(parents)))]
        child = a.arch
        if len(parents) > 1 and r.random() < self.crossover_prob:
            b = parents[min(r.randrange(len(parents)), r.randrange(len(parents)))]
            child = space.crossover(child, b.arch, r)
        return space.mutate(child, r, prob=self.mutation_prob)

    def _generation(self, g: int) -> _Generation:
        gen = self._gens.get(g)
        if gen is not None:
            return gen
        order = sorted(self._complete)
        P = self.population_size
        h = max(k for k in self._parents if k <= g)
        while h < g:
            h += 1
            pool = self._parents[h - 1] + [self._complete[n] for n in order[(h - 1) * P:h * P]]
            self._parents[h] = survivors(pool, P)
        # A string seed is hashed with SHA-512 by `random`: the same stream on every platform and run.
        gen = _Generation(self._parents[g], random.Random(f"hwnas-evo:{self._seed}:{g}"))
        if g == 0 and self.init == "spread":
            gen.proposals = spread_archs(self._space, P, gen.rng)
            gen.keys = [str(a) for a in gen.proposals]
        elif g > 0 and self.surrogate is not None and gen.parents:
            self._screen(gen, [self._complete[n] for n in order[:g * P]])
        self._gens[g] = gen
        return gen

    def _screen(self, gen: _Generation, completed: list[Member]) -> None:
        """Propose the generation's P best-predicted of `screen` x P distinct children not held."""
        P = self.population_size
        children, keys = [], set()
        for _ in range(MAX_DRAWS * P):
            if len(children) >= self.screen * P:
                break
            c = self._breed(gen)
            k = str(c)
            if k not in self._held and k not in keys:
                keys.add(k)
                children.append(c)
        gen.proposals = screen_children(self._space, completed[-FIT_MEMBERS:], gen.parents, children, P,
                                        select=SURROGATES[self.surrogate][0])
        gen.keys = [str(a) for a in gen.proposals]

    def _warm_archs(self) -> list[Arch]:
        if self._warm is None:
            self._warm = warm_archs(self._space, self._warm_raw)
        return self._warm

    def _enumeration(self) -> Iterator[tuple[str, Arch]]:
        if self._space.size() > ENUMERATE_LIMIT:
            return iter(())
        if self._enumerated is None:
            self._enumerated = [(str(a), a) for a in self._space.enumerate(limit=ENUMERATE_LIMIT)]
        return iter(self._enumerated)

    # ---- reading the study ----------------------------------------------------------------------------
    def _bind(self, study: Any) -> None:
        """Take the study's space and directions; a sampler moved to another study starts afresh."""
        if study.study_name == self._study_name:
            return
        if self._space is None:
            d = study.user_attrs.get("hwnas.space")
            if d is None:
                raise ConfigError(f"the evo sampler needs the space of study {study.study_name!r}: pass "
                                  "EvoSampler(space=...) or create the study with hwnas.searchers.search")
            self._space = Space.from_dict(d)
        self._signs = tuple(-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions)
        self._study_name = study.study_name
        self._reset()

    def _read(self, study: Any, *, pending: bool = True) -> set[str]:
        """Read the trials finished since the last call; return the archs of those not finished
        (with `pending`, also of the trials this sampler proposed and has not seen finish)."""
        trials = study.get_trials(deepcopy=False)
        running: set[str] = set()
        prefix = True
        for t in trials[self._scan_from:]:
            if t.state.is_finished():
                if t.number not in self._recorded:
                    self._record(t)
                if prefix:
                    self._scan_from += 1
                continue
            prefix = False
            k = self._key(t)
            if k is not None:
                running.add(k)
        if pending:
            running.update(k for n, k in self._pending.items() if n not in self._recorded)
        return running

    def _record(self, t: FrozenTrial) -> None:
        self._recorded.add(t.number)
        self._pending.pop(t.number, None)
        if t.state == TrialState.FAIL and str(t.user_attrs.get("error", "")).startswith(NOT_EVALUATED):
            return
        k = self._key(t)
        if k is None:
            return
        proposed = self._proposed.pop(k, None)
        self._held.add(k)
        if t.state != TrialState.COMPLETE or t.values is None or len(t.values) != len(self._signs):
            return
        arch = proposed  # proposed here: the arch itself, not parsed back from its string
        if arch is None:
            try:
                arch = self._space.parse(k)
            except ArchError:  # an arch of another space in a reused study: not a parent
                return
        c = t.constraints
        violation = sum(max(0.0, float(x)) for x in c.values())
        if any(math.isnan(float(x)) for x in c.values()):
            violation = math.inf
        self._complete[t.number] = Member(t.number, arch, tuple(s * float(v) for s, v in zip(self._signs, t.values)),
                                          violation)

    def _key(self, t: FrozenTrial) -> str | None:
        """The arch string of a trial: its `arch` attribute, else its params once all are suggested."""
        a = t.user_attrs.get("arch")
        if a is not None:
            return str(a)
        names = self._space.choices()
        if not names or not all(k in t.params for k in names):
            return None
        try:
            return str(self._space.from_choices({k: t.params[k] for k in names}))
        except ArchError:
            return None
