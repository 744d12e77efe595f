"""CLI argument types: choice lists that are the code's own constants, and numeric ranges.

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

__all__ = ["ChoicesOf", "Int", "Float", "SEED", "TRIALS", "POPULATION", "WORKERS", "TOP"]


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


class Int:
    """An argparse `type`: an integer in [lo, hi], refused with the range otherwise.

    The parser (`hwnas.cli.Parser`) puts the option and the value in front of the message:
    `--trials 0: out of range; choose 1..10000000`.
    Counts, sizes and seeds all have a range that makes sense; a value outside it (`--trials
    99999999999999999999999`, `--population-size 0`, `--seed -1`) is a mistake to report before any
    work starts, not a search that never ends or a traceback from deep inside a library.
    """

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"

    def __call__(self, text: str) -> int:
        import argparse

        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number; choose {self.lo}..{self.hi}") from None
        if not self.lo <= v <= self.hi:
            raise argparse.ArgumentTypeError(f"out of range; choose {self.lo}..{self.hi}")
        return v

    def __repr__(self) -> str:
        return f"Int({self.lo}, {self.hi})"


class Float:
    """An argparse `type`: a finite number in [lo, hi] (`nan`, `inf` and values outside are refused)."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi
        self.__name__ = "float"

    def __call__(self, text: str) -> float:
        import argparse
        import math

        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number; choose {self.lo:g}..{self.hi:g}") from None
        if not math.isfinite(v) or not self.lo <= v <= self.hi:
            raise argparse.ArgumentTypeError(f"out of range (or not finite); choose {self.lo:g}..{self.hi:g}")
        return v

    def __repr__(self) -> str:
        return f"Float({self.lo}, {self.hi})"


def short(text: str) -> str:
    """A value as typed, cut to a readable length (a 10,000-digit number is not echoed whole)."""
    t = text.strip()
    return t if len(t) <= 40 else f"{t[:20]}...({len(t)} characters)"


# The ranges every command shares (one place, so `--seed` means the same everywhere).
SEED = Int(0, 2**32 - 1)  # what numpy and Optuna's samplers accept
TRIALS = Int(1, 10_000_000)  # 10^7 predictor-only trials is hours at the generation path's rate
POPULATION = Int(2, 100_000)  # NSGA-II/III need two parents
WORKERS = Int(1, 4096)
TOP = Int(1, 10_000_000)
