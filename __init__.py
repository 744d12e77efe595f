"""hwnas: hardware-aware neural architecture search.

A weight-sharing supernet is trained once; latency, memory and energy predictors are built by
profiling real kernels on each device; Optuna / Ray Tune searchers return Pareto fronts under
hardware budgets, and chosen subnets are exported as standalone checkpoints.
"""

from __future__ import annotations

from hwnas.errors import HwnasError
from hwnas.search_space import Arch, Space, available_presets

__version__ = "0.1.0"

__all__ = ["Arch", "HwnasError", "Space", "available_presets", "__version__"]
