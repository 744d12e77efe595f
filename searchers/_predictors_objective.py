"""The `predictors` objective provider: trained predictors as the search objective.

What the main job (`hwnas run`) optimises: accuracy from an accuracy predictor, and per device
latency, peak memory and energy from that device's predictors, plus closed-form parameters and
FLOPs. The provider receives the predictors already built (any object with `predict(arch)`), so
this module imports no estimator and no supernet: whoever has the predictors (the pipeline loads
them from a run directory) passes them in.

    fn = make_objective(space, "predictors", accuracy=acc, latency={"cpu": lat_cpu},
                        memory=MemoryModel(space, batch_size=1), energy={"cpu": EnergyPredictor(lat_cpu)})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hwnas.errors import ObjectiveError
from hwnas.search_space import Arch, Space
from hwnas.searchers._objectives import ObjectiveFn, arch_cost, register_objective_provider

__all__ = ["PredictorObjective", "predictor_objective"]


class PredictorObjective:
    """Arch -> {accuracy, latency_ms@dev..., peak_mem_mb@dev, energy_mj@dev, params, macs, flops} from predictors."""

    def __init__(self, space: Space, accuracy: Any, latency: Mapping[str, Any], memory: Any,
                 energy: Mapping[str, Any]):
        self.space, self.accuracy, self.latency, self.memory, self.energy = space, accuracy, latency, memory, energy
        # closed-form MACs and parameters (equal to counting the static net's, which costs ms per trial)
        self._cost = arch_cost

    def __call__(self, arch: Arch) -> dict[str, float]:
        out = {"accuracy": float(self.accuracy.predict(arch))}
        for dev, pred in self.latency.items():
            out[f"latency_ms@{dev}"] = float(pred.predict(arch))
        for dev, e in self.energy.items():
            out[f"energy_mj@{dev}"] = float(e.predict(arch))
        mem = float(self.memory.predict(arch))
        for dev in self.latency:
            out[f"peak_mem_mb@{dev}"] = mem
        cost = self._cost(self.space, arch)
        out["params"] = float(cost["params"])
        out["macs"] = float(cost["macs"])
        out["flops"] = float(cost["flops"])  # 2 x MACs, as everywhere
        return out

    def predict_many(self, archs: Sequence[Arch]) -> list[dict[str, float]]:
        """Every arch at once: one `predict_many` per predictor (a search generation in one call)."""
        archs = list(archs)
        if not archs:
            return []
        cols: dict[str, Any] = {"accuracy": _many(self.accuracy, archs)}
        for dev, pred in self.latency.items():
            cols[f"latency_ms@{dev}"] = _many(pred, archs)
        for dev, e in self.energy.items():
            cols[f"energy_mj@{dev}"] = _many(e, archs)
        mem = _many(self.memory, archs)
        for dev in self.latency:
            cols[f"peak_mem_mb@{dev}"] = mem
        rows = []
        for i, a in enumerate(archs):
            row = {k: float(v[i]) for k, v in cols.items()}
            cost = self._cost(self.space, a)
            row["params"], row["macs"], row["flops"] = float(cost["params"]), float(cost["macs"]), float(cost["flops"])
            rows.append(row)
        return rows


def _many(pred: Any, archs: list[Arch]) -> list[float]:
    many = getattr(pred, "predict_many", None)
    out = list(many(archs)) if callable(many) else [pred.predict(a) for a in archs]
    if len(out) != len(archs):
        raise ObjectiveError(f"{type(pred).__name__}.predict_many returned {len(out)} values for {len(archs)} archs")
    return out


def predictor_objective(space: Space, *, accuracy: Any = None, latency: Mapping[str, Any] | None = None,
                        memory: Any = None, energy: Mapping[str, Any] | None = None, **_: Any) -> ObjectiveFn:
    """Provider factory: `accuracy` and `memory` are predictors, `latency` / `energy` map a device
    name to its predictor (energy may be omitted: no `energy_mj` metrics then)."""
    missing = [k for k, v in (("accuracy", accuracy), ("latency", latency), ("memory", memory))
               if v is None or (isinstance(v, Mapping) and not v)]
    if missing:
        raise ObjectiveError(f"objective provider 'predictors' needs predictor(s) {missing}: pass them as options "
                             "(accuracy=, latency={device: predictor}, memory=, energy={device: predictor})")
    for name, obj in [("accuracy", accuracy), ("memory", memory), *((f"latency[{d}]", p) for d, p in latency.items()),
                      *((f"energy[{d}]", p) for d, p in (energy or {}).items())]:
        if not callable(getattr(obj, "predict", None)):
            raise ObjectiveError(f"objective provider 'predictors': {name} is a {type(obj).__name__}, "
                                 "expected an object with predict(arch)")
    return PredictorObjective(space, accuracy, dict(latency), memory, dict(energy or {}))


register_objective_provider(
    "predictors", predictor_objective,
    metrics=("accuracy", "latency_ms", "peak_mem_mb", "energy_mj", "params", "macs", "flops"),
    help="trained predictors passed as options (accuracy, latency and energy per device, memory), plus "
    "analytic params, macs and flops (2 x MACs); what `hwnas run` searches",
)
