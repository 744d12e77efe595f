"""The weight-sharing supernet: dynamic ops and blocks, `Supernet`, static subnets and export.

The names below load on first use (PEP 562), so `import hwnas.supernet` and the `hwnas` CLI
start without importing torch, triton or optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": ("hwnas.supernet.train", "TrainConfig"),
    "TrainResult": ("hwnas.supernet.train", "TrainResult"),
    "evaluate": ("hwnas.supernet.bn", "evaluate"),
    "load_config": ("hwnas.supernet.train", "load_config"),
    "load_supernet": ("hwnas.supernet.train", "load_supernet"),
    "recalibrate_bn": ("hwnas.supernet.bn", "recalibrate_bn"),
    "save_supernet": ("hwnas.supernet.train", "save_supernet"),
    "train": ("hwnas.supernet.train", "train"),
    "StaticNet": ("hwnas.supernet.static", "StaticNet"),
    "Supernet": ("hwnas.supernet._supernet", "Supernet"),
    "build_static": ("hwnas.supernet.static", "build_static"),
    "export": ("hwnas.supernet.export", "export"),
    "load": ("hwnas.supernet.export", "load"),
    "resize_input": ("hwnas.supernet._supernet", "resize_input"),
}

__all__ = [
    "StaticNet",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "build_static",
    "evaluate",
    "export",
    "load",
    "load_config",
    "load_supernet",
    "recalibrate_bn",
    "resize_input",
    "save_supernet",
    "train",
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
