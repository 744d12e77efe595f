"""Profiling a space on a device: a lookup table of real block timings plus whole-network samples.

A profile is a directory:
- `profile.json`  the space, the device, its fingerprint (+ hash) and the measuring settings;
- `lut.csv`       one row per distinct block configuration (`space.distinct_block_configs()`, stem and
                  head included): median/IQR/mean/min ms, repeats, calls per sample, raw samples;
- `networks.csv`  N whole subnets timed end to end for the correction model (stratified over MACs and depth);
- `lut.parquet`, `networks.parquet`: Parquet copies written when a run ends (fingerprint in the metadata).

Both tables are append-only journals: each measured row is written and fsync'ed at once, so a
killed run loses at most the row in flight and the next run measures only what is missing.
A profile measured under another fingerprint is refused (`StaleProfileError`) unless the caller
passes `allow_stale=True` (`--allow-stale`).

(Over ~400 lines on purpose: the profile record, its journaled tables and the local / Ray
measuring loops share one on-disk format and its repair rules; splitting them would spread that
format over several files.)
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_json, atomic_write_text, read_json
from hwnas.errors import ProfileError, StaleProfileError
from hwnas.estimators.devices import Device, fingerprint_hash, host_details, warn_if_host_changed
from hwnas.estimators.latency_check import NETWORK_SAMPLING, network_archs
from hwnas.estimators.measure import DEFAULT_REPEATS, DEFAULT_WARMUP, Timing, measure_module
from hwnas.search_space import Arch, BlockConfig, Space

__all__ = ["Profile", "MeasureSettings", "profile", "profile_on_ray", "build_block", "LUT_COLUMNS",
           "NET_COLUMNS", "PROFILE_FORMAT"]

PROFILE_FORMAT = "hwnas-profile"
PROFILE_VERSION = 1
LUT_COLUMNS = ["key", "kind", "cin", "cout", "kernel", "expand", "stride", "in_size", "se", "act",
               "median_ms", "iqr_ms", "mean_ms", "min_ms", "repeats", "number", "samples_ms"]
NET_COLUMNS = ["arch", "resolution", "num_blocks", "median_ms", "iqr_ms", "mean_ms", "min_ms", "repeats",
               "number", "samples_ms"]
_NUMERIC_LUT = ["cin", "cout", "kernel", "expand", "stride", "in_size", "median_ms", "iqr_ms", "mean_ms", "min_ms",
                "repeats", "number"]


@dataclass(frozen=True)
class MeasureSettings:
    """How each kernel is timed (saved in profile.json so a resumed run times the same way)."""

    warmup: int = DEFAULT_WARMUP
    repeats: int = DEFAULT_REPEATS
    min_sample_ms: float = 1.0
    net_repeats: int = DEFAULT_REPEATS
    # Which statistic of the samples the predictors use. "min" is the default because on a shared
    # machine a neighbour process inflates whole runs of samples (we saw IQR/median ~ 0.7 on 2 busy
    # cores) while the fastest sample still reflects the kernel itself (timeit's advice); "median" is
    # the better choice on a quiet, dedicated device. Both, the IQR and the raw samples are stored.
    statistic: str = "min"

    def __post_init__(self) -> None:
        if self.statistic not in ("min", "median"):
            raise ValueError(f"statistic={self.statistic!r}; allowed: min, median")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup} must be >= 0")
        if self.repeats < 3 or self.net_repeats < 3:
            raise ValueError(f"repeats={self.repeats}/net_repeats={self.net_repeats} must be >= 3 (median and IQR)")
        if not 0.0 < self.min_sample_ms <= 1000.0:
            raise ValueError(f"min_sample_ms={self.min_sample_ms} must be in (0, 1000]")


# ---- blocks as real modules ---------------------------------------------------------------------------
def build_block(space: Space, c: BlockConfig) -> Any:
    """A real static module for one block configuration (stem, stage block or head), built by the
    static module its kind registered (`hwnas.supernet.static.build_block`)."""
    from hwnas.supernet.static import build_block as _build

    return _build(space, c)


def block_input_shape(c: BlockConfig, batch: int) -> tuple[int, int, int, int]:
    return (batch, c.cin, c.in_size, c.in_size)


# ---- the profile record ----------------------------------------------------------------------------------
@dataclass
class Profile:
    """A loaded profile: the lookup table, the whole-network samples, and what they were measured on."""

    dir: Path
    space: Space
    device: Device
    fingerprint: dict[str, Any]
    settings: MeasureSettings
    table: Any  # pandas.DataFrame, LUT_COLUMNS
    networks: Any  # pandas.DataFrame, NET_COLUMNS
    meta: dict[str, Any] = field(default_factory=dict)
    measured_now: int = 0  # rows (blocks + networks) measured by the call that returned this object
    seconds: float = 0.0  # wall time of that call

    @property
    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.fingerprint)

    @property
    def complete(self) -> bool:
        want = {c.key for c in self.space.distinct_block_configs()}
        return want <= set(self.table["key"]) and len(self.networks) >= int(self.meta.get("n_networks", 0))

    def lut(self, statistic: str | None = None) -> dict[str, float]:
        """Block key -> milliseconds (the settings' statistic, "min" or "median", unless given)."""
        col = f"{statistic or self.settings.statistic}_ms"
        return dict(zip(self.table["key"], self.table[col].astype(float)))

    def network_archs(self) -> list[Arch]:
        return [self.space.parse(s) for s in self.networks["arch"]]

    def network_latency_ms(self, statistic: str | None = None) -> np.ndarray:
        col = f"{statistic or self.settings.statistic}_ms"
        return self.networks[col].to_numpy(dtype=np.float64)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Device | str | None = None, allow_stale: bool = False) -> Profile:
        """Read a profile directory; refuse it when `device`'s fingerprint differs (unless `allow_stale`)."""
        d = Path(path)
        meta = _read_meta(d)
        space, dev, fp, settings = _meta_parts(d, meta)
        if device is not None:
            want = Device.from_name(device) if isinstance(device, str) else device
            _check_fingerprint(d, fp, want.fingerprint(), allow_stale)
            if not allow_stale:
                warn_if_host_changed(f"profile {str(d)!r}", meta.get("host"))
            dev = want if allow_stale else dev
        table = _read_table(d / "lut.csv", LUT_COLUMNS, repair=False)
        nets = _read_table(d / "networks.csv", NET_COLUMNS, repair=False)
        _validate_lut(d, table)
        _validate_nets(d, nets)
        return cls(d, space, dev, fp, settings, table, nets, meta)


