"""Objectives: named metrics with directions, and the registry of objective providers.

A metric name is `base` or `base@device` (`latency_ms@cpu`, `peak_mem_mb@jetson`); its direction
comes from the base (`accuracy` is maximised, costs are minimised) and may be overridden with a
`:max` / `:min` suffix (`params:max` uses capacity as a stand-in for accuracy in benchmarks).

Units of the cost metrics, one meaning each everywhere: `macs` counts multiply-accumulates (what
fvcore calls "flops"); `flops` is exactly 2 x `macs` (one multiply plus one add). Studies written
before this rule stored MACs under `flops`; `arch_cost` replaced `analytic_cost`, whose `flops` key
held MACs, and the old name raises an error that says so rather than silently doubling.

An objective function is any callable `Arch -> dict[str, float]`. The search code never imports
the supernet: a provider factory builds such a callable from a `Space` (the lead plugs the latency
predictors and the supernet accuracy in with `register_objective_provider`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwnas.errors import ObjectiveError
from hwnas.search_space import Arch, Space, block_params
from hwnas.search_space import block_macs as _block_macs

__all__ = [
    "BASE_METRICS",
    "Objective",
    "ObjectiveFn",
    "parse_objectives",
    "check_values",
    "evaluate_many",
    "register_objective_provider",
    "objective_providers",
    "make_objective",
    "check_provided",
    "arch_cost",
    "analytic_objective",
]

ObjectiveFn = Callable[[Arch], Mapping[str, float]]

# Direction of every known metric base; per-device metrics take a `@device` suffix.
BASE_METRICS: dict[str, str] = {
    "accuracy": "maximize",
    "latency_ms": "minimize",
    "peak_mem_mb": "minimize",
    "energy_mj": "minimize",
    "macs": "minimize",
    "flops": "minimize",  # exactly 2 x macs
    "params": "minimize",
}
_DEVICE_METRICS = {"latency_ms", "peak_mem_mb", "energy_mj"}
_METRIC_RE = re.compile(r"^(?P<base>[a-z_][a-z0-9_]*)(?:@(?P<device>[A-Za-z0-9_.\-]+))?(?::(?P<dir>max|min))?$")
# Extra analytic metrics used by the test objective (documented in docs/search.md).
_EXTRA_METRICS = {"f1": "minimize", "f2": "minimize"}


@dataclass(frozen=True)
class Objective:
    """One optimised metric: its full name (`latency_ms@cpu`) and direction (`minimize`/`maximize`)."""

    name: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"direction {self.direction!r} not allowed; allowed: ['minimize', 'maximize']")
        if not self.name:
            raise ValueError("objective name must be non-empty")

    @property
    def base(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def device(self) -> str | None:
        return self.name.split("@", 1)[1] if "@" in self.name else None

    @property
    def sign(self) -> float:
        """+1 for minimised metrics, -1 for maximised ones (so `sign * value` is always minimised)."""
        return 1.0 if self.direction == "minimize" else -1.0

    @classmethod
    def parse(cls, spec: str | Objective) -> Objective:
        """Parse `accuracy`, `latency_ms@cpu`, `params:max`...; ObjectiveError names a bad spec."""
        if isinstance(spec, Objective):
            return spec
        s = str(spec).strip()
        m = _METRIC_RE.match(s)
        if not m:
            raise ObjectiveError(
                f"objective {spec!r} is malformed; expected NAME, NAME@DEVICE or NAME[:max|:min] "
                f"with NAME one of {sorted(BASE_METRICS)} (e.g. 'latency_ms@cpu', 'accuracy')"
            )
        base, device, d = m.group("base"), m.group("device"), m.group("dir")
        known = {**BASE_METRICS, **_EXTRA_METRICS}
        if base not in known:
            raise ObjectiveError(f"unknown objective {base!r} in {spec!r}; known: {sorted(BASE_METRICS)}")
        if base in _DEVICE_METRICS and device is None:
            raise ObjectiveError(f"objective {spec!r} needs a device, e.g. '{base}@cpu'")
        if base not in _DEVICE_METRICS and device is not None:
            raise ObjectiveError(f"objective {base!r} is not per device; drop '@{device}' from {spec!r}")
        direction = known[base] if d is None else ("maximize" if d == "max" else "minimize")
        name = base if device is None else f"{base}@{device}"
        return cls(name=name, direction=direction)

    def spec(self) -> str:
        """The string that parses back to this objective (direction suffix only when overridden)."""
        default = {**BASE_METRICS, **_EXTRA_METRICS}.get(self.base)
        return self.name if default == self.direction else f"{self.name}:{'max' if self.direction == 'maximize' else 'min'}"


def parse_objectives(specs: str | Iterable[str | Objective]) -> tuple[Objective, ...]:
    """Parse objectives from a comma-separated string or a list; names must be distinct."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    objs = tuple(Objective.parse(s) for s in specs)
    if not objs:
        raise ObjectiveError("at least one objective is needed (e.g. 'accuracy,latency_ms@cpu')")
    names = [o.name for o in objs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ObjectiveError(f"objective(s) {dup} given twice")
    return objs


def check_values(values: Any, needed: Sequence[str], arch: Arch | str = "") -> dict[str, float]:
    """Validate an objective's return value: a mapping with every needed metric, finite floats."""
    if not isinstance(values, Mapping):
        raise ObjectiveError(f"objective returned {type(values).__name__}, expected a dict of metric -> float")
    out: dict[str, float] = {}
    for k, v in values.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ObjectiveError(f"objective returned a non-numeric value {v!r} for {k!r} (arch {arch})") from None
    missing = [n for n in needed if n not in out]
    if missing:
        raise ObjectiveError(
            f"objective did not return metric(s) {missing} (arch {arch}); it returned {sorted(out)}"
        )
    bad = {k: v for k, v in out.items() if not math.isfinite(v)}
    if bad:
        raise ObjectiveError(f"objective returned non-finite value(s) {bad} for arch {arch}")
    return out


# ---- provider registry ---------------------------------------------------------------------------
# A factory takes (space, **options) and returns an ObjectiveFn; it is called in the process that
# evaluates trials (Ray workers included), so it should be a module-level function.
ProviderFactory = Callable[..., ObjectiveFn]
_PROVIDERS: dict[str, tuple[ProviderFactory, tuple[str, ...], str]] = {}


def register_objective_provider(
    name: str, factory: ProviderFactory, *, metrics: Sequence[str] = (), help: str = ""
) -> None:
    """Make `factory(space, **options) -> (Arch -> dict)` available by `name` (`--objective-provider`).

    `metrics` lists the metric bases it returns (for `--help` and early errors; empty = any).
    Registering an existing name replaces it, so the lead can swap in trained predictors.
    """
    if not re.match(r"^[a-z][a-z0-9_\-]*$", name):
        raise ValueError(f"provider name {name!r} must match [a-z][a-z0-9_-]*")
    if not callable(factory):
        raise ValueError(f"provider {name!r}: factory must be callable, got {type(factory).__name__}")
    _PROVIDERS[name] = (factory, tuple(metrics), help)


def objective_providers() -> dict[str, tuple[tuple[str, ...], str]]:
    """Registered providers: name -> (metric bases, help)."""
    return {k: (v[1], v[2]) for k, v in sorted(_PROVIDERS.items())}


def evaluate_many(fn: ObjectiveFn, archs: Sequence[Arch]) -> list[Any]:
    """`fn` on every arch: one `fn.predict_many(archs)` call when it has one (a generation of a
    search in one vectorised call), else `fn(arch)` in turn."""
    many = getattr(fn, "predict_many", None)
    if callable(many):
        out = list(many(list(archs)))
        if len(out) != len(archs):
            raise ObjectiveError(f"predict_many returned {len(out)} results for {len(archs)} archs")
        return out
    return [fn(a) for a in archs]


def check_provided(providers: str | Sequence[str], metrics: Iterable[str], what: str = "objective or budget") -> None:
    """Refuse a metric that none of the named providers returns, before a study is created.

    Such a metric would fail every trial (25 of them land in the database before the search gives
    up). Providers that declare no metrics may return anything, so they disable the check.
    """
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    declared: set[str] = set()
    for p in providers:
        if p not in _PROVIDERS:
            raise ObjectiveError(f"unknown objective provider {p!r}; registered: {sorted(_PROVIDERS)}")
        if not _PROVIDERS[p][1]:
            return
        declared.update(_PROVIDERS[p][1])
    for m in metrics:
        base = m.split("@", 1)[0].split(":", 1)[0]
        if base not in declared:
            raise ObjectiveError(
                f"{what} {m!r}: provider(s) {list(providers)} do not compute {base!r} (they return "
                f"{sorted(declared)}); choose a provider that does (see `hwnas search --list-providers`)"
            )


class _Combined:
    """Calls several objective functions and merges their dicts (picklable for Ray)."""

    def __init__(self, fns: Sequence[ObjectiveFn]):
        self.fns = list(fns)

    def __call__(self, arch: Arch) -> dict[str, float]:
        out: dict[str, float] = {}
        for fn in self.fns:
            out.update(fn(arch))
        return out

    def predict_many(self, archs: Sequence[Arch]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in archs]
        for fn in self.fns:
            for d, v in zip(out, evaluate_many(fn, archs)):
                d.update(v)
        return out


def make_objective(space: Space, providers: str | Sequence[str], **options: Any) -> ObjectiveFn:
    """Build one objective function from provider names (comma-separated or a list)."""
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    if not providers:
        raise ObjectiveError(f"no objective provider given; registered: {sorted(_PROVIDERS)}")
    fns = []
    for p in providers:
        if p not in _PROVIDERS:
            raise ObjectiveError(f"unknown objective provider {p!r}; registered: {sorted(_PROVIDERS)}")
        fns.append(_PROVIDERS[p][0](space, **options))
    return fns[0] if len(fns) == 1 else _Combined(fns)


# ---- analytic MACs / FLOPs / params (no torch; the block-kind registry's closed forms) -----------------
def arch_cost(space: Space, arch: Arch) -> dict[str, float]:
    """`macs` (multiply-accumulates, as fvcore counts its convs and linears), `flops` (= 2 x macs) and
    `params` (exactly the static net's parameter count) of `arch`, batch 1."""
    macs = params = 0
    for c in space.block_configs(arch):
        macs += _block_macs(space, c)
        params += block_params(space, c)
    return {"macs": float(macs), "flops": float(2 * macs), "params": float(params)}


def __getattr__(name: str) -> Any:
    # ImportError, not AttributeError: `from ... import analytic_cost` replaces an AttributeError's message
    if name == "analytic_cost":
        raise ImportError(
            "analytic_cost was renamed arch_cost: its 'flops' key held MACs, while 'flops' now means 2 x MACs "
            "everywhere; arch_cost returns 'macs', 'flops' (= 2 x macs) and 'params' (see docs/search.md)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CostObjective:
    """Analytic cost metrics (a subset of `arch_cost`'s); memoised per arch string (searches revisit archs)."""

    def __init__(self, space: Space, metrics: tuple[str, ...] = ("macs", "flops", "params")):
        self.space, self.metrics = space, metrics
        self._cache: dict[str, dict[str, float]] = {}
        # (macs, params) of each block configuration met: a space has a few hundred, and an arch's cost
        # is the sum over its blocks (what `arch_cost` adds up), so a new arch costs lookups, not closed forms
        self._blocks: dict[Any, tuple[int, int]] = {}

    def __call__(self, arch: Arch) -> dict[str, float]:
        key = arch.to_string()
        v = self._cache.get(key)
        if v is None:
            macs = params = 0
            blocks = self._blocks
            for c in self.space.block_configs(arch):
                b = blocks.get(c)
                if b is None:
                    b = blocks[c] = (_block_macs(self.space, c), block_params(self.space, c))
                macs += b[0]
                params += b[1]
            cost = {"macs": float(macs), "flops": float(2 * macs), "params": float(params)}
            v = self._cache[key] = {m: cost[m] for m in self.metrics}
        return dict(v)

    def predict_many(self, archs: Sequence[Arch]) -> list[dict[str, float]]:
        return [self(a) for a in archs]  # closed forms per block: no array form to gain from


class _AnalyticObjective:
    """A cheap ZDT1-like bi-objective test function over a space's choices (both minimised).

    Every elastic choice becomes its index fraction t_i in [0, 1] (`space.to_choices` order). With
    a = mean of the first half of the t's and b = mean of the second half: f1 = a,
    g = 1 + 9 b, f2 = g (1 - sqrt(f1 / g)). The true front is every arch with b = 0
    (f2 = 1 - sqrt(f1)); on a small space it is found exactly by enumeration. `macs`, `flops` and
    `params` are returned too, so budgets on real cost metrics can be tried.
    """

    def __init__(self, space: Space):
        self.space = space
        self.choices = space.choices()
        if len(self.choices) < 2:
            raise ObjectiveError(f"the analytic objective needs a space with >= 2 elastic choices; {space.name!r} has {len(self.choices)}")
        self._cost = _CostObjective(space)

    def fractions(self, arch: Arch) -> list[float]:
        c = self.space.to_choices(arch)
        return [list(v).index(c[k]) / (len(v) - 1) for k, v in self.choices.items()]

    def __call__(self, arch: Arch) -> dict[str, float]:
        t = self.fractions(arch)
        h = len(t) // 2
        f1 = sum(t[:h]) / h
        g = 1.0 + 9.0 * sum(t[h:]) / (len(t) - h)
        f2 = g * (1.0 - math.sqrt(f1 / g))
        return {"f1": f1, "f2": f2, **self._cost(arch)}

    def predict_many(self, archs: Sequence[Arch]) -> list[dict[str, float]]:
        # arch by arch, with the same float operations as __call__: a batch gives the same values
        return [self(a) for a in archs]


def analytic_objective(space: Space, **_: Any) -> ObjectiveFn:
    return _AnalyticObjective(space)


def _flops_factory(space: Space, **_: Any) -> ObjectiveFn:
    return _CostObjective(space, ("flops", "params"))


def _macs_factory(space: Space, **_: Any) -> ObjectiveFn:
    return _CostObjective(space, ("macs", "params"))


register_objective_provider(
    "macs", _macs_factory, metrics=("macs", "params"),
    help="analytic multiply-accumulates and parameter count of the static subnet (no training needed)",
)
register_objective_provider(
    "flops", _flops_factory, metrics=("flops", "params"),
    help="analytic FLOPs (= 2 x multiply-accumulates) and parameter count of the static subnet",
)
register_objective_provider(
    "analytic", analytic_objective, metrics=("f1", "f2", "macs", "flops", "params"),
    help="ZDT1-like test function f1/f2 over the choice indices (known true front), plus macs/flops/params",
)
