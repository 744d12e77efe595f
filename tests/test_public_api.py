"""Every package's public names: `from hwnas.<pkg> import *` works, so every name in `__all__` exists."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_NOT_PACKAGES = {"tests", "benchmarks", "scripts", "results", "configs", "docs"}


def _packages() -> list[str]:
    """`hwnas` and every package folder under it (found on disk, so a new package is checked too)."""
    out = ["hwnas"]
    for init in sorted(REPO.rglob("__init__.py")):
        rel = init.parent.relative_to(REPO)
        if rel.parts and not (rel.parts[0] in _NOT_PACKAGES or any(p.startswith(".") for p in rel.parts)):
            out.append("hwnas." + ".".join(rel.parts))
    return out


def test_packages_are_found() -> None:
    # the scan itself must see the components, or the test below would pass on nothing
    assert {"hwnas.search_space", "hwnas.supernet", "hwnas.estimators", "hwnas.kernels", "hwnas.searchers"} <= set(_packages())


@pytest.mark.parametrize("name", _packages())
def test_star_import_finds_every_name_in_all(name: str) -> None:
    # `from m import *` raises AttributeError for a name in `__all__` that m neither defines nor
    # has as a submodule; this is that check without exec.
    mod = importlib.import_module(name)
    names = getattr(mod, "__all__", None)
    if names is None:
        pytest.skip(f"{name} has no __all__")
    missing = [n for n in names if not hasattr(mod, n) and importlib.util.find_spec(f"{name}.{n}") is None]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"
    assert len(set(names)) == len(names), f"{name}.__all__ repeats a name"