def _read_meta(d: Path) -> dict[str, Any]:
    p = d / "profile.json"
    if not d.is_dir():
        raise ProfileError(f"profile directory {str(d)!r} does not exist (create it with `hwnas profile`)")
    if not p.is_file():
        raise ProfileError(f"{str(d)!r} is not a profile: profile.json is missing")
    try:
        meta = read_json(p)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProfileError(f"{p}: corrupted JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{p}: not an hwnas profile")
    for k in ("space", "device", "fingerprint", "settings"):
        if k not in meta:
            raise ProfileError(f"{p}: lacks {k!r} (truncated?)")
    return meta


def _meta_parts(d: Path, meta: dict[str, Any]) -> tuple[Space, Device, dict[str, Any], MeasureSettings]:
    try:
        return (Space.from_dict(meta["space"]), Device.from_dict(meta["device"]), dict(meta["fingerprint"]),
                MeasureSettings(**meta["settings"]))
    except (TypeError, ValueError) as e:
        raise ProfileError(f"{d / 'profile.json'}: invalid content ({e})") from None


def _check_fingerprint(d: Path, have: dict[str, Any], want: dict[str, Any], allow_stale: bool) -> None:
    if have == want or allow_stale:
        return
    diff = {k: (have.get(k), want.get(k)) for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)}
    lines = ", ".join(f"{k}: profile has {a!r}, this device has {b!r}" for k, (a, b) in diff.items())
    raise StaleProfileError(
        f"profile {str(d)!r} was measured on a different device fingerprint "
        f"({fingerprint_hash(have)} vs {fingerprint_hash(want)}): {lines}. "
        "Profile again into a new directory, or pass allow_stale=True / --allow-stale to use it anyway."
    )


