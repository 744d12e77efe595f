"""Devices: where a network runs (backend, threads, batch size, dtype) and a fingerprint of the machine.

A `Device` is a small frozen record; its `name` is the short token used in objective names
(`latency_ms@cpu`). Every stored measurement carries `fingerprint()` so a lookup table measured
on another CPU, GPU or library version is refused instead of silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

__all__ = ["BACKENDS", "DTYPES", "Device", "available_devices", "cpu_model", "fingerprint_hash", "host_details",
           "host_change", "warn_if_host_changed"]

BACKENDS = ("torch", "onnxruntime", "torch-cuda", "triton")
DTYPES = ("float32", "float16", "bfloat16")
_GPU_BACKENDS = ("torch-cuda", "triton")
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Short base names accepted by `Device.from_name`; suffixes `-t<N>`, `-b<N>`, `-fp16`, `-bf16` refine them.
_BASE_NAMES = {"cpu": "torch", "ort-cpu": "onnxruntime", "cuda": "torch-cuda", "triton": "triton"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Device:
    """Where latency is measured: backend, intra-op threads, batch size and dtype.

    `name` must be a short token without `@`, `<`, `=` or spaces, because searchers build
    objective names such as `latency_ms@<name>` and budgets such as `latency_ms@<name><=4`.
    """

    name: str
    backend: str = "torch"
    threads: int = 1
    batch_size: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"device name {self.name!r} must be a short lowercase token (letters, digits, '-', '_', '.'), "
                "e.g. 'cpu', 'ort-cpu', 'cuda'"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}")
        if not isinstance(self.threads, int) or not 1 <= self.threads <= 1024:
            raise ValueError(f"threads={self.threads!r} must be an int in 1..1024")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 65536:
            raise ValueError(f"batch_size={self.batch_size!r} must be an int in 1..65536")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if self.dtype != "float32" and self.backend not in _GPU_BACKENDS:
            raise ValueError(f"dtype {self.dtype!r} is only supported on GPU backends {_GPU_BACKENDS}; use float32")

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, *, threads: int | None = None, batch_size: int | None = None,
                  dtype: str | None = None) -> Device:
        """Parse a device token: `cpu`, `ort-cpu`, `cuda`, `triton`, with optional suffixes.

        Suffixes: `-t<N>` threads (CPU backends; default 1), `-b<N>` batch size (default 1),
        `-fp16` / `-bf16` dtype (GPU only). E.g. `cpu-t2`, `ort-cpu-b8`, `cuda-b32-fp16`.
        Keyword arguments override the suffixes; the returned name is canonical.
        """
        if isinstance(name, Device):
            return name
        if not isinstance(name, str) or not name:
            raise ValueError(f"device name must be a non-empty string, got {name!r}")
        token = name.strip().lower()
        base = next((b for b in sorted(_BASE_NAMES, key=len, reverse=True)
                     if token == b or token.startswith(b + "-")), None)
        if base is None:
            raise ValueError(f"unknown device {name!r}; known: {sorted(_BASE_NAMES)} "
                             "with optional suffixes -t<threads>, -b<batch>, -fp16, -bf16")
        t, b, d = 1, 1, "float32"
        for part in filter(None, token[len(base):].split("-")):
            if re.fullmatch(r"t\d+", part):
                t = int(part[1:])
            elif re.fullmatch(r"b\d+", part):
                b = int(part[1:])
            elif part in ("fp16", "bf16", "fp32"):
                d = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[part]
            else:
                raise ValueError(f"unknown suffix {part!r} in device {name!r}; allowed: t<N>, b<N>, fp16, bf16")
        backend = _BASE_NAMES[base]
        t = threads if threads is not None else t
        b = batch_size if batch_size is not None else b
        d = dtype if dtype is not None else d
        if backend in _GPU_BACKENDS:
            t = 1  # host threads do not shape GPU kernel time; keep the name canonical
        canon = base + (f"-t{t}" if t != 1 else "") + (f"-b{b}" if b != 1 else "") + (
            {"float16": "-fp16", "bfloat16": "-bf16"}.get(d, ""))
        return cls(name=canon, backend=backend, threads=t, batch_size=b, dtype=d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Device:
        return cls(**{k: d[k] for k in ("name", "backend", "threads", "batch_size", "dtype") if k in d})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---- properties -------------------------------------------------------------------------------
    @property
    def is_gpu(self) -> bool:
        return self.backend in _GPU_BACKENDS

    @property
    def dtype_bytes(self) -> int:
        return _DTYPE_BYTES[self.dtype]

    def torch_device(self) -> Any:
        import torch

        return torch.device("cuda" if self.is_gpu else "cpu")

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def check_available(self) -> None:
        """Raise ProfileError (naming what is missing) when this machine cannot run the device."""
        from hwnas.errors import ProfileError

        if self.is_gpu:
            import torch

            if not torch.cuda.is_available():
                raise ProfileError(f"device {self.name!r} needs CUDA, which this machine does not have; "
                                   f"available here: {[d.name for d in available_devices()]}")
            if self.backend == "triton":
                try:
                    import hwnas.kernels  # noqa: F401
                except Exception as e:  # the kernels component may not be installed
                    raise ProfileError(f"device {self.name!r} needs hwnas.kernels (Triton): {e}") from e
        if self.backend == "onnxruntime":
            try:
                import onnxruntime  # noqa: F401
            except ImportError as e:
                raise ProfileError(f"device {self.name!r} needs onnxruntime: pip install onnxruntime") from e
        n = os.cpu_count() or 1
        if not self.is_gpu and self.threads > n:
            raise ProfileError(f"device {self.name!r} asks for {self.threads} threads, this machine has {n} CPUs")

    # ---- fingerprint ------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What makes a measurement on this device comparable: hardware, libraries, settings."""
        fp: dict[str, Any] = {
            "device": self.name,
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "cpu": cpu_model(),
            "machine": platform.machine(),
            "os": platform.system(),
        }
        fp.update(_lib_versions(self.backend))
        if self.is_gpu:
            fp.update(_gpu_info())
        return fp

    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.fingerprint())


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """A short stable hash (12 hex digits) of a fingerprint dict."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo, lower-case keys ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        return {}
    return out


@lru_cache(maxsize=1)
def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


_CPUINFO_KEYS = {"cpu family": "cpu_family", "model": "cpu_model_number", "stepping": "cpu_stepping"}


@lru_cache(maxsize=1)
def host_details() -> dict[str, str]:
    """The CPU's family, model number and stepping (Linux /proc/cpuinfo; {} elsewhere).

    Not part of the fingerprint (which would make every profile measured before this record stale):
    profiles and predictors store it beside the fingerprint as `host`, and loading one where it
    differs warns (`HostChangedWarning`). Virtual machines often report a bare "AMD EPYC" model name
    for CPUs of different generations; these three numbers tell them apart.
    """
    info = _cpuinfo()
    return {name: info[key] for key, name in _CPUINFO_KEYS.items() if key in info}


def host_change(recorded: dict[str, Any] | None, current: dict[str, Any] | None = None) -> str | None:
    """A sentence naming what differs between a `host` record and this machine's, or None when
    nothing recorded differs (keys either side lacks are not compared: older files have no record)."""
    if not recorded:
        return None
    current = host_details() if current is None else current
    diff = [f"{k} {recorded[k]} there, {current[k]} here" for k in sorted(recorded)
            if k in current and str(recorded[k]) != str(current[k])]
    return "; ".join(diff) or None


def warn_if_host_changed(what: str, recorded: dict[str, Any] | None, *, stacklevel: int = 3) -> bool:
    """Warn (`HostChangedWarning`) when `recorded` names another CPU than this one; True if it did."""
    import warnings

    from hwnas.errors import HostChangedWarning

    change = host_change(recorded)
    if change is None:
        return False
    warnings.warn(f"{what} was measured on another CPU than this one ({change}), although the fingerprint "
                  "matches: its timings may not hold here. Profile again into a new directory to be sure.",
                  HostChangedWarning, stacklevel=stacklevel)
    return True


def _lib_versions(backend: str) -> dict[str, str]:
    import torch

    out = {"torch": torch.__version__}
    if backend == "onnxruntime":
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    if backend == "triton":
        import triton

        out["triton"] = triton.__version__
    return out


@lru_cache(maxsize=1)
def _gpu_info() -> dict[str, str]:
    import torch

    info: dict[str, str] = {}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
        try:
            import pynvml

            pynvml.nvmlInit()
            drv = pynvml.nvmlSystemGetDriverVersion()
            info["driver"] = drv.decode() if isinstance(drv, bytes) else str(drv)
        except Exception:  # NVML missing in a container: the GPU name and CUDA version still identify it
            info["driver"] = "unknown"
    return info


def available_devices(*, threads: int | None = None) -> list[Device]:
    """The devices this machine can run now (CPU backends always; CUDA/Triton when a GPU is visible)."""
    out = [Device.from_name("cpu")]
    n = os.cpu_count() or 1
    if n > 1:
        out.append(Device.from_name("cpu", threads=threads or n))
    try:
        import onnxruntime  # noqa: F401

        out.append(Device.from_name("ort-cpu"))
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            out.append(Device.from_name("cuda"))
            try:
                import triton  # noqa: F401

                out.append(Device.from_name("triton"))
            except ImportError:
                pass
    except ImportError:
        pass
    return out
