"""The hand-designed baseline of `benchmarks/nas_vs_manual.py`: its nets and its domination check."""

from __future__ import annotations

import pytest
import torch
from hwnas.estimators import arch_macs
from hwnas.search_space import Space
from hwnas.supernet import build_static

from tests._helpers import load_benchmark


def _bench():
    return load_benchmark("nas_vs_manual")


def test_manual_family_is_one_arch_spaces_on_the_templates_macro_structure():
    bench = _bench()
    template = Space.preset("fmnist-mbv3")
    nets = bench.manual_nets(template)
    assert list(nets) == ["MBv2-0.35", "MBv2-0.5", "MBv2-0.75", "MBv2-1.0", "MBv3-Small"]
    macs = {}
    for name, (space, arch) in nets.items():
        a = space.parse(arch)
        assert space.size() == 1, f"{name}: a manual net is the only arch of its space"
        assert [st.stride for st in space.stages] == [st.stride for st in template.stages]
        assert a.resolution == max(template.resolutions)
        out = build_static(space, a).eval()(torch.zeros(2, 1, a.resolution, a.resolution))
        assert out.shape == (2, template.num_classes)
        macs[name] = arch_macs(space, a)
    v2 = [macs[f"MBv2-{w}"] for w in (0.35, 0.5, 0.75, 1.0)]
    assert v2 == sorted(v2) and len(set(v2)) == 4, "MobileNetV2 MACs grow with the width multiplier"
    # MobileNetV2: kernel 3, expand 6 after the first stage, ReLU6, no SE
    v2_space, v2_arch = nets["MBv2-1.0"]
    assert v2_arch == "r28|s1w16:mb_k3_e1|s2w24:mb_k3_e6x2|s3w40:mb_k3_e6x3|s4w80:mb_k3_e6x3|s5w96:mb_k3_e6x2"
    assert all(st.act == "relu6" and not st.se for st in v2_space.stages)
    # MobileNetV3-Small-like: SE and hard-swish where the paper has them, a 1,024-wide feature layer
    small, _ = nets["MBv3-Small"]
    assert [st.se for st in small.stages] == [True, False, True, True, True]
    assert [st.act for st in small.stages] == ["relu", "relu", "hswish", "hswish", "hswish"]
    assert small.head.feature_channels == 1024


def _m(name, acc, cpu, ort):
    return {"name": name, "test_acc": acc, "latency_ms": {"cpu": cpu, "ort-cpu": ort}}


def _n(acc, cpu, ort, ft=None):
    return {"test_acc": acc, "finetuned_test_acc": ft, "latency_ms": {"cpu": cpu, "ort-cpu": ort}}


def test_dominance_asks_for_a_nas_net_at_or_under_each_manual_latency_with_at_least_its_accuracy():
    bench = _bench()
    manual = [_m("A", 0.90, 2.0, 0.30), _m("B", 0.92, 3.0, 0.40)]
    nas = [_n(0.905, 1.5, 0.25), _n(0.915, 2.5, 0.45, ft=0.925)]
    checks = {(c["device"], c["manual"]): c for c in bench.dominance(manual, nas, ["cpu", "ort-cpu"])}
    assert checks["cpu", "A"]["nas_dominates"] and checks["cpu", "A"]["best_nas_acc_at_or_below"] == 0.905
    # on cpu B (3.0 ms) has both NAS nets under it, the better one 0.915 < 0.92
    assert not checks["cpu", "B"]["nas_dominates"] and checks["cpu", "B"]["best_nas_acc_at_or_below"] == 0.915
    # on ort-cpu the second NAS net (0.45 ms) is slower than B: only 0.905 counts
    assert checks["ort-cpu", "B"]["best_nas_acc_at_or_below"] == 0.905 and not checks["ort-cpu", "B"]["nas_dominates"]
    ft = {(c["device"], c["manual"]): c for c in bench.dominance(manual, nas, ["cpu", "ort-cpu"], finetuned=True)}
    assert ft["cpu", "B"]["nas_dominates"] and ft["cpu", "B"]["best_nas_acc_at_or_below"] == 0.925
    assert not ft["ort-cpu", "B"]["nas_dominates"]
    none_under = bench.dominance([_m("C", 0.5, 0.1, 0.01)], nas, ["cpu"])
    assert none_under[0]["best_nas_acc_at_or_below"] is None and not none_under[0]["nas_dominates"]