def _read_table(p: Path, columns: list[str], *, repair: bool) -> Any:
    """Read an append-only CSV journal; with `repair`, drop a half-written last line (a killed run)."""
    import pandas as pd

    if not p.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    raw = p.read_bytes()
    if repair and raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        atomic_write_text(p, raw.decode("utf-8", errors="replace"))
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype={"samples_ms": str, "key": str, "arch": str, "act": str})
    except Exception as e:  # pandas raises several parser error types
        raise ProfileError(f"{p}: table cannot be parsed ({type(e).__name__}: {e}); "
                           "delete it to re-measure, or restore it") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProfileError(f"{p}: corrupted table, columns {missing} are missing (expected {columns})")
    return df[columns]


def _validate_lut(d: Path, t: Any) -> None:
    import pandas as pd

    if len(t) == 0:
        return
    for c in _NUMERIC_LUT:
        v = pd.to_numeric(t[c], errors="coerce")
        if v.isna().any():
            i = int(np.flatnonzero(v.isna().to_numpy())[0])
            raise ProfileError(f"{d / 'lut.csv'}: row {i + 1} has a missing or non-numeric {c!r} (corrupted or "
                               "truncated); run `hwnas profile` again on the same directory to repair and resume")
    med = t["median_ms"].astype(float).to_numpy()
    if not np.all(np.isfinite(med)) or (med <= 0).any():
        raise ProfileError(f"{d / 'lut.csv'}: non-positive or non-finite median_ms values")
    if t["key"].isna().any():
        raise ProfileError(f"{d / 'lut.csv'}: rows without a key")


def _validate_nets(d: Path, t: Any) -> None:
    import pandas as pd

    if len(t) == 0:
        return
    v = pd.to_numeric(t["median_ms"], errors="coerce")
    if v.isna().any() or (v <= 0).any() or t["arch"].isna().any():
        raise ProfileError(f"{d / 'networks.csv'}: corrupted rows (missing arch or invalid median_ms)")


def _csv_line(values: list[Any]) -> str:
    import csv

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


