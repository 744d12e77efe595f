"""The CLI is one source with the code: choice lists are the code's constants, every example in
`hwnas --help` and in the pipeline commands' help parses, `hwnas export` takes the run's dataset,
and the `predictors` objective provider returns what the main job searches."""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
from hwnas.cli import EPILOG, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:  # argparse offers no public walk over subcommands
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    raise AssertionError("no subcommands")


def _choice_options() -> dict[tuple[str, str], tuple]:
    out = {}
    for cmd, p in _subparsers(build_parser()).items():
        for a in p._actions:
            if a.choices is not None and a.option_strings:
                out[(cmd, a.option_strings[-1])] = tuple(a.choices)
    return out


def test_every_cli_choice_list_is_the_code_constant() -> None:
    from hwnas.data import DATASETS
    from hwnas.pipeline import STAGES
    from hwnas.searchers import SAMPLERS
    from hwnas.supernet.train import POLICIES

    expected = {
        ("train", "--policy"): POLICIES,
        ("run", "--policy"): POLICIES,
        ("search", "--sampler"): SAMPLERS,
        ("run", "--sampler"): SAMPLERS,
        ("run", "--force"): STAGES,
        ("run", "--stop-after"): STAGES,
        ("export", "--dataset"): DATASETS,
        # CLI-only formats, and the profile statistic, which the code checks inline (estimators/profile.py)
        ("pareto", "--format"): ("table", "csv", "json"),
        ("search", "--format"): ("table", "csv", "json"),
        ("profile", "--statistic"): ("min", "median"),
    }
    got = _choice_options()
    assert set(got) == set(expected), "a choice option was added or removed: list its code constant here"
    for k, v in expected.items():
        assert got[k] == tuple(v), k


def test_a_bad_choice_is_refused_with_the_constants_values(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["search", "--sampler", "nsga9"])
    assert e.value.code == 2
    assert "nsga3" in capsys.readouterr().err
    assert build_parser().parse_args(["run", "--sampler", "nsga3"]).sampler == "nsga3"


def _examples(text: str) -> list[list[str]]:
    """The `hwnas ...` command lines of a help text (backslash continuations joined)."""
    lines = text.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        s = line.strip()
        if s.startswith("hwnas "):
            out.append(shlex.split(s, comments=True)[1:])  # `# ...` after a command explains it
    return out


def test_every_help_example_of_hwnas_run_and_export_parses() -> None:
    from hwnas.pipeline.cli import EXPORT_EPILOG, RUN_EPILOG

    examples = _examples(EPILOG) + _examples(RUN_EPILOG) + _examples(EXPORT_EPILOG)
    assert {e[0] for e in _examples(EPILOG)} >= {"run", "train", "profile", "search", "pareto", "export"}
    for argv in examples:
        args = build_parser().parse_args(argv)  # SystemExit (bad option or missing required one) fails
        assert callable(args.func), argv


def test_export_takes_the_dataset_of_the_run_then_of_the_supernet(tmp_path) -> None:
    from hwnas.pipeline.cli import recorded_data

    run_dir, sn = tmp_path / "run", tmp_path / "run" / "supernet"
    sn.mkdir(parents=True)
    assert recorded_data(None, sn) == ("fashion-mnist", None)  # nothing recorded: the default
    (sn / "supernet.json").write_text(json.dumps({"config": {"dataset": "folder", "data_dir": "/data/imgs"}}))
    assert recorded_data(None, sn / "supernet.safetensors") == ("folder", "/data/imgs")
    (run_dir / "config.json").write_text(json.dumps({"dataset": "cifar10", "data_dir": "/data/c10"}))
    assert recorded_data(str(run_dir), sn) == ("cifar10", "/data/c10")


class _ByMacs:
    """A latency/accuracy stand-in with the predictor protocol: predict(arch) from the analytic MACs."""

    def __init__(self, space, scale: float):
        from hwnas.searchers import arch_cost

        self.space, self.scale, self.cost = space, scale, arch_cost

    def predict(self, arch) -> float:
        return self.scale * self.cost(self.space, arch)["macs"]


def test_predictors_provider_returns_the_main_jobs_metrics() -> None:
    from hwnas.errors import ObjectiveError
    from hwnas.estimators import MemoryModel
    from hwnas.search_space import Space
    from hwnas.searchers import arch_cost, make_objective, objective_providers

    assert "predictors" in objective_providers()
    space = Space.preset("fmnist-mbv3")
    mem = MemoryModel(space, batch_size=1)
    lat = {"cpu": _ByMacs(space, 1e-6), "ort-cpu": _ByMacs(space, 2e-6)}
    fn = make_objective(space, "predictors", accuracy=_ByMacs(space, 1e-9), latency=lat, memory=mem,
                        energy={"cpu": _ByMacs(space, 3e-6)})
    arch = space.sample_many(1, 3)[0]
    m = fn(arch)
    macs, params = arch_cost(space, arch)["macs"], arch_cost(space, arch)["params"]
    assert m["latency_ms@cpu"] == pytest.approx(1e-6 * macs) and m["latency_ms@ort-cpu"] == pytest.approx(2e-6 * macs)
    assert m["energy_mj@cpu"] == pytest.approx(3e-6 * macs) and "energy_mj@ort-cpu" not in m
    assert m["peak_mem_mb@cpu"] == m["peak_mem_mb@ort-cpu"] == pytest.approx(mem.predict(arch))
    assert m["flops"] == 2 * macs and m["macs"] == macs and m["params"] == params  # flops: 2 x MACs, as everywhere
    with pytest.raises(ObjectiveError, match="latency"):
        make_objective(space, "predictors", accuracy=_ByMacs(space, 1e-9), memory=mem)
    with pytest.raises(ObjectiveError, match="predict"):
        make_objective(space, "predictors", accuracy=object(), latency=lat, memory=mem)
