"""Pareto fronts of a study: non-dominated sorting under constraints, hypervolume, knee, queries.

`ParetoFront.from_study(study)` reads the trials once into numpy arrays (for an RDB storage with
one SQL query per table, which keeps 100,000-trial studies well under a second); every query
after that is vectorised. A front member is a COMPLETE trial that meets every budget (the study's
and the query's) and that no other such trial dominates. A front lists each arch once: trials that
evaluated the same arch (a search proposes the smallest subnet many times) are one member, the
first such trial standing for all of them, and tables and picks carry every trial number of the
arch (`trials`). Distinct archs with identical values are all kept, as in Optuna's
`study.best_trials`.

What the values are: a study holds what its objective returned (for `hwnas run`, predictions).
When the main job has re-measured part of the search (`hwnas.remeasured`, written by its pareto
stage), reading the study gives the re-measured front by default, exactly the one the run exported
from: the measured metric is labelled `<metric>_measured` and the prediction `<metric>_predicted`
in every table and JSON, and picks rank by the measured value (`measured=False` reads the
search's own, predicted, values).

Over ~400 lines (552): the front, its measured / predicted views and the picks share the arrays
read once from storage; the next split is the views and labels (measured vs predicted) into their
own module (not done yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from hwnas.errors import BudgetError, ObjectiveError
from hwnas.searchers._budgets import Budget, parse_budgets
from hwnas.searchers._objectives import Objective, parse_objectives
from hwnas.searchers._optuna_internals import TrialTable, complete_trials, open_sqlite_study

__all__ = [
    "ParetoFront",
    "Pick",
    "nondominated_mask",
    "pareto_ranks",
    "hypervolume",
    "hypervolume_2d",
    "knee_index",
]


# ---- numerics on minimisation arrays ------------------------------------------------------------
def nondominated_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of F (every column minimised; duplicates all kept)."""
    F = np.asarray(F, dtype=float)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if F.ndim != 2:
        raise ValueError(f"F must be 2-D (n, m), got shape {F.shape}")
    if F.shape[1] == 1:
        return F[:, 0] == F[:, 0].min()
    if F.shape[1] == 2:
        # Sweep: sort by (f1, f2); a point survives when it is the smallest f2 of its f1 group and
        # strictly below every f2 seen at a strictly smaller f1.
        order = np.lexsort((F[:, 1], F[:, 0]))
        s1, s2 = F[order, 0], F[order, 1]
        start = np.empty(n, dtype=bool)
        start[0] = True
        start[1:] = s1[1:] != s1[:-1]
        gid = np.cumsum(start) - 1
        gmin = s2[start]
        before = np.concatenate(([np.inf], np.minimum.accumulate(gmin)[:-1]))
        nd_sorted = (s2 == gmin[gid]) & (s2 < before[gid])
        out = np.empty(n, dtype=bool)
        out[order] = nd_sorted
        return out
    import moocore

    return np.asarray(moocore.is_nondominated(F, keep_weakly=True), dtype=bool)