class _Journal:
    """Append rows to a CSV, writing the header first; each row is flushed and fsync'ed."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        if not path.exists() or path.stat().st_size == 0:
            atomic_write_text(path, _csv_line(columns))

    def append(self, row: dict[str, Any]) -> None:
        line = _csv_line([row[c] for c in self.columns])
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _timing_cols(t: Timing) -> dict[str, Any]:
    return {"median_ms": round(t.median_ms, 6), "iqr_ms": round(t.iqr_ms, 6), "mean_ms": round(t.mean_ms, 6),
            "min_ms": round(t.min_ms, 6), "repeats": t.repeats, "number": t.number,
            "samples_ms": " ".join(f"{x:.6g}" for x in t.samples_ms)}


# ---- the profiling job ---------------------------------------------------------------------------------
def profile(space: Space | str, device: Device | str, out_dir: str | os.PathLike, *, n_networks: int = 50,
            resume: bool = True, progress: bool = True, allow_stale: bool = False, seed: int = 0,
            settings: MeasureSettings | None = None, configs: list[BlockConfig] | None = None,
            on_row: Callable[[str, dict[str, Any]], None] | None = None, network_sampling: str = NETWORK_SAMPLING
            ) -> Profile:
    """Measure every distinct block configuration of `space` on `device`, plus `n_networks` whole subnets.

    Resumable: rows already in `out_dir` are kept and not re-measured (same fingerprint required,
    or `allow_stale=True`). With `resume=False` an existing non-empty profile is an error.
    `configs` restricts the table to the given block configurations (default: all distinct ones).
    `network_sampling` ("stratified" or "uniform", `latency_check.network_archs`) picks a new profile's networks.
    """
    t_start = time.perf_counter()
    space = Space.preset(space) if isinstance(space, str) else space
    device = Device.from_name(device) if isinstance(device, str) else device
    if not isinstance(n_networks, int) or not 0 <= n_networks <= 100_000:
        raise ValueError(f"n_networks={n_networks!r} must be an int in 0..100000")
    device.check_available()
    settings = settings or MeasureSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp = device.fingerprint()
    meta_path = out / "profile.json"
    sampling = network_sampling  # a resumed profile keeps its own (profiles before this key: uniform)
    # the CPU it is measured on (GPU timings: the fingerprint's GPU); a profile from before this record has none
    host = {} if device.is_gpu else dict(host_details())
    if meta_path.exists():
        if not resume:
            raise ProfileError(f"{str(out)!r} already holds a profile; pass resume=True (the default) to continue "
                               "it, or choose a new directory")
        meta = _read_meta(out)
        old_space, _, old_fp, old_settings = _meta_parts(out, meta)
        if old_space.to_dict() != space.to_dict():
            raise ProfileError(f"{str(out)!r} holds a profile of space {old_space.name!r}, not {space.name!r}; "
                               "use another directory")
        _check_fingerprint(out, old_fp, fp, allow_stale)
        settings = old_settings  # a resumed profile keeps its timing protocol
        seed = int(meta.get("seed", seed))
        n_networks = max(n_networks, int(meta.get("n_networks", 0)))
        sampling = meta.get("network_sampling", "uniform")
        fp = old_fp if allow_stale else fp
        if not allow_stale:
            warn_if_host_changed(f"profile {str(out)!r} (resumed: its new rows would mix two CPUs' timings)",
                                 meta.get("host"))
        host = meta.get("host", {})  # where its first rows were measured
    meta = {
        "format": PROFILE_FORMAT, "format_version": PROFILE_VERSION, "space": space.to_dict(),
        "device": device.to_dict(), "fingerprint": fp, "fingerprint_hash": fingerprint_hash(fp),
        "settings": settings.__dict__, "n_networks": n_networks, "seed": seed, "network_sampling": sampling,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **({"host": host} if host else {}),
    }
    atomic_write_json(meta_path, meta)

    lut_old = _read_table(out / "lut.csv", LUT_COLUMNS, repair=True)
    net_old = _read_table(out / "networks.csv", NET_COLUMNS, repair=True)
    _validate_lut(out, lut_old)
    _validate_nets(out, net_old)
    done_keys = set(lut_old["key"])
    done_archs = set(net_old["arch"])
    todo = [c for c in (configs if configs is not None else space.distinct_block_configs()) if c.key not in done_keys]
    nets = [a for a in network_archs(space, n_networks, seed, sampling=sampling) if a.to_string() not in done_archs]
    lut_j = _Journal(out / "lut.csv", LUT_COLUMNS)
    net_j = _Journal(out / "networks.csv", NET_COLUMNS)
    total = len(todo) + len(nets)
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"profile {space.name}@{device.name}", unit="kernel", dynamic_ncols=True)
    measured = 0
    try:
        import torch

        torch.manual_seed(seed)
        from hwnas.supernet import build_static

        # Blocks and whole networks are interleaved, so that both see the same machine conditions:
        # on a shared CPU a busy phase then shifts the table and the networks alike, and the
        # correction fitted between them stays valid.
        for kind, item in _interleave(todo, nets):
            if kind == "block":
                c = item
                t = measure_module(build_block(space, c), device, block_input_shape(c, device.batch_size),
                                   warmup=settings.warmup, repeats=settings.repeats,
                                   min_sample_ms=settings.min_sample_ms)
                row = {"key": c.key, "kind": c.kind, "cin": c.cin, "cout": c.cout, "kernel": c.kernel,
                       "expand": c.expand, "stride": c.stride, "in_size": c.in_size, "se": int(c.se), "act": c.act,
                       **_timing_cols(t)}
                lut_j.append(row)
            else:
                a = item
                shape = (device.batch_size, space.in_channels, a.resolution, a.resolution)
                t = measure_module(build_static(space, a), device, shape, warmup=settings.warmup,
                                   repeats=settings.net_repeats, min_sample_ms=settings.min_sample_ms)
                row = {"arch": a.to_string(), "resolution": a.resolution, "num_blocks": a.num_blocks,
                       **_timing_cols(t)}
                net_j.append(row)
            measured += 1
            if on_row:
                on_row(kind, row)
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
    prof = Profile.load(out, device=None)
    if measured or not (out / "lut.parquet").exists():
        _write_parquet(prof)
    if not allow_stale:
        prof.device = device
    prof.measured_now = measured
    prof.seconds = time.perf_counter() - t_start
    return prof


def _write_parquet(prof: Profile) -> None:
    """Parquet copies of the tables (the CSV journals stay the source of truth), fingerprint in the metadata."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # Parquet is a convenience; the CSVs hold everything
        return
    from hwnas._io import atomic_write_bytes

    meta = {b"hwnas.fingerprint": json.dumps(prof.fingerprint).encode(),
            b"hwnas.fingerprint_hash": prof.fingerprint_hash.encode()}
    for name, df in (("lut", prof.table), ("networks", prof.networks)):
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(prof.dir / f"{name}.parquet", sink.getvalue().to_pybytes())