class _Front:
    """What `_picks` asks of a front: `pick("latency_ms@DEV<=X")` (the most accurate member predicted at
    or under X), `column(name)` and `archs`; here a table of (latency per device, accuracy, arch)."""

    def __init__(self, rows):
        self.rows = rows
        self.archs = [r[2] for r in rows]

    def column(self, name):
        return [r[0][name.split("@")[1]] for r in self.rows]

    def pick(self, expr):
        metric, bound = expr.split("<=")
        dev = metric.split("@")[1]
        ok = [r for r in self.rows if r[0][dev] <= float(bound)]
        if not ok:
            raise ValueError(f"no member meets {expr}")
        return type("Pick", (), {"arch": max(ok, key=lambda r: r[1])[2]})


def test_picks_keep_the_exported_ones_and_add_the_most_accurate_and_the_slowest_under_each_latency_once():
    bench = _bench()
    front = _Front([({"cpu": 1.0, "ort-cpu": 0.05}, 0.93, "a"), ({"cpu": 1.2, "ort-cpu": 0.09}, 0.92, "b"),
                    ({"cpu": 0.9, "ort-cpu": 0.12}, 0.91, "c")])
    manual_ms = {"M1": {"cpu": 1.1, "ort-cpu": 0.06}, "M2": {"cpu": 1.3, "ort-cpu": 0.10}, "M3": {"cpu": 0.5, "ort-cpu": 0.2}}
    archs, picked = bench._picks(front, ["cpu", "ort-cpu"], manual_ms, exported=["b"])
    # cpu: M1 (1.1 ms) -> most accurate a, slowest a; M2 (1.3) -> a and b; M3 (0.5) -> nothing under it
    # ort-cpu: M1 (0.06) -> a; M2 (0.10) -> a and the slower b; M3 (0.2) -> a and c
    assert archs == ["b", "a", "c"], "exported first, then each new pick once, in order"
    assert picked == {"cpu": {"a", "b"}, "ort-cpu": {"a", "b", "c"}}


@pytest.mark.parametrize("argv, bad", [(["--threads", "0"], "--threads"), (["--steps", "0"], "--steps"),
                                       (["--widths", "5"], "--widths"), (["--finetune-steps", "-1"], "--finetune-steps"),
                                       (["--finetune-lr", "0"], "--finetune-lr"),
                                       (["--finetune-all", "--finetune-for", "cpu"], "choose one"),
                                       (["--run", "/nonexistent-run"], "scripts/main.sh")])
def test_bad_arguments_are_refused_naming_what_is_allowed(argv, bad, capsys):
    bench = _bench()
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and bad in capsys.readouterr().err


def test_a_recorded_finetuning_of_the_same_arch_weights_steps_and_lr_is_reused_and_nothing_else(tmp_path, monkeypatch):
    bench = _bench()
    monkeypatch.setattr(bench, "FINETUNED_JSON", tmp_path / "finetuned.json")
    rec = {"arch": "r20|x", "supernet": "fmnist-mbv3", "supernet_sha256": "abc", "steps": 4000, "lr": 0.05, "seed": 0,
           "accuracy_before": 0.91, "accuracy_after": 0.92, "seconds": 300.0, "finished": "2026-12-01T06:00:00Z"}
    bench.atomic_write_json(bench.FINETUNED_JSON, {"benchmark": "nas_vs_manual_finetuned", "subnets": [rec]})
    missing = tmp_path / "no-such-checkpoint"
    kw = {"steps": 4000, "lr": 0.05, "supernet": "fmnist-mbv3", "loaders": None, "calib_images": 10}
    assert bench._finetune_cached(missing, "r20|x", weights_sha="abc", **kw) == rec
    # another lr (or other weights) is a different fine-tuning: it runs, and fails here on the missing folder
    with pytest.raises(Exception, match="no-such-checkpoint"):
        bench._finetune_cached(missing, "r20|x", weights_sha="abc", **{**kw, "lr": 0.01})
    with pytest.raises(Exception, match="no-such-checkpoint"):
        bench._finetune_cached(missing, "r20|x", weights_sha="other", **kw)
