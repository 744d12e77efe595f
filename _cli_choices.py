"""CLI choice lists that are the code's own constants, imported when argparse first looks at them.

The `_cli.py` modules build the parser without importing torch, optuna or the packages' `__init__`
(so `hwnas --help` is quick), yet a choice list copied by hand drifts from the constant the code
validates against (`nsga3` was missing from one sampler list). `ChoicesOf("hwnas.searchers",
"SAMPLERS")` is that constant, loaded on first use: when an option is parsed, when its help is
printed, or when argparse reports a bad value. Give such an option a `metavar`; without one,
argparse lists the choices while the parser is built, which imports the module then.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["ChoicesOf"]


class ChoicesOf(Sequence):
    """The constant `name` of module `module` (a sequence of strings), as an argparse `choices`."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        self._values: tuple[Any, ...] | None = None

    def values(self) -> tuple[Any, ...]:
        if self._values is None:
            self._values = tuple(getattr(importlib.import_module(self.module), self.name))
        return self._values

    def __getitem__(self, i: Any) -> Any:
        return self.values()[i]

    def __len__(self) -> int:
        return len(self.values())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def __contains__(self, value: object) -> bool:
        return value in self.values()

    def __repr__(self) -> str:
        return f"ChoicesOf({self.module}.{self.name})"
