"""The weight-sharing supernet: dynamic ops and blocks, `Supernet`, static subnets and export."""

from __future__ import annotations

from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.export import export, load
from hwnas.supernet.static import StaticNet, build_static

__all__ = ["StaticNet", "Supernet", "build_static", "export", "load", "resize_input"]
