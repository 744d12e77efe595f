"""The `hwnas` command line: one subcommand per step of the workflow.

Each component registers its own subcommands from a light `_cli.py` module (heavy imports stay
inside the handlers, so `hwnas --help` is quick). A user error (`HwnasError`) prints one line
and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hwnas.errors import HwnasError

__all__ = ["main", "build_parser"]

# Component modules that contribute subcommands through `register(subparsers)`.
_COMPONENTS = (
    "hwnas.search_space._cli",
    "hwnas.supernet._cli",
    "hwnas.estimators._cli",
    "hwnas.kernels._cli",
    "hwnas.searchers._cli",
    "hwnas._pipeline_cli",
)

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
    for modname in _COMPONENTS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        mod.register(sub)
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
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