def _interleave(blocks: list[BlockConfig], nets: list[Arch]) -> list[tuple[str, Any]]:
    """Spread the networks evenly among the blocks (deterministic order)."""
    out: list[tuple[str, Any]] = []
    nb, nn_ = len(blocks), len(nets)
    j = 0
    for i, c in enumerate(blocks):
        while j < nn_ and (j + 1) * nb <= (i + 1) * nn_:
            out.append(("network", nets[j]))
            j += 1
        out.append(("block", c))
    out += [("network", a) for a in nets[j:]]
    return out


# ---- the same job on a Ray node that owns the device ----------------------------------------------------
def _remote_profile(space_dict: dict[str, Any], device_dict: dict[str, Any], files: dict[str, bytes],
                    kwargs: dict[str, Any]) -> dict[str, bytes]:
    """Runs on the Ray worker: profile into a scratch directory seeded with the files already measured."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="hwnas-profile-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        profile(Space.from_dict(space_dict), Device.from_dict(device_dict), tmp, progress=False, **kwargs)
        return {p.name: p.read_bytes() for p in tmp.iterdir() if p.is_file()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def profile_on_ray(space: Space | str, device: Device | str, out_dir: str | os.PathLike, *, ray_address: str,
                   resource: str, n_networks: int = 50, allow_stale: bool = False, seed: int = 0,
                   settings: MeasureSettings | None = None, timeout_s: float | None = None,
                   wait_for_node_s: float = 30.0) -> Profile:
    """Run `profile` as a Ray task on a node that declared the custom resource `resource`.

    The fingerprint is taken on that node (it says where the table came from); the files come back
    into `out_dir`. Rows already in `out_dir` travel to the worker, so the remote job resumes too.
    Waits up to `wait_for_node_s` for a node offering `resource` to join before giving up.
    """
    import ray

    space = Space.preset(space) if isinstance(space, str) else space
    device = Device.from_name(device) if isinstance(device, str) else device
    if not resource or not isinstance(resource, str):
        raise ValueError(f"resource must be a custom resource name, got {resource!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {n: (out / n).read_bytes() for n in ("profile.json", "lut.csv", "networks.csv") if (out / n).is_file()}
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.time() + wait_for_node_s
        while ray.cluster_resources().get(resource, 0) <= 0 and time.time() < deadline:
            time.sleep(0.5)
        if ray.cluster_resources().get(resource, 0) <= 0:
            raise ProfileError(f"no node of the Ray cluster at {ray_address!r} offers resource {resource!r}; "
                               f"start one with: ray start --address {ray_address} --resources '{{\"{resource}\": 1}}'")
        task = ray.remote(_remote_profile).options(num_cpus=0, resources={resource: 1}, max_retries=0)
        kwargs = {"n_networks": n_networks, "allow_stale": allow_stale, "seed": seed, "settings": settings}
        result = ray.get(task.remote(space.to_dict(), device.to_dict(), files, kwargs), timeout=timeout_s)
    finally:
        if started:
            ray.shutdown()
    for name, data in result.items():
        if name in ("profile.json", "lut.csv", "networks.csv"):
            from hwnas._io import atomic_write_bytes

            atomic_write_bytes(out / name, data)
    return Profile.load(out)


def lut_sum_ms(space: Space, arch: Arch, lut: dict[str, float]) -> float:
    """Sum of the table's block medians over the blocks `arch` runs (KeyError when a block is missing)."""
    return float(math.fsum(lut[c.key] for c in space.block_configs(arch)))
