"""Every option of every subcommand, given a malformed value, is refused in one line with exit 2.

The cases are generated from the argparse definitions (the parser objects are walked, nothing is
listed by hand), so an option added later without a range or a check fails here. Each case runs
`hwnas.cli.main(argv)` in process (a parser error never reaches a handler, so no case does work):
exit code 2, exactly one line on stderr naming the option, no traceback, nothing written in the
working directory.
"""

from __future__ import annotations

import argparse

import pytest
from hwnas._cli_choices import Float, Int
from hwnas.cli import build_parser, main

_SKIP = (argparse._HelpAction, argparse._VersionAction)


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, parser) of every leaf subcommand (`kernels check` included)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # no public walk exists
    if not subs:
        yield prefix, parser
        return
    for a in subs:
        for name, p in a.choices.items():
            yield from _subcommands(p, (*prefix, name))


def _bad_values(action: argparse.Action) -> list[tuple[str, str]]:
    """(what, value) malformed values for an option, chosen by its kind."""
    if action.nargs == 0:  # a flag: a value attached to it is an error
        return [("value on a flag", "=yes")]
    if action.choices is not None:
        return [("not a choice", "no-such-choice"), ("empty", "")]
    t = action.type
    if t is int or isinstance(t, Int):
        return [("wrong type", "abc"), ("negative", "-1"), ("absurd", "99999999999999999999999"), ("float", "2.5"),
                ("empty", "")]
    if t is float or isinstance(t, Float):
        return [("wrong type", "abc"), ("negative", "-1"), ("absurd", "1e400"), ("nan", "nan"), ("empty", "")]
    return [("empty", ""), ("blank", "   ")]


def _required_fill(parser: argparse.ArgumentParser, skip: argparse.Action) -> list[str]:
    """Placeholder values for the other required options and positionals (they parse; they are never used)."""
    out: list[str] = []
    for a in parser._actions:
        if a is skip or isinstance(a, _SKIP):
            continue
        if a.option_strings and a.required:
            out += [a.option_strings[0], "placeholder"]
        elif not a.option_strings and a.nargs is None:
            out.append("placeholder")
    return out


def _cases() -> list[tuple[str, list[str], str]]:
    cases = []
    for prefix, parser in _subcommands(build_parser()):
        for a in parser._actions:
            if isinstance(a, _SKIP):
                continue
            for what, value in _bad_values(a):
                fill = _required_fill(parser, a)
                if a.option_strings:
                    opt = a.option_strings[-1]
                    bad = [opt + value] if value.startswith("=") else [opt, value]
                    argv, names = [*prefix, *bad, *fill], opt
                else:  # a positional: the first one takes the bad value
                    argv, names = [*prefix, value, *fill[1:]], a.metavar or a.dest
                cases.append((f"{' '.join(prefix)} {names} {what}", argv, names))
    return cases


CASES = _cases()


def test_the_walk_finds_every_subcommand_and_many_options() -> None:
    commands = {c[0].split(" --")[0].split(" ")[0] for c in CASES}
    assert commands >= {"space", "train", "devices", "profile", "kernels", "search", "pareto", "run", "export"}
    assert len({c[0].rsplit(" ", 1)[0] for c in CASES}) >= 60  # distinct (command, option) pairs


COMMANDS = sorted({c[0].split(" ")[0] if not c[0].startswith("kernels") else " ".join(c[0].split(" ")[:2]) for c in CASES})


# One test per subcommand, looping over its cases: a parser error costs microseconds, a pytest item
# with its fixtures far more.
@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_value_is_one_line_and_exit_2(command, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [c for c in CASES if c[1][: len(command.split())] == command.split()]
    assert cases
    problems = []
    for cid, argv, option in cases:
        try:
            main(argv)
        except SystemExit as e:
            code = e.code
        else:
            code = 0
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in err:
            problems.append(f"{cid}: exit {code}, stderr {err!r}")
        elif not (lines[0].startswith("hwnas ") and ": error: " in lines[0] and option in lines[0]):
            problems.append(f"{cid}: the line does not name {option!r}: {lines[0]!r}")
        if list(tmp_path.iterdir()):
            problems.append(f"{cid}: wrote {sorted(p.name for p in tmp_path.iterdir())}")
    assert not problems, "\n".join(problems)
