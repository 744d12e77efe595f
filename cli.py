"""The `hwnas` command line: one subcommand per step of the workflow.

Each component registers its own subcommands from a light `_cli.py` module, loaded by file path
so that building the parser runs no package `__init__` (which would import torch, triton or
optuna): heavy imports stay inside the handlers, and `hwnas --help` is quick. A user error (`HwnasError`) prints one line
and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from hwnas.errors import HwnasError

__all__ = ["main", "build_parser"]

# Files that contribute subcommands through `register(subparsers)`, relative to the package root.
_ROOT = Path(__file__).resolve().parent
_COMPONENTS = (
    "search_space/_cli.py",
    "supernet/_cli.py",
    "estimators/_cli.py",
    "kernels/_cli.py",
    "searchers/_cli.py",
    "_pipeline_cli.py",
)


def _load_cli(rel: str):
    """Import one `_cli.py` by path under a private name (its package `__init__` does not run)."""
    name = "hwnas._clis." + rel.removesuffix(".py").replace("/", ".")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

EPILOG = """\
workflow:
  hwnas train    --config configs/fmnist.yaml          train the once-for-all supernet
  hwnas profile  --space fmnist-mbv3 --device cpu      build a latency lookup table on this machine
  hwnas search   --config configs/fmnist-cpu.yaml      multi-objective search under budgets
  hwnas pareto   --study NAME --storage URL            query the Pareto front
  hwnas export   --study NAME --pick "latency_ms@cpu<=3" --out DIR
  hwnas run      --config configs/fmnist-cpu.yaml      all of the above, end to end
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Hardware-aware neural architecture search: train a once-for-all supernet, "
        "profile devices, search Pareto-optimal subnets under budgets, export them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hwnas import __version__

    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for rel in _COMPONENTS:
        if (_ROOT / rel).is_file():
            _load_cli(rel).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except HwnasError as e:
        print(f"hwnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
