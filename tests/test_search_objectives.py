"""Objectives, budgets and providers of hwnas.searchers (fast, no search engine)."""

from __future__ import annotations

import math

import pytest
from hwnas.errors import BudgetError, ObjectiveError
from hwnas.search_space import Space
from hwnas.searchers import (
    Budget,
    Objective,
    arch_cost,
    check_values,
    make_objective,
    objective_providers,
    parse_budgets,
    parse_objectives,
    register_objective_provider,
)


def test_objective_parse_directions_and_devices():
    assert Objective.parse("accuracy") == Objective("accuracy", "maximize")
    assert Objective.parse("latency_ms@cpu") == Objective("latency_ms@cpu", "minimize")
    assert Objective.parse("params:max").direction == "maximize"
    assert Objective.parse("params:max").spec() == "params:max"
    objs = parse_objectives("accuracy,latency_ms@cpu,latency_ms@jetson-nano,peak_mem_mb@cpu")
    assert [o.device for o in objs] == [None, "cpu", "jetson-nano", "cpu"]


@pytest.mark.parametrize(
    "spec, words",
    [("speed", "unknown objective"), ("latency_ms", "needs a device"), ("flops@cpu", "not per device"),
     ("acc uracy", "malformed"), ("", "malformed")],
)
def test_objective_parse_errors_name_the_problem(spec, words):
    with pytest.raises(ObjectiveError, match=words):
        Objective.parse(spec)


def test_duplicate_objectives_rejected():
    with pytest.raises(ObjectiveError, match="given twice"):
        parse_objectives(["flops", "flops"])


def test_budget_parse_and_violation():
    b = Budget.parse("latency_ms@cpu<=4")
    assert (b.metric, b.op, b.bound) == ("latency_ms@cpu", "<=", 4.0)
    assert b.violation({"latency_ms@cpu": 3.0}) == -1.0
    assert b.violation({"latency_ms@cpu": 5.5}) == 1.5
    a = Budget.parse("accuracy >= 0.9")
    assert a.violation({"accuracy": 0.95}) < 0 < a.violation({"accuracy": 0.85})
    assert Budget.parse("params<=1e6").bound == 1e6
    assert Budget.parse("flops<2.5M").bound == 2.5e6
    strict = Budget.parse("params<100")
    assert strict.violation({"params": 100}) > 0 and strict.violation({"params": 99}) < 0
    assert [str(x) for x in parse_budgets("params<=1e6, flops<=3e6")] == ["params<=1e+06", "flops<=3e+06"]
    assert Budget.parse(str(b)) == b


@pytest.mark.parametrize(
    "expr, words",
    [("latency_ms@cpu=4", "malformed"), ("latency_ms@cpu<=fast", "not a number"), ("speed<=3", "unknown objective"),
     ("latency_ms<=3", "needs a device"), ("params<=inf", "finite"), ("<=3", "malformed")],
)
def test_budget_errors_name_the_problem(expr, words):
    with pytest.raises(BudgetError, match=words):
        Budget.parse(expr)


def test_budget_on_missing_metric_is_an_objective_error():
    with pytest.raises(ObjectiveError, match="did not return"):
        Budget.parse("params<=10").violation({"flops": 1.0})


def test_check_values_rejects_nan_inf_missing_and_non_numbers():
    assert check_values({"a": 1, "b": 2.5}, ["a"]) == {"a": 1.0, "b": 2.5}
    with pytest.raises(ObjectiveError, match="non-finite"):
        check_values({"a": math.nan}, ["a"], "r28|x")
    with pytest.raises(ObjectiveError, match="non-finite"):
        check_values({"a": 1.0, "b": math.inf}, ["a"])
    with pytest.raises(ObjectiveError, match="did not return"):
        check_values({"a": 1.0}, ["a", "latency_ms@cpu"])
    with pytest.raises(ObjectiveError, match="non-numeric"):
        check_values({"a": "x"}, ["a"])
    with pytest.raises(ObjectiveError, match="expected a dict"):
        check_values([1.0], ["a"])


def test_analytic_params_match_the_static_net_exactly_and_flops_fvcore():
    torch = pytest.importorskip("torch")
    from fvcore.nn import FlopCountAnalysis
    from hwnas.supernet import build_static

    for name in ("fmnist-mbv3", "fmnist-mixed"):
        space = Space.preset(name)
        for seed in range(3):
            arch = space.sample(seed)
            net = build_static(space, arch).eval()
            cost = arch_cost(space, arch)
            assert cost["params"] == sum(p.numel() for p in net.parameters())
            fca = FlopCountAnalysis(net, torch.zeros(1, space.in_channels, arch.resolution, arch.resolution))
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            # fvcore also counts BN/SE multiplies/pooling; convs and linears dominate (within 10%).
            assert 0.9 < cost["macs"] / fca.total() <= 1.0


def test_provider_registry_is_pluggable():
    space = Space.preset("fmnist-mbv3")

    def factory(space, scale=1.0):
        return lambda arch: {"latency_ms@cpu": scale * arch.resolution}

    register_objective_provider("test-latency", factory, metrics=("latency_ms",), help="test")
    assert "test-latency" in objective_providers()
    fn = make_objective(space, "flops,test-latency", scale=0.5)
    out = fn(space.max_arch())
    assert set(out) == {"flops", "params", "latency_ms@cpu"} and out["latency_ms@cpu"] == 14.0
    with pytest.raises(ObjectiveError, match="unknown objective provider"):
        make_objective(space, "nope")
