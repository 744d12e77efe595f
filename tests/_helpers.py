"""What several test files share: the tiny supernet space and a Ray node on 127.0.0.1 that a test owns.

Import as `from tests._helpers import ...` (pytest runs from the repository root). The searchers'
small search space (enumerable, for the analytic objective) lives in `tests/test_search_helpers.py`;
the large synthetic study of the load tests and benchmarks in `tests/_synthetic.py`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TINY_SPACE", "tiny_space_dict", "tiny_space", "tiny_space_path", "free_port", "ray_env", "RayNode",
           "load_benchmark"]


def load_benchmark(name: str) -> Any:
    """The module of `benchmarks/<name>.py` (a script folder, not a package), loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

# ---- the tiny supernet space ---------------------------------------------------------------------------
# Two MBConv stages on 16x16 / 20x20 inputs: trains to well above chance in seconds on 2 cores
# (the training tests' accuracy floors are set on it), and profiles in seconds.
TINY_SPACE: dict[str, Any] = {
    "name": "tiny-test",
    "in_channels": 1,
    "num_classes": 10,
    "resolutions": [16, 20],
    "normalization": {"mean": [0.2860], "std": [0.3530]},
    "stem": {"channels": 8, "kernel": 3, "stride": 2, "act": "hswish"},
    "stages": [
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [8], "stride": 1, "se": False, "act": "relu"},
        {"kinds": ["mb"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "widths": [16], "stride": 2, "se": True, "act": "hswish"},
    ],
    "head": {"expand_channels": 32, "feature_channels": None, "act": "hswish", "dropout": 0.0},
}


def tiny_space_dict(*, stage2: Mapping[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    """A copy of TINY_SPACE with top-level keys replaced by `over` and the second stage's by `stage2`
    (e.g. `resolutions=[16], stage2={"kernels": [3], "expands": [3]}`: 6 block configs instead of 24)."""
    d = copy.deepcopy(TINY_SPACE)
    d.update(copy.deepcopy(over))
    if stage2:
        d["stages"][1].update(copy.deepcopy(dict(stage2)))
    return d


def tiny_space(*, stage2: Mapping[str, Any] | None = None, **over: Any) -> Any:
    """`tiny_space_dict(...)` as a `Space`."""
    from hwnas.search_space import Space

    return Space.from_dict(tiny_space_dict(stage2=stage2, **over))


def tiny_space_path(tmp_path: Path, *, stage2: Mapping[str, Any] | None = None, **over: Any) -> str:
    """`tiny_space_dict(...)` written as YAML under `tmp_path` (for configs and CLIs that take a file)."""
    p = Path(tmp_path) / "tiny-space.yaml"
    p.write_text(yaml.safe_dump(tiny_space_dict(stage2=stage2, **over)))
    return str(p)


# ---- Ray ------------------------------------------------------------------------------------------------
# One implementation, beside the PostgreSQL server in tests/_cluster.py; re-exported for the tests that
# only need a node.
from tests._cluster import RayNode, free_port, ray_env  # noqa: E402
