"""Estimators: devices, real-kernel measurement, lookup-table profiles, latency / memory / energy /
FLOPs / accuracy predictors, and a few-shot latency path.

    from hwnas.estimators import Device, build_predictors
    prof, lat = build_predictors(space, Device.from_name("cpu"), "results/runs/profiles/fmnist-cpu")
    lat.predict(arch)  # ms

The names below load on first use (PEP 562), so `import hwnas.estimators` and the `hwnas` CLI
start without importing torch, triton or optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AccuracyPredictor": ("hwnas.estimators.accuracy", "AccuracyPredictor"),
    "BACKENDS": ("hwnas.estimators.devices", "BACKENDS"),
    "Device": ("hwnas.estimators.devices", "Device"),
    "EnergyMeasurement": ("hwnas.estimators.energy", "EnergyMeasurement"),
    "EnergyPredictor": ("hwnas.estimators.energy", "EnergyPredictor"),
    "FewShotLatencyPredictor": ("hwnas.estimators.fewshot", "FewShotLatencyPredictor"),
    "FlopsProxy": ("hwnas.estimators.latency", "FlopsProxy"),
    "LatencyPredictor": ("hwnas.estimators.latency", "LatencyPredictor"),
    "MeasureSettings": ("hwnas.estimators.profile", "MeasureSettings"),
    "MemoryEstimate": ("hwnas.estimators.memory", "MemoryEstimate"),
    "MemoryModel": ("hwnas.estimators.memory", "MemoryModel"),
    "PowerModel": ("hwnas.estimators.energy", "PowerModel"),
    "Profile": ("hwnas.estimators.profile", "Profile"),
    "Timing": ("hwnas.estimators.measure", "Timing"),
    "arch_macs": ("hwnas.estimators.flops", "arch_macs"),
    "arch_params": ("hwnas.estimators.flops", "arch_params"),
    "available_devices": ("hwnas.estimators.devices", "available_devices"),
    "build_predictors": ("hwnas.estimators._build", "build_predictors"),
    "count_fvcore": ("hwnas.estimators.flops", "count_fvcore"),
    "fingerprint_hash": ("hwnas.estimators.devices", "fingerprint_hash"),
    "fit_fewshot": ("hwnas.estimators.fewshot", "fit_fewshot"),
    "measure": ("hwnas.estimators.measure", "measure"),
    "measure_energy": ("hwnas.estimators.energy", "measure_energy"),
    "measure_module": ("hwnas.estimators.measure", "measure_module"),
    "measure_onnx": ("hwnas.estimators.measure", "measure_onnx"),
    "measure_peak_memory": ("hwnas.estimators.memory", "measure_peak_memory"),
    "profile": ("hwnas.estimators.profile", "profile"),
    "profile_on_ray": ("hwnas.estimators.profile", "profile_on_ray"),
    "time_callable": ("hwnas.estimators.measure", "time_callable"),
}

__all__ = [
    "AccuracyPredictor",
    "BACKENDS",
    "Device",
    "EnergyMeasurement",
    "EnergyPredictor",
    "FewShotLatencyPredictor",
    "FlopsProxy",
    "LatencyPredictor",
    "MeasureSettings",
    "MemoryEstimate",
    "MemoryModel",
    "PowerModel",
    "Profile",
    "Timing",
    "arch_macs",
    "arch_params",
    "available_devices",
    "build_predictors",
    "count_fvcore",
    "fingerprint_hash",
    "fit_fewshot",
    "measure",
    "measure_energy",
    "measure_module",
    "measure_onnx",
    "measure_peak_memory",
    "profile",
    "profile_on_ray",
    "time_callable",
]


def __getattr__(name: str) -> Any:
    try:
        mod, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
