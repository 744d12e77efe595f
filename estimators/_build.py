"""One call for the pipeline: a profile (reused when its fingerprint matches) and its latency predictor."""

from __future__ import annotations

import os
from pathlib import Path

from hwnas.estimators.devices import Device
from hwnas.estimators.latency import LatencyPredictor
from hwnas.estimators.profile import MeasureSettings, Profile, profile
from hwnas.search_space import Space

__all__ = ["build_predictors", "PREDICTOR_FILE"]

PREDICTOR_FILE = "latency_predictor.json"


def build_predictors(space: Space | str, device: Device | str, out_dir: str | os.PathLike, *, n_networks: int = 50,
                     progress: bool = True, allow_stale: bool = False, settings: MeasureSettings | None = None,
                     seed: int = 0) -> tuple[Profile, LatencyPredictor]:
    """Profile `space` on `device` into `out_dir` (resuming / reusing what is there) and fit its latency predictor.

    A complete profile with the same fingerprint is reused without measuring anything; a stale one
    raises `StaleProfileError` unless `allow_stale`. The predictor is saved as
    `out_dir/latency_predictor.json` (+ `.npz`) and reloaded when it is newer than the tables.
    """
    space = Space.preset(space) if isinstance(space, str) else space
    device = Device.from_name(device) if isinstance(device, str) else device
    prof = profile(space, device, out_dir, n_networks=n_networks, progress=progress, allow_stale=allow_stale,
                   settings=settings, seed=seed)
    path = Path(out_dir) / PREDICTOR_FILE
    tables = [Path(out_dir) / n for n in ("lut.csv", "networks.csv")]
    if prof.measured_now == 0 and path.is_file() and all(path.stat().st_mtime >= t.stat().st_mtime for t in tables):
        pred = LatencyPredictor.load(path, device=None if allow_stale else device, allow_stale=allow_stale)
    else:
        pred = LatencyPredictor.from_profile(prof)
        pred.save(path)
    return prof, pred