def pareto_ranks(F: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
    """Non-dominated sorting rank (1 = front) of every row; infeasible rows rank after all feasible ones.

    Infeasible rows are ordered among themselves by total violation (Deb's constrained domination),
    each distinct violation level one rank.
    """
    F = np.asarray(F, dtype=float)
    n = len(F)
    ranks = np.zeros(n, dtype=np.int64)
    feas = np.ones(n, dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    idx = np.flatnonzero(feas)
    if len(idx):
        import moocore

        ranks[idx] = np.asarray(moocore.pareto_rank(F[idx]), dtype=np.int64) + 1 if F.shape[1] > 1 else \
            np.unique(F[idx, 0], return_inverse=True)[1] + 1
    return ranks


def hypervolume_2d(F: np.ndarray, ref: Sequence[float]) -> float:
    """Exact 2-D hypervolume (minimisation) dominated by F and bounded by `ref` (own sweep)."""
    F = np.asarray(F, dtype=float)
    r = np.asarray(ref, dtype=float)
    F = F[np.all(F < r, axis=1)]
    if len(F) == 0:
        return 0.0
    F = F[nondominated_mask(F)]
    F = F[np.argsort(F[:, 0])]
    widths = np.diff(np.concatenate((F[:, 0], [r[0]])))
    return float(np.sum(widths * (r[1] - F[:, 1])))


def hypervolume(F: np.ndarray, ref: Sequence[float]) -> float:
    """Hypervolume (minimisation) of F w.r.t. `ref`; points not strictly better than ref add nothing."""
    F = np.asarray(F, dtype=float)
    r = np.asarray(ref, dtype=float)
    if F.ndim != 2 or F.shape[1] != len(r):
        raise ValueError(f"F has shape {F.shape}; ref has {len(r)} values")
    F = F[np.all(F < r, axis=1)]
    if len(F) == 0:
        return 0.0
    if F.shape[1] == 2:
        return hypervolume_2d(F, r)
    import moocore

    return float(moocore.hypervolume(F, ref=r))


def knee_index(F: np.ndarray) -> int:
    """Index (into F, a front in minimisation form) of the knee point.

    Objectives are scaled to [0, 1] over the front. In 2-D the knee is the point farthest below
    the line joining the two extreme points; with 3+ objectives, the point closest to the ideal.
    """
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        raise BudgetError("empty front has no knee point")
    if len(F) <= 2:
        return int(np.argmin(np.linalg.norm(_scale(F), axis=1)))
    S = _scale(F)
    if F.shape[1] == 2:
        a, b = S[np.argmin(S[:, 0])], S[np.argmin(S[:, 1])]
        d = b - a
        norm = float(np.hypot(*d))
        if norm == 0.0:
            return 0
        # Signed distance to the extremes' line; the knee bulges towards the ideal (0, 0).
        dist = ((S[:, 0] - a[0]) * d[1] - (S[:, 1] - a[1]) * d[0]) / norm
        return int(np.argmax(-dist if (0 - a[0]) * d[1] - (0 - a[1]) * d[0] < 0 else dist))
    return int(np.argmin(np.linalg.norm(S, axis=1)))


def _scale(F: np.ndarray) -> np.ndarray:
    lo, hi = F.min(axis=0), F.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (F - lo) / span


# ---- reading trials once ---------------------------------------------------------------------------
def _load_sqlite_direct(study_name: str | None, storage: str, measured: bool | None = None) -> ParetoFront | None:
    """A SQLite study read with Python's sqlite3 alone (`_optuna_internals.open_sqlite_study`).

    Returns None whenever anything is not plainly a readable Optuna study with that name (a missing
    file, another schema, an ambiguous or unknown name), so the caller takes Optuna's path and
    its errors.
    """
    if not isinstance(storage, str) or not storage.startswith("sqlite:///"):
        return None
    from hwnas.searchers._storage import existing_storage_path

    path = existing_storage_path(storage)
    if path is None:
        return None
    with open_sqlite_study(path, study_name) as study:
        if study is None:
            return None
        try:
            objs, buds = _objectives_of(study, study.directions)
            return _front_of(study.study_name, study.user_attrs, objs, buds,
                             lambda: study.complete_trials(len(objs), [str(b) for b in buds]), measured)
        except (ValueError, KeyError, TypeError):  # hwnas attributes that do not parse: Optuna's path says why
            return None


def _front_of(name: str | None, attrs: Mapping[str, Any], objs: tuple[Objective, ...], buds: tuple[Budget, ...],
              read: Any, measured: bool | None) -> ParetoFront | None:
    """The front of a study from its attributes and a reader of its trials (`read() -> TrialTable | None`):
    the re-measured front when the study holds one and `measured` is not False, else its trials."""
    re = attrs.get(REMEASURED_ATTR)
    has = isinstance(re, Mapping) and "archs" in re
    if measured and not has:
        from hwnas.errors import ConfigError

        raise ConfigError(f"study {name!r} holds no re-measured values (only `hwnas run` studies after their pareto "
                          "stage do); read its recorded values instead")
    sources = {str(k): str(v) for k, v in (attrs.get(SOURCES_ATTR) or {}).items()}
    if has and measured is not False:
        return _measured_front(name, objs, buds, re, sources)
    data = read()
    if data is None:
        return None
    front = ParetoFront._from_data(name, objs, buds, data)
    m = re.get("metric") if isinstance(re, Mapping) else None
    # The values are the search's; where the study says they are predictions that were re-measured, the
    # tables say which one they show.
    labels = {m: f"{m}_predicted"} if m in front.metrics else {}
    return replace(front, labels=labels, sources={labels.get(k, k): v for k, v in sources.items() if k in front.metrics},
                   _cache={})


def _measured_front(name: str | None, objs: tuple[Objective, ...], buds: tuple[Budget, ...], re: Mapping[str, Any],
                    sources: Mapping[str, str]) -> ParetoFront:
    """The re-measured candidates stored in a study (`REMEASURED_ATTR`): one row per arch, the measured
    metric under its own name (what picks rank by), the prediction under `re["predicted_as"]`."""
    m, pred = str(re["metric"]), str(re["predicted_as"])
    archs = [str(a) for a in re["archs"]]
    lists = tuple(tuple(int(t) for t in ts) for ts in re["trials"])
    metrics = {str(k): [math.nan if v is None else float(v) for v in col] for k, col in re["metrics"].items()}
    front = ParetoFront.build(objectives=list(objs), archs=archs, metrics=metrics, budgets=list(buds), study_name=name,
                              trials=[ts[0] if ts else -1 for ts in lists])
    labels = {m: f"{m}_measured", pred: f"{m}_predicted"}
    src = {k: v for k, v in sources.items() if k in front.metrics and k != m}
    src[m] = str(re.get("source", "measured"))
    if pred in front.metrics:
        src[pred] = sources.get(m, "predicted")
    return replace(front, labels=labels, sources={labels.get(k, k): v for k, v in src.items()}, arch_trials=lists,
                   view="measured", _cache={})


def _objectives_of(study: Any, directions: Sequence[str]) -> tuple[tuple[Objective, ...], tuple[Budget, ...]]:
    """Objectives and budgets of a study: hwnas' attributes, else values_0.. with its directions."""
    from hwnas.searchers._optuna import study_spec

    if "hwnas.objectives" in study.user_attrs:
        spec = study_spec(study)
        return spec.objectives, spec.budgets
    return tuple(Objective(f"values_{i}", d) for i, d in enumerate(directions)), ()


# Study user attributes the main job writes (pipeline/pareto.py): its re-measured candidates, and
# what each recorded metric is (predicted by which model, estimated, counted).
REMEASURED_ATTR = "hwnas.remeasured"
SOURCES_ATTR = "hwnas.metric_sources"


# ---- the front ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    """One chosen front member: its arch string, trial number (the first of its arch's trials:
    `trials`), every metric (by its name; `labels` gives a name that says predicted or measured
    where the front knows) and the metric it was ranked by."""

    arch: str
    trial: int
    metrics: dict[str, float]
    budgets: tuple[str, ...] = ()
    trials: tuple[int, ...] = ()
    ranked_by: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        lab = self.labels.get
        doc = {"arch": self.arch, "trial": self.trial, "trials": list(self.trials),
               "metrics": {lab(k, k): v for k, v in self.metrics.items()}, "budgets": list(self.budgets),
               "ranked_by": None if self.ranked_by is None else lab(self.ranked_by, self.ranked_by)}
        if self.sources:
            doc["sources"] = dict(self.sources)
        return doc


@dataclass(frozen=True, eq=False)
class ParetoFront:
    """Trials of a study (or any table of metrics) and their constrained Pareto front.

    Build with `ParetoFront.from_study(study)`, `ParetoFront.load(study_name, storage)` or
    `ParetoFront.build(...)` (keyword-only): `objectives` (names with directions), `archs`, `metrics`
    (`{metric: array}`, must hold every objective), optional `trials` (numbers) and `budgets`.
    """

    objectives: tuple[Objective, ...]
    archs: tuple[str, ...]
    metrics: dict[str, np.ndarray]
    trials: np.ndarray
    budgets: tuple[Budget, ...] = ()
    violations: np.ndarray | None = None  # Optuna constraint values; None -> from budgets
    study_name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # metric -> table/JSON name (e.g. accuracy_measured)
    sources: Mapping[str, str] = field(default_factory=dict)  # table/JSON name -> what the value is
    arch_trials: tuple[tuple[int, ...], ...] | None = None  # per row, its arch's trials; None -> grouped by arch
    view: str = "recorded"  # "recorded": the values the trials reported; "measured": the re-measured candidates
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, *, objectives: str | Sequence[str | Objective], archs: Sequence[str],
              metrics: Mapping[str, Sequence[float]], trials: Sequence[int] | None = None,
              budgets: str | Sequence[str | Budget] | None = (), study_name: str | None = None) -> ParetoFront:
        """A front over a plain table (no study needed): metrics columns aligned with `archs`."""
        objs = parse_objectives(objectives)
        n = len(archs)
        cols = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in metrics.items()}
        for k, v in cols.items():
            if len(v) != n:
                raise ValueError(f"metric {k!r} has {len(v)} values for {n} archs")
        for o in objs:
            if o.name not in cols:
                raise ObjectiveError(f"objective {o.name!r} missing from metrics {sorted(cols)}")
        tr = np.arange(n) if trials is None else np.asarray(trials, dtype=np.int64)
        return cls(objectives=objs, archs=tuple(archs), metrics=cols, trials=tr,
                   budgets=parse_budgets(budgets), study_name=study_name)

    @classmethod
    def from_study(cls, study: Any, *, measured: bool | None = None) -> ParetoFront:
        """Read a study's COMPLETE trials once (RDB storages by direct SQL) into a front.

        `measured`: None (default) gives the re-measured front when the study holds one (a `hwnas
        run` study after its pareto stage), else the trials' values; False always the trials'
        values; True the re-measured front or a ConfigError."""
        objs, buds = _objectives_of(study, [d.name.lower() for d in study.directions])
        return _front_of(study.study_name, study.user_attrs, objs, buds,
                         lambda: complete_trials(study, len(objs), [str(b) for b in buds]), measured)

    @classmethod
    def _from_data(cls, name: str | None, objs: tuple[Objective, ...], buds: tuple[Budget, ...], data: TrialTable) -> ParetoFront:
        metrics = dict(data.metrics)
        for i, o in enumerate(objs):
            metrics[o.name] = data.values[:, i]  # the reported values are the truth for objectives
        return cls(objectives=objs, archs=tuple(data.archs), metrics=metrics, trials=data.numbers,
                   budgets=buds, violations=data.violations, study_name=name)

    @classmethod
    def load(cls, study_name: str | None, storage: str, *, measured: bool | None = None) -> ParetoFront:
        """The front of a stored study (`measured` as in `from_study`). SQLite files are read with
        sqlite3 directly (fast path); anything else, or anything that path does not recognise,
        through Optuna's storage."""
        fast = _load_sqlite_direct(study_name, storage, measured)
        if fast is not None:
            return fast
        from hwnas.searchers._optuna import load_study

        return cls.from_study(load_study(study_name, storage), measured=measured)

    # ---- arrays ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.archs)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def F(self) -> np.ndarray:
        """(n, m) objectives in minimisation form (maximised ones negated)."""
        if "F" not in self._cache:
            self._cache["F"] = np.stack([self.metrics[o.name] * o.sign for o in self.objectives], axis=1) \
                if len(self) else np.zeros((0, len(self.objectives)))
        return self._cache["F"]

    def label(self, metric: str) -> str:
        """The name tables and JSON give `metric` (e.g. `accuracy_measured`; the metric itself when
        the front does not know whether it is predicted or measured)."""
        return self.labels.get(metric, metric)

    def _key(self, name: str) -> str:
        """A metric's key from its name or its label (`--sort accuracy_measured` works too)."""
        if name in self.metrics:
            return name
        return next((k for k, v in self.labels.items() if v == name), name)

    def column(self, metric: str) -> np.ndarray:
        metric = self._key(metric)
        if metric not in self.metrics:
            shown = sorted(self.label(k) for k in self.metrics)
            raise BudgetError(f"metric {metric!r} was not recorded in this study; recorded: {shown}")
        return self.metrics[metric]

    def trials_of(self, i: int) -> tuple[int, ...]:
        """Every trial number of row i's arch (a search evaluates some archs many times)."""
        if self.arch_trials is not None:
            return self.arch_trials[i]
        if "by_arch" not in self._cache:
            by: dict[str, list[int]] = {}
            for a, t in zip(self.archs, self.trials.tolist()):
                if t >= 0:  # -1: a row that is no trial (e.g. a measured accuracy pair)
                    by.setdefault(a, []).append(int(t))
            self._cache["by_arch"] = {a: tuple(sorted(v)) for a, v in by.items()}
        return self._cache["by_arch"].get(self.archs[i], ())

    def feasible(self, budgets: str | Sequence[str | Budget] | None = ()) -> np.ndarray:
        """Mask of trials meeting the study's budgets and `budgets`."""
        ok = np.ones(len(self), dtype=bool)
        if self.violations is not None and self.violations.size:
            # NaN (constraint missing) counts as broken: a trial is only trusted with its constraints.
            ok &= np.all(self.violations <= 0.0, axis=1)
        elif self.budgets:
            for b in self.budgets:
                ok &= _meets(b, self.column(b.metric))
        for b in parse_budgets(budgets):
            ok &= _meets(b, self.column(b.metric))
        return ok

    def front_mask(self, budgets: str | Sequence[str | Budget] | None = ()) -> np.ndarray:
        """Mask of the constrained Pareto front (recomputed among trials meeting every budget), one
        row per arch: of several non-dominated trials of one arch, the first stands for them all."""
        key = "front:" + "|".join(str(b) for b in parse_budgets(budgets))
        if key not in self._cache:
            ok = self.feasible(budgets)
            mask = np.zeros(len(self), dtype=bool)
            idx = np.flatnonzero(ok)
            mask[idx] = nondominated_mask(self.F()[idx])
            seen: set[str] = set()
            for i in np.flatnonzero(mask):
                if self.archs[i] in seen:
                    mask[i] = False
                seen.add(self.archs[i])
            self._cache[key] = mask
        return self._cache[key]

    def ranks(self) -> np.ndarray:
        """Non-dominated sorting rank (1 = front) of feasible trials; 0 for infeasible ones."""
        return pareto_ranks(self.F(), self.feasible())

    # ---- queries -------------------------------------------------------------------------------------
    def query(self, budgets: str | Sequence[str | Budget] | None = ()) -> ParetoFront:
        """The front under extra budgets, as a new ParetoFront holding only its members."""
        idx = np.flatnonzero(self.front_mask(budgets))
        return self._subset(idx, extra=parse_budgets(budgets))

    def _subset(self, idx: np.ndarray, extra: Sequence[Budget] = ()) -> ParetoFront:
        return ParetoFront(
            objectives=self.objectives, archs=tuple(self.archs[i] for i in idx),
            metrics={k: v[idx] for k, v in self.metrics.items()}, trials=self.trials[idx],
            budgets=tuple(self.budgets) + tuple(extra),
            violations=None if self.violations is None else self.violations[idx], study_name=self.study_name,
            labels=self.labels, sources=self.sources, arch_trials=tuple(self.trials_of(int(i)) for i in idx),
            view=self.view,
        )

    def hypervolume(self, ref: Mapping[str, float] | Sequence[float] | None = None,
                    budgets: str | Sequence[str | Budget] | None = ()) -> float:
        """Hypervolume of the (constrained) front w.r.t. `ref` given in metric units and directions.

        Default ref: the worst value of each objective over the feasible trials (nadir of all).
        """
        F = self.F()[self.front_mask(budgets)]
        return hypervolume(F, self._ref_min(ref, budgets))

    def _ref_min(self, ref: Any, budgets: Any = ()) -> np.ndarray:
        if ref is None:
            feas = self.F()[self.feasible(budgets)]
            if len(feas) == 0:
                raise BudgetError("no feasible trial: hypervolume needs an explicit ref")
            return feas.max(axis=0)
        if isinstance(ref, Mapping):
            missing = [n for n in self.names if n not in ref]
            if missing:
                raise ValueError(f"ref lacks objective(s) {missing}")
            ref = [ref[n] for n in self.names]
        r = np.asarray(ref, dtype=float)
        if r.shape != (len(self.objectives),):
            raise ValueError(f"ref needs {len(self.objectives)} values ({self.names}), got {list(r)}")
        return r * np.array([o.sign for o in self.objectives])

    def knee(self, budgets: str | Sequence[str | Budget] | None = ()) -> Pick:
        """The knee point of the front (see `knee_index`)."""
        idx = np.flatnonzero(self.front_mask(budgets))
        self._require(idx, budgets)
        return self._pick_row(int(idx[knee_index(self.F()[idx])]), budgets)

    def pick(self, budgets: str | Sequence[str | Budget] | None = (), *, by: str | None = None,
             nearest: Mapping[str, float] | None = None, knee: bool = False) -> Pick:
        """One front member meeting `budgets` (e.g. `"latency_ms@cpu<=3"`).

        Default: the best value of objective `by` (the first objective the budgets do not bound,
        e.g. accuracy under a latency budget). `nearest={metric: target}`: the member closest to
        the targets (relative distance). `knee=True`: the knee point.
        """
        buds = parse_budgets(budgets)
        if knee:
            return self.knee(buds)
        idx = np.flatnonzero(self.front_mask(buds))
        self._require(idx, buds)
        if nearest:
            d = np.zeros(len(idx))
            for k, target in nearest.items():
                col = self.column(k)[idx]
                d += ((col - float(target)) / (abs(float(target)) or 1.0)) ** 2
            return self._pick_row(int(idx[np.argmin(d)]), buds)
        if by is None:
            bounded = {self._key(b.metric) for b in buds}
            free = [o for o in self.objectives if o.name not in bounded]
            obj = (free or list(self.objectives))[0]
        else:
            obj = next((o for o in self.objectives if o.name == self._key(by)), None)
            if obj is None:
                raise ObjectiveError(f"by={by!r} is not an objective of this study; objectives: "
                                     f"{[self.label(n) for n in self.names]}")
        col = self.metrics[obj.name][idx] * obj.sign
        return self._pick_row(int(idx[np.argmin(col)]), buds, ranked_by=obj.name)

    def _require(self, idx: np.ndarray, budgets: Any) -> None:
        if len(idx):
            return
        buds = parse_budgets(budgets)
        hints = []
        for b in buds:
            if b.metric in self.metrics and len(self):
                col = self.column(b.metric)[self.feasible()]
                if len(col):
                    best = np.nanmin(col) if b.op in ("<=", "<") else np.nanmax(col)
                    hints.append(f"best {b.metric} among feasible trials is {best:g}")
        msg = f"no trial of {len(self)} meets budgets {[str(b) for b in tuple(self.budgets) + tuple(buds)]}"
        raise BudgetError(msg + ("; " + "; ".join(hints) if hints else ""))

    def _pick_row(self, i: int, budgets: Any = (), ranked_by: str | None = None) -> Pick:
        return Pick(arch=self.archs[i], trial=int(self.trials[i]),
                    metrics={k: float(v[i]) for k, v in self.metrics.items()},
                    budgets=tuple(str(b) for b in tuple(self.budgets) + tuple(parse_budgets(budgets))),
                    trials=self.trials_of(i), ranked_by=ranked_by, labels=dict(self.labels), sources=dict(self.sources))

    # ---- tables ----------------------------------------------------------------------------------------
    def rows(self, budgets: str | Sequence[str | Budget] | None = (), *, sort: str | None = None,
             top: int | None = None, descending: bool | None = None) -> list[dict[str, Any]]:
        """Front members as dicts (trial, trials, arch, every metric by its label), one per arch,
        sorted by `sort` (an objective/metric, or its label)."""
        idx = np.flatnonzero(self.front_mask(budgets))
        sort = self._key(sort or self.names[0])
        col = self.column(sort)[idx]
        if descending is None:
            o = next((o for o in self.objectives if o.name == sort), None)
            descending = o is not None and o.direction == "maximize"
        order = np.argsort(-col if descending else col, kind="stable")
        if top is not None:
            if top < 1:
                raise ValueError(f"top={top} must be >= 1")
            order = order[:top]
        keys = self.names + [k for k in self.metrics if k not in self.names]
        return [{"trial": int(self.trials[idx[j]]), "trials": list(self.trials_of(int(idx[j]))), "arch": self.archs[idx[j]],
                 **{self.label(k): float(self.metrics[k][idx[j]]) for k in keys}} for j in order]

    def to_frame(self, *, all_trials: bool = False) -> Any:
        """A pandas DataFrame of the front, one row per arch with its `trials` (or every trial with
        `feasible`, `front`, `rank` columns); metric columns by their labels."""
        import pandas as pd

        keys = self.names + [k for k in self.metrics if k not in self.names]
        if not all_trials:
            idx = np.flatnonzero(self.front_mask())
            return pd.DataFrame({"trial": self.trials[idx], "trials": [list(self.trials_of(int(i))) for i in idx],
                                 "arch": [self.archs[i] for i in idx],
                                 **{self.label(k): self.metrics[k][idx] for k in keys}})
        return pd.DataFrame({"trial": self.trials, "arch": list(self.archs),
                             **{self.label(k): self.metrics[k] for k in keys},
                             "feasible": self.feasible(), "front": self.front_mask(), "rank": self.ranks()})


def _meets(b: Budget, col: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return {"<=": col <= b.bound, "<": col < b.bound, ">=": col >= b.bound, ">": col > b.bound}[b.op]
