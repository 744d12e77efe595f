"""Energy per inference: measured from hardware counters where they exist, else a labelled estimate.

Counters: NVML's total-energy counter on NVIDIA GPUs (mJ, Volta and newer) and RAPL through Linux
powercap (`/sys/class/powercap/intel-rapl:*/energy_uj`, package domain) on CPUs. The counters
tick slowly (RAPL ~1 ms, NVML ~10-100 ms), so a measurement runs N inferences for at least
`min_seconds` (default 1 s) and divides.

Where no counter is readable (this project's build machine, containers without powercap access),
energy is **estimated** as measured/predicted latency x a stated power model and every record says
`method: "estimated"` with the power model's description. Energy is never reported as 0.

Power model used for estimates (`PowerModel.default(device)`):
- CPU: 6 W per busy thread -- a typical active per-core share of a desktop/server x86 package
  (e.g. a 64-core 280 W EPYC is ~4.4 W/core, a 8-core 65 W desktop ~8 W/core); state your own with
  `PowerModel(watts=..., source=...)` when you know the part.
- GPU: 70% of the board power limit read from NVML, or 250 W when NVML is unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hwnas.estimators.devices import Device

__all__ = ["PowerModel", "EnergyMeasurement", "EnergyPredictor", "energy_counter", "measure_energy"]


@dataclass(frozen=True)
class PowerModel:
    """Average power (W) while running inference, and where the number comes from."""

    watts: float
    source: str

    def __post_init__(self) -> None:
        if not (self.watts > 0 and np.isfinite(self.watts)):
            raise ValueError(f"watts={self.watts!r} must be a positive finite number")

    @classmethod
    def default(cls, device: Device) -> PowerModel:
        if device.is_gpu:
            try:
                import pynvml

                pynvml.nvmlInit()
                h = pynvml.nvmlDeviceGetHandleByIndex(0)
                limit = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
                return cls(0.7 * limit, f"70% of the NVML power limit ({limit:.0f} W)")
            except Exception:
                return cls(250.0, "250 W assumed GPU board power (NVML unavailable)")
        return cls(6.0 * device.threads, f"6 W per busy CPU thread x {device.threads} thread(s) (assumed)")


@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy per inference from a counter window."""

    mj_per_inference: float
    method: str  # "nvml" | "rapl"
    seconds: float
    inferences: int
    avg_watts: float


class _Counter:
    def __init__(self, method: str, read: Callable[[], float], wrap: float | None = None):
        self.method, self.read, self.wrap = method, read, wrap

    def delta_mj(self, a: float, b: float) -> float:
        d = b - a
        if d < 0 and self.wrap:
            d += self.wrap
        return d


def energy_counter(device: Device) -> _Counter | None:
    """A readable energy counter for `device` (returns mJ), or None when none exists here."""
    if device.is_gpu:
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            return _Counter("nvml", lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)))
        except Exception:
            return None
    base = Path("/sys/class/powercap")
    for dom in sorted(base.glob("intel-rapl:*")) if base.is_dir() else []:
        f = dom / "energy_uj"
        try:
            if (dom / "name").read_text().strip().startswith("package"):
                float(f.read_text())
                wrap = float((dom / "max_energy_range_uj").read_text()) / 1000.0
                return _Counter("rapl", lambda f=f: float(f.read_text()) / 1000.0, wrap)
        except (OSError, ValueError):
            continue
    return None


def measure_energy(fn: Callable[[], Any], device: Device, *, min_seconds: float = 1.0, sync: Callable[[], Any] | None = None
                   ) -> EnergyMeasurement | None:
    """Run `fn` repeatedly for >= min_seconds and read the device's energy counter; None when there is none."""
    c = energy_counter(device)
    if c is None:
        return None
    for _ in range(3):
        fn()
    if sync:
        sync()
    n = 0
    e0, t0 = c.read(), time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 8 == 0:
            if sync:
                sync()
            if time.perf_counter() - t0 >= min_seconds:
                break
    if sync:
        sync()
    e1, t1 = c.read(), time.perf_counter()
    mj = c.delta_mj(e0, e1)
    if mj <= 0:
        return None  # counter did not move: refuse to report 0
    return EnergyMeasurement(mj / n, c.method, t1 - t0, n, mj / 1000.0 / (t1 - t0))


class EnergyPredictor:
    """Energy (mJ) per inference = latency (ms) x average power (W); power measured or a stated model.

    `method` is "estimated" unless `calibrate` measured a hardware counter, then "nvml"/"rapl".
    """

    def __init__(self, latency: Any, *, power: PowerModel | None = None, method: str = "estimated"):
        self.latency = latency
        self.power = power or PowerModel.default(latency.device)
        self.method = method

    @property
    def name(self) -> str:
        return f"energy_mj@{self.latency.device.name}"

    @property
    def label(self) -> str:
        return f"energy_mj ({self.method}: {self.power.source})"

    def predict(self, arch: Any) -> float:
        return float(self.predict_many([arch])[0])

    def predict_many(self, archs: list) -> np.ndarray:
        return np.asarray(self.latency.predict_many(archs)) * self.power.watts  # ms x W = mJ

    def record(self, arch: Any) -> dict[str, Any]:
        return {"energy_mj": self.predict(arch), "method": self.method, "power_w": self.power.watts,
                "power_source": self.power.source}

    def calibrate(self, space: Any, archs: list, *, min_seconds: float = 1.0) -> EnergyPredictor:
        """Measure real energy of `archs` on the device's counter; fit the average power. No counter: unchanged."""
        import torch
        from hwnas.supernet import build_static

        dev = self.latency.device
        if energy_counter(dev) is None:
            return self
        ratios = []
        for a in archs:
            a = space.parse(a)
            net = build_static(space, a).eval().to(dev.torch_device())
            x = torch.randn(dev.batch_size, space.in_channels, a.resolution, a.resolution, device=dev.torch_device())
            sync = torch.cuda.synchronize if dev.is_gpu else None
            with torch.inference_mode():
                m = measure_energy(lambda net=net, x=x: net(x), dev, min_seconds=min_seconds, sync=sync)
            if m is None:
                return self
            ratios.append(m.mj_per_inference / self.latency.predict(a))
        self.power = PowerModel(float(np.median(ratios)), f"measured with {m.method} over {len(archs)} networks")
        self.method = m.method
        return self
