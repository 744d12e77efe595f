"""The `hwnas` command line: one subcommand per step of the workflow.

Each component registers its own subcommands from a light `_cli.py` module, loaded by file path
so that building the parser runs no package `__init__` (which would import torch, triton or
optuna): heavy imports stay inside the handlers, and `hwnas --help` is quick. A user error (`HwnasError`) prints one line
and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hwnas._cli_choices import Float, Int, short
from hwnas.errors import HwnasError

__all__ = ["main", "build_parser", "Parser"]

# Files that contribute subcommands through `register(subparsers)`, relative to the package root.
_ROOT = Path(__file__).resolve().parent
_COMPONENTS = (
    "search_space/_cli.py",
    "supernet/_cli.py",
    "supernet/_finetune_cli.py",
    "estimators/_cli.py",
    "kernels/_cli.py",
    "searchers/_cli.py",
    "pipeline/cli.py",
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

class Parser(argparse.ArgumentParser):
    """argparse with the house rules for a user error: one line, `hwnas CMD: error: ...`, exit 2.

    argparse's own format is a usage block and an error line; the rest of the CLI prints one line
    per error (`HwnasError`), so a script that greps stderr or a user reading it sees one shape.
    An empty (or blank) value is refused for every option and positional: `--storage ""` or
    `--check ""` is a slip (an unset shell variable), never a meaningful value.
    Subcommand parsers inherit this class (argparse builds them with the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        # The one hook argparse offers per value before its type runs.
        # (Not for the subcommand action: it sees every later argument, which its own parser checks.)
        if isinstance(arg_string, str) and not arg_string.strip() and not isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(action, f"an empty value {arg_string!r} is not allowed")
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as e:
            if not isinstance(action.type, (Int, Float)):
                raise
            # `--bundle-pairs 5: out of range; choose 20..20000`: the option as typed, like the handlers' messages.
            name = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)
            raise argparse.ArgumentError(None, f"{name} {short(arg_string)}: {e.message}") from None


EPILOG = """\
the main job (train, profile, search, re-measure, export, report; resumable), from the repository root:
  hwnas run --config configs/fmnist-cpu.yaml
then query its study and export more front members:
  hwnas pareto --storage sqlite:///results/runs/fashion-mnist-cpu/study.db --top 5
  hwnas export --storage sqlite:///results/runs/fashion-mnist-cpu/study.db --pick "latency_ms@cpu<=3" \\
      --out results/runs/fashion-mnist-cpu/my-subnet
the steps one by one:
  hwnas train   --config configs/fmnist.yaml --schedule demo --out results/runs/supernet
  hwnas profile --space fmnist-mbv3 --device cpu --out results/runs/profiles/fmnist-cpu
  hwnas search  --space fmnist-mbv3 --objective flops --objective params:max --trials 200 \\
      --storage sqlite:///results/runs/search.db --study demo --generation
  hwnas pareto  --storage sqlite:///results/runs/search.db --study demo --top 5
  hwnas export  --storage sqlite:///results/runs/search.db --study demo --supernet results/runs/supernet \\
      --pick "params<=6e5" --out results/runs/demo-subnet
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


@functools.cache
def _parser() -> argparse.ArgumentParser:
    # Parsing leaves a parser unchanged, so one serves every `main` call of a process (tests call
    # main hundreds of times; building the parser is most of a parse error's cost).
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
