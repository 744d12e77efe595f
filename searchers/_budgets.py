"""Budgets: hard constraints on metrics, parsed from strings like `latency_ms@cpu<=4`.

A budget becomes an Optuna constraint value (`trial.set_constraint`): feasible when <= 0. Trials
that break a budget are kept in the study (so samplers learn from them) but never enter a front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hwnas.errors import BudgetError, ObjectiveError
from hwnas.searchers._objectives import Objective

__all__ = ["Budget", "parse_budgets", "check_satisfiable"]

_OPS = ("<=", ">=", "<", ">")
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_BUDGET_RE = re.compile(r"^\s*(?P<metric>[^<>=\s]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[^\s]+)\s*$")


def _parse_number(text: str, expr: str) -> float:
    t = text.strip()
    mult = 1.0
    if t and t[-1] in _SUFFIX:
        mult, t = _SUFFIX[t[-1]], t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise BudgetError(f"budget {expr!r}: {text!r} is not a number (e.g. 4, 0.5, 1e6, 2.5M)") from None
    if not math.isfinite(v):
        raise BudgetError(f"budget {expr!r}: bound {text!r} must be finite")
    return v


@dataclass(frozen=True)
class Budget:
    """`metric op bound`, e.g. Budget(metric="latency_ms@cpu", op="<=", bound=4.0)."""

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise BudgetError(f"budget operator {self.op!r} not allowed; allowed: {list(_OPS)}")
        if not math.isfinite(self.bound):
            raise BudgetError(f"budget bound {self.bound!r} must be finite")

    @classmethod
    def parse(cls, expr: str | Budget) -> Budget:
        """Parse `latency_ms@cpu<=4`, `params<=1e6`, `accuracy>=0.9`, `flops<5M`."""
        if isinstance(expr, Budget):
            return expr
        m = _BUDGET_RE.match(str(expr))
        if not m:
            raise BudgetError(
                f"budget {expr!r} is malformed; expected METRIC<=VALUE or METRIC>=VALUE "
                "(e.g. 'latency_ms@cpu<=4', 'params<=1e6', 'accuracy>=0.9')"
            )
        try:
            metric = Objective.parse(m.group("metric")).name
        except ObjectiveError as e:
            raise BudgetError(f"budget {expr!r}: {e}") from None
        return cls(metric=metric, op=m.group("op"), bound=_parse_number(m.group("value"), str(expr)))

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, values: Mapping[str, float]) -> float:
        """Optuna constraint value: <= 0 when met, else how far off (in the metric's unit)."""
        if self.metric not in values:
            raise ObjectiveError(
                f"budget {self} needs metric {self.metric!r}, which the objective did not return "
                f"(it returned {sorted(values)})"
            )
        v = float(values[self.metric])
        d = v - self.bound if self.op in ("<=", "<") else self.bound - v
        # A strict bound reached exactly counts as broken by the smallest positive amount.
        if self.op in ("<", ">") and d == 0.0:
            return math.ulp(abs(self.bound)) or 5e-324
        return d

    def ok(self, value: float) -> bool:
        return {"<=": value <= self.bound, "<": value < self.bound, ">=": value >= self.bound, ">": value > self.bound}[self.op]


def parse_budgets(exprs: str | Budget | Iterable[str | Budget] | None) -> tuple[Budget, ...]:
    """Budgets from a string (comma- or semicolon-separated) or a list of strings / Budgets."""
    if exprs is None:
        return ()
    if isinstance(exprs, (str, Budget)):
        exprs = [exprs]
    out: list[Budget] = []
    for e in exprs:
        if isinstance(e, Budget):
            out.append(e)
            continue
        parts = [p for p in re.split(r"[;,]", str(e)) if p.strip()]
        if not parts:
            raise BudgetError(f"budget {e!r} is empty")
        out.extend(Budget.parse(p) for p in parts)
    return tuple(out)


def check_satisfiable(budgets: Iterable[Budget], floor: Mapping[str, float] | None = None,
                      ceiling: Mapping[str, float] | None = None) -> None:
    """Refuse budgets that no arch can meet, before a search spends trials on them.

    Two budgets on one metric may leave an empty interval (`params<=1e5` and `params>=1e7`). With
    `floor` / `ceiling` (the smallest and largest value a metric takes in the space, known exactly
    for the analytic costs) an upper bound below the floor, or a lower bound above the ceiling,
    leaves nothing feasible either. Each says so in one line naming the budgets.
    """
    lo: dict[str, tuple[float, bool, Budget]] = {}  # metric -> (bound, strict, budget) of the tightest
    hi: dict[str, tuple[float, bool, Budget]] = {}
    for b in budgets:
        strict = b.op in ("<", ">")
        side = hi if b.op in ("<=", "<") else lo
        cur = side.get(b.metric)
        tighter = cur is None or (b.bound < cur[0] if side is hi else b.bound > cur[0]) or (b.bound == cur[0] and strict)
        if tighter:
            side[b.metric] = (b.bound, strict, b)
    for m in set(lo) & set(hi):
        (lb, ls, lbud), (ub, us, ubud) = lo[m], hi[m]
        if lb > ub or (lb == ub and (ls or us)):
            raise BudgetError(f"budgets {str(lbud)!r} and {str(ubud)!r} contradict each other: no arch can be feasible")
    for m, (ub, us, ubud) in hi.items():
        f = (floor or {}).get(m)
        if f is not None and (f > ub or (f == ub and us)):
            raise BudgetError(f"budget {str(ubud)!r}: the smallest arch of the space has {m}={f:g}, so no arch can "
                              "be feasible")
    for m, (lb, ls, lbud) in lo.items():
        c = (ceiling or {}).get(m)
        if c is not None and (c < lb or (c == lb and ls)):
            raise BudgetError(f"budget {str(lbud)!r}: the largest arch of the space has {m}={c:g}, so no arch can "
                              "be feasible")
