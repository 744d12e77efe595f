"""Every example command in `hwnas ... --help` and in the README is a command that works.

The examples are parsed out of the help texts (every subcommand's description and epilog, walked
from the parser objects) and the README's bash blocks. Quick ones run for real, in order, in a
temporary working directory (their relative paths land there): `space`, `devices`, and `search`
/ `pareto` on the analytic providers with a local storage, so the README's search -> pareto pair
runs end to end. The others need minutes (`train`, `profile`, `run`, `export` of a trained
supernet), a Ray cluster or a database server: for those the test checks that argparse accepts
the arguments, and says which in its report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from hwnas.cli import EPILOG, build_parser, main

REPO = Path(__file__).resolve().parents[1]
QUICK = {"space", "devices", "search", "pareto"}


def _help_texts() -> list[str]:
    texts = [EPILOG]
    todo = [build_parser()]
    while todo:
        p = todo.pop()
        texts += [p.description or "", p.epilog or ""]
        for a in p._actions:  # argparse offers no public walk over subcommands
            if isinstance(a, argparse._SubParsersAction):
                todo += list(a.choices.values())
    return texts


def _commands(text: str) -> list[list[str]]:
    """The hwnas argument lists of the command lines in `text` (`hwnas ...`, `python -m hwnas ...`,
    `torchrun ... -m hwnas ...`, `ray job submit ... -- hwnas ...`); placeholder lines (`...`) skipped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        s = line.strip().removeprefix("$ ")
        if "hwnas " not in s or not re.match(r"^(hwnas|python|torchrun|ray) ", s):
            continue
        words = shlex.split(s, comments=True)
        if "..." in words:  # `hwnas search ... --workers 2`: a fragment, not a command
            continue
        i = words.index("hwnas")
        if i and words[i - 1] not in ("-m", "--"):
            continue
        out.append(words[i + 1:])
    return out


def _readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    return [c for b in blocks for c in _commands(b)]


def _is_quick(argv: list[str], cwd: Path) -> bool:
    if argv[0] not in QUICK or "--ray-address" in argv:
        return False
    storage = argv[argv.index("--storage") + 1] if "--storage" in argv else None
    if storage and not storage.startswith("sqlite:///"):
        return False  # a database server
    if argv[0] == "pareto":  # it reads a study an earlier example wrote (else: parse only)
        return storage is not None and (cwd / storage[len("sqlite:///"):]).is_file()
    return True


def test_hwnas_help_shows_no_option_that_does_not_exist() -> None:
    for argv in (c for t in _help_texts() for c in _commands(t)):
        build_parser().parse_args(argv)  # a SystemExit here is an example with a wrong option
    assert "search --config" not in EPILOG


@pytest.mark.slow  # three real searches (200, 1000 and 1000 trials): seconds alone, minutes on a loaded machine
def test_every_help_and_readme_example_runs_or_parses(tmp_path, monkeypatch, capsys) -> None:
    # Each help text (and the README) is a walk-through of its own: its examples run in order in a
    # fresh folder (two texts may both create `--study demo` in results/runs/search.db).
    texts = [_commands(t) for t in dict.fromkeys(_help_texts())] + [_readme_commands()]  # `hwnas` shows EPILOG
    assert sum(map(len, texts)) >= 20, texts
    ran, parsed, failed = [], [], []
    for i, examples in enumerate(texts):
        cwd = tmp_path / f"text{i}"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        for argv in examples:
            args = build_parser().parse_args(argv)  # every example: argparse accepts it
            assert callable(getattr(args, "func", None)), argv
            if not _is_quick(argv, cwd):
                parsed.append(shlex.join(argv))
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                rc = main([*argv, "--no-progress"] if argv[0] == "search" else argv)
            err = capsys.readouterr().err
            (ran if rc == 0 else failed).append(f"{shlex.join(argv)} -> {rc} {err.strip()[-300:]}")
    print("ran for real:\n  " + "\n  ".join(ran) + "\nargparse accepts (need minutes, a cluster or a server):\n  "
          + "\n  ".join(parsed))
    assert not failed, failed
    assert {r.split(" ", 1)[0] for r in ran} >= {"space", "devices", "search", "pareto"}, ran
