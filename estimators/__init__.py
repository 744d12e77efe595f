"""Estimators: devices, real-kernel measurement, lookup-table profiles, latency / memory / energy /
MACs / accuracy predictors, and a few-shot latency path.

What an arch costs on a device. May import `search_space` (block configurations, the block-kind
registry's layers and the network walk), `supernet` (static modules to measure) and `kernels`
(the `triton` backend); never `searchers`, which receive these predictors as objective callables.

    from hwnas.estimators import Device, build_predictors
    prof, lat = build_predictors(space, Device.from_name("cpu"), "results/runs/profiles/fmnist-cpu")
    lat.predict(arch)  # ms
"""

from __future__ import annotations

from hwnas.estimators._build import build_predictors
from hwnas.estimators.accuracy import AccuracyPredictor
from hwnas.estimators.bundle import Bundle, fixed_subnets, load_bundle, make_bundle
from hwnas.estimators.devices import BACKENDS, Device, available_devices, fingerprint_hash
from hwnas.estimators.energy import EnergyMeasurement, EnergyPredictor, PowerModel, measure_energy
from hwnas.estimators.fewshot import FewShotLatencyPredictor, fit_fewshot
from hwnas.estimators.flops import arch_macs, arch_params, count_fvcore
from hwnas.estimators.latency import LatencyPredictor, MacsProxy
from hwnas.estimators.measure import Timing, measure, measure_module, measure_onnx, time_callable
from hwnas.estimators.memory import MemoryEstimate, MemoryModel, measure_peak_memory
from hwnas.estimators.profile import MeasureSettings, Profile, profile, profile_on_ray

__all__ = [
    "Bundle",
    "fixed_subnets",
    "load_bundle",
    "make_bundle",
    "AccuracyPredictor",
    "BACKENDS",
    "Device",
    "EnergyMeasurement",
    "EnergyPredictor",
    "FewShotLatencyPredictor",
    "MacsProxy",
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
