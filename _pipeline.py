"""The main job: from nothing to a measured Pareto front with exported subnets, in one command.

    hwnas run --config configs/fmnist-cpu.yaml

Stages (each writes its outputs under `results/runs/<name>/` and a stamp in `stages/`; a re-run
skips a stage whose stamp matches the config, so a crash or Ctrl-C resumes where it stopped):

1. train     once-for-all supernet (hwnas.supernet.train), demo schedule by default
2. profile   each device's lookup table + whole-network timings -> latency predictors
3. accuracy  (arch, search-val accuracy) pairs from the supernet (BN recalibrated) -> accuracy predictor
4. search    multi-objective Optuna study (sqlite in the run directory) under the budgets
5. pareto    the search re-measured: up to `search.refine` distinct archs by Pareto rank (the
             predicted front first) scored on search-val through the supernet like the pairs;
             the final front (pareto.csv, pareto.png) is taken over those and the pairs, with
             measured search-val accuracy and predicted latency/memory/energy (candidates.csv)
6. export    the best subnet under each of three latency budgets: extracted, BN recalibrated,
             test accuracy and latency MEASURED, written as checkpoints with predicted and measured
             metrics side by side
7. report    report.md and predicted_vs_measured.png
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_json, atomic_write_text, read_json
from hwnas.errors import ConfigError

__all__ = ["RunConfig", "load_run_config", "run", "STAGES", "export_pick"]

log = logging.getLogger("hwnas.run")
REPO = Path(__file__).resolve().parent
STAGES = ("train", "profile", "accuracy", "search", "pareto", "export", "report")


# ---- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """A resolved main-job configuration (YAML `configs/fmnist-cpu.yaml`; CLI flags override)."""

    name: str = "fashion-mnist-cpu"
    space: str = "fmnist-mbv3"
    seed: int = 0
    out_root: str = "results/runs"
    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = None
    # training
    train_config: str = "configs/fmnist.yaml"
    schedule: str = "demo"
    policy: str | None = None
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    # devices and profiling
    devices: tuple[str, ...] = ("cpu", "ort-cpu")
    profile_networks: int = 50
    validate_networks: int = 20
    # accuracy predictor
    accuracy_archs: int = 100
    val_images: int = 2500
    calib_images: int = 2000
    # search
    sampler: str = "nsga2"
    trials: int = 3000
    objectives: tuple[str, ...] = ("accuracy", "latency_ms@cpu", "latency_ms@ort-cpu")
    budgets: tuple[str, ...] = ("peak_mem_mb@cpu<=3.0",)
    storage: str | None = None  # None: sqlite in the run directory; or postgresql://..., a journal file
    ray_address: str | None = None  # None: Optuna in process; "auto" / HOST:PORT: Ray Tune trials
    workers: int = 1
    refine_archs: int = 40  # predicted-front archs re-measured on search-val before the final front
    # export
    latency_budgets: tuple[float, ...] | str = "auto"
    export_formats: tuple[str, ...] = ("safetensors", "onnx")

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"run name {self.name!r} must be a plain directory name")
        if not self.devices:
            raise ConfigError("devices: at least one device is needed (e.g. [cpu])")
        for k in ("profile_networks", "accuracy_archs", "trials", "val_images", "calib_images"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{k}={v!r} must be an int >= 1")
        if self.accuracy_archs < 10:
            raise ConfigError(f"accuracy_archs={self.accuracy_archs} must be >= 10 to fit an accuracy predictor")
        if not any(o.startswith("accuracy") for o in self.objectives):
            raise ConfigError(f"objectives {list(self.objectives)} must include accuracy")
        if isinstance(self.latency_budgets, str) and self.latency_budgets != "auto":
            raise ConfigError(f"latency_budgets={self.latency_budgets!r}: 'auto' or a list of 3 numbers (ms)")

    @property
    def run_dir(self) -> Path:
        root = Path(self.out_root)
        return (root if root.is_absolute() else REPO / root) / self.name

    @property
    def primary_device(self) -> str:
        return self.devices[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train_overrides"] = dict(self.train_overrides)
        return d


_SECTIONS = {
    "data": {"dataset": "dataset", "data_dir": "data_dir", "subset": "subset"},
    "train": {"config": "train_config", "schedule": "schedule", "policy": "policy", "overrides": "train_overrides"},
    "profile": {"networks": "profile_networks", "validate_networks": "validate_networks"},
    "accuracy": {"archs": "accuracy_archs", "val_images": "val_images", "calib_images": "calib_images"},
    "search": {"sampler": "sampler", "trials": "trials", "objectives": "objectives", "budgets": "budgets",
               "storage": "storage", "ray_address": "ray_address", "workers": "workers",
               "refine": "refine_archs"},
    "export": {"latency_budgets": "latency_budgets", "formats": "export_formats"},
}
_TOP = {"name", "space", "seed", "out_root", "devices"}


def load_run_config(path: str | os.PathLike | None, **overrides: Any) -> RunConfig:
    """Read a run YAML (sections data/train/profile/accuracy/search/export) and apply overrides."""
    from hwnas._io import read_yaml_mapping

    flat: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        d = read_yaml_mapping(p, "config file", ConfigError)
        for k, v in d.items():
            if k in _TOP:
                flat[k] = v
            elif k in _SECTIONS:
                if not isinstance(v, dict):
                    raise ConfigError(f"{p}: section {k!r} must be a mapping")
                for kk, vv in v.items():
                    if kk not in _SECTIONS[k]:
                        raise ConfigError(f"{p}: unknown key {k}.{kk}; allowed: {sorted(_SECTIONS[k])}")
                    flat[_SECTIONS[k][kk]] = vv
            else:
                raise ConfigError(f"{p}: unknown key {k!r}; allowed: {sorted(_TOP | set(_SECTIONS))}")
    flat.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("devices", "objectives", "budgets", "export_formats"):
        if k in flat and isinstance(flat[k], str):
            flat[k] = tuple(s.strip() for s in flat[k].split(",") if s.strip())
        elif k in flat:
            flat[k] = tuple(flat[k])
    if isinstance(flat.get("latency_budgets"), list):
        flat["latency_budgets"] = tuple(float(x) for x in flat["latency_budgets"])
    try:
        return RunConfig(**flat)
    except TypeError as e:
        raise ConfigError(f"bad run config: {e}") from None


# ---- stage bookkeeping ---------------------------------------------------------------------------
def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Stages:
    """Stamps in run_dir/stages/<name>.json: a stage is done when its stamp's key matches."""

    def __init__(self, run_dir: Path, *, force: Sequence[str] = ()):
        self.dir = run_dir / "stages"
        self.force = set(force)
        self.keys: dict[str, str] = {}
        self.ran: set[str] = set()  # stages run by this invocation: everything after them re-runs

    def key(self, name: str, deps: Mapping[str, Any]) -> str:
        upstream = {s: self.keys[s] for s in STAGES[: STAGES.index(name)] if s in self.keys}
        k = _hash({"deps": deps, "upstream": upstream})
        self.keys[name] = k
        return k

    def done(self, name: str, key: str) -> dict[str, Any] | None:
        p = self.dir / f"{name}.json"
        if name in self.force or self.ran or not p.is_file():
            return None
        try:
            stamp = read_json(p)
        except (OSError, json.JSONDecodeError):
            return None
        return stamp.get("summary") if stamp.get("key") == key else None

    def finish(self, name: str, key: str, summary: Mapping[str, Any], seconds: float) -> None:
        self.ran.add(name)
        atomic_write_json(self.dir / f"{name}.json", {"stage": name, "key": key, "seconds": seconds,
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "summary": dict(summary)})


def _say(msg: str) -> None:
    print(msg, flush=True)


# ---- the objective the search optimises ----------------------------------------------------------
class PredictorObjective:
    """Arch -> {accuracy, latency_ms@dev..., peak_mem_mb@dev, energy_mj@dev, params, macs, flops} from predictors."""

    def __init__(self, space: Any, accuracy: Any, latency: Mapping[str, Any], memory: Any, energy: Mapping[str, Any]):
        from hwnas.searchers import arch_cost

        self.space, self.accuracy, self.latency, self.memory, self.energy = space, accuracy, latency, memory, energy
        # closed-form MACs and parameters (equal to counting the static net's, which costs ms per trial)
        self._cost = arch_cost

    def __call__(self, arch: Any) -> dict[str, float]:
        out = {"accuracy": float(self.accuracy.predict(arch))}
        for dev, pred in self.latency.items():
            out[f"latency_ms@{dev}"] = float(pred.predict(arch))
        for dev, e in self.energy.items():
            out[f"energy_mj@{dev}"] = float(e.predict(arch))
        mem = float(self.memory.predict(arch))
        for dev in self.latency:
            out[f"peak_mem_mb@{dev}"] = mem
        cost = self._cost(self.space, arch)
        out["params"] = float(cost["params"])
        out["macs"] = float(cost["macs"])
        out["flops"] = float(cost["flops"])  # 2 x MACs, as everywhere
        return out


# ---- the run -------------------------------------------------------------------------------------
def run(cfg: RunConfig, *, force: Sequence[str] = (), stop_after: str | None = None, progress: bool = True) -> Path:
    """Run (or resume) the whole main job; returns the run directory."""
    import torch
    from hwnas.search_space import Space

    for s in force:
        if s not in STAGES:
            raise ConfigError(f"--force {s!r}: unknown stage; stages: {list(STAGES)}")
    if stop_after is not None and stop_after not in STAGES:
        raise ConfigError(f"--stop-after {stop_after!r}: unknown stage; stages: {list(STAGES)}")
    space = Space.preset(cfg.space)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    stages = _Stages(run_dir, force=force)
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 8)))
    ctx: dict[str, Any] = {"cfg": cfg, "space": space, "run_dir": run_dir, "progress": progress, "summaries": {}}
    t_all = time.perf_counter()
    steps: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]] = [
        ("train", {"space": cfg.space, "train": _train_config(cfg).to_dict(), "subset": cfg.subset}, _stage_train),
        ("profile", {"devices": cfg.devices, "networks": cfg.profile_networks, "validate": cfg.validate_networks,
                     "seed": cfg.seed}, _stage_profile),
        ("accuracy", {"archs": cfg.accuracy_archs, "val": cfg.val_images, "calib": cfg.calib_images, "seed": cfg.seed},
         _stage_accuracy),
        ("search", {"sampler": cfg.sampler, "trials": cfg.trials, "objectives": cfg.objectives, "budgets": cfg.budgets,
                    "seed": cfg.seed, "storage": cfg.storage}, _stage_search),
        ("pareto", {"v": 2, "refine": cfg.refine_archs, "val": cfg.val_images, "calib": cfg.calib_images}, _stage_pareto),
        ("export", {"budgets": cfg.latency_budgets, "formats": cfg.export_formats}, _stage_export),
        ("report", {"v": 1}, _stage_report),
    ]
    for i, (name, deps, fn) in enumerate(steps, start=1):
        key = stages.key(name, deps)
        summary = stages.done(name, key)
        if summary is not None:
            _say(f"[{i}/{len(steps)}] {name}: up to date, skipped")
            ctx["summaries"][name] = summary
            continue
        _say(f"[{i}/{len(steps)}] {name} ...")
        t0 = time.perf_counter()
        summary = fn(ctx)
        dt = time.perf_counter() - t0
        summary["_seconds"] = dt
        ctx["summaries"][name] = summary
        stages.finish(name, key, summary, dt)
        _say(f"[{i}/{len(steps)}] {name}: done in {dt:.1f} s")
        if stop_after == name:
            _say(f"stopping after {name} as asked; run again to continue")
            return run_dir
    _say(f"all stages done in {time.perf_counter() - t_all:.1f} s -> {run_dir}")
    return run_dir


def _train_config(cfg: RunConfig) -> Any:
    from hwnas.supernet.train import load_config

    path = Path(cfg.train_config)
    path = path if path.is_absolute() else REPO / path
    over = dict(cfg.train_overrides)
    over.setdefault("space", cfg.space)
    over.setdefault("seed", cfg.seed)
    over.setdefault("dataset", cfg.dataset)
    if cfg.subset is not None:
        over["subset"] = cfg.subset
    if cfg.data_dir:
        over["data_dir"] = str(cfg.data_dir)
    if cfg.policy:
        over["policy"] = cfg.policy
    return load_config(path, schedule=cfg.schedule, overrides=over)


def _loaders(ctx: dict[str, Any]) -> Any:
    if "loaders" not in ctx:
        from hwnas.data import make_loaders

        cfg = ctx["cfg"]
        ctx["loaders"] = make_loaders(cfg.dataset, cfg.data_dir, space=ctx["space"], seed=cfg.seed, subset=cfg.subset)
    return ctx["loaders"]


def _supernet(ctx: dict[str, Any]) -> Any:
    if "supernet" not in ctx:
        from hwnas.supernet import load_supernet

        ctx["supernet"] = load_supernet(ctx["run_dir"] / "supernet").eval()
    return ctx["supernet"]


# ---- 1. train ------------------------------------------------------------------------------------
def _stage_train(ctx: dict[str, Any]) -> dict[str, Any]:
    from hwnas.supernet.train import train

    cfg = ctx["cfg"]
    tcfg = _train_config(cfg)
    res = train(tcfg, ctx["run_dir"] / "supernet", resume=True, progress=ctx["progress"])
    report = _jsonable(getattr(res, "report", {}) or {})
    return {"report": report, "epochs": tcfg.epochs, "policy": tcfg.policy, "schedule": cfg.schedule}


# ---- 2. profile ----------------------------------------------------------------------------------
def _stage_profile(ctx: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from hwnas.estimators import Device, build_predictors, measure
    from hwnas.estimators.latency import spearman, within

    cfg, space = ctx["cfg"], ctx["space"]
    out: dict[str, Any] = {}
    rng_archs = space.sample_many(cfg.validate_networks, cfg.seed + 999, unique=True)
    for dev_name in cfg.devices:
        dev = Device.from_name(dev_name)
        d = ctx["run_dir"] / "profiles" / dev.name
        t0 = time.perf_counter()
        prof, pred = build_predictors(space, dev, d, n_networks=cfg.profile_networks, progress=ctx["progress"], seed=cfg.seed)
        t_prof = time.perf_counter() - t0
        # Held-out validation: archs never used to fit the correction, measured now end to end.
        val_path = d / "validation.csv"
        if val_path.is_file():
            vdf = pd.read_csv(val_path)
            meas = vdf["measured_ms"].to_numpy()
        else:
            timings = [measure(a, dev, space=space) for a in rng_archs]
            meas = np.array([t.min_ms for t in timings])  # the statistic the predictors are fitted on
            vdf = pd.DataFrame({"arch": [str(a) for a in rng_archs], "measured_ms": meas,
                                "measured_median_ms": [t.median_ms for t in timings]})
        predicted = pred.predict_many([space.parse(a) for a in vdf["arch"]])
        vdf["predicted_ms"] = predicted
        atomic_write_text(val_path, vdf.to_csv(index=False))
        out[dev.name] = {
            "fingerprint": dev.fingerprint_hash(),
            "rows": int(len(prof.table)),
            "networks": int(len(prof.networks)),
            "profile_seconds": t_prof,
            "validation_archs": len(vdf),
            "spearman": float(spearman(predicted, meas)),
            "within_10pct": float(within(predicted, meas, 0.10)),
            "median_abs_rel_err": float(np.median(np.abs(predicted - meas) / meas)),
        }
        _say(f"    {dev.name}: Spearman {out[dev.name]['spearman']:.3f}, "
             f"{100 * out[dev.name]['within_10pct']:.0f}% of {len(vdf)} held-out archs within ±10%")
    return {"devices": out}


def _latency_predictors(ctx: dict[str, Any]) -> dict[str, Any]:
    from hwnas.estimators import Device, LatencyPredictor

    out = {}
    for dev_name in ctx["cfg"].devices:
        dev = Device.from_name(dev_name)
        out[dev.name] = LatencyPredictor.load(ctx["run_dir"] / "profiles" / dev.name / "latency_predictor.json", device=dev)
    return out


# ---- 3. accuracy ---------------------------------------------------------------------------------
def _stage_accuracy(ctx: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    import torch
    from hwnas.estimators import AccuracyPredictor
    from hwnas.supernet.bn import evaluate
    from tqdm import tqdm

    cfg, space = ctx["cfg"], ctx["space"]
    net = _supernet(ctx)
    loaders = _loaders(ctx)
    val = _limit(loaders.val, cfg.val_images)
    calib = loaders.calib_images(cfg.calib_images)
    archs = [space.min_arch(), space.max_arch()] + space.sample_many(cfg.accuracy_archs - 2, cfg.seed + 7, unique=True)
    path = ctx["run_dir"] / "accuracy_samples.csv"
    done: dict[str, float] = {}
    if path.is_file():  # resume: keep the pairs already measured
        prev = pd.read_csv(path)
        done = dict(zip(prev["arch"], prev["val_accuracy"]))
    rows = []
    with torch.no_grad():
        for k, a in enumerate(tqdm(archs, desc="accuracy pairs", disable=not ctx["progress"], unit="arch")):
            s = str(a)
            if s not in done:
                done[s] = evaluate(net, a, val, calib=calib, num_calib=len(calib))
                if k % 10 == 9:
                    atomic_write_text(path, pd.DataFrame({"arch": list(done), "val_accuracy": list(done.values())}).to_csv(index=False))
            rows.append((s, done[s]))
    df = pd.DataFrame(rows, columns=["arch", "val_accuracy"])
    atomic_write_text(path, df.to_csv(index=False))
    pred = AccuracyPredictor.fit(space, [space.parse(a) for a in df["arch"]], df["val_accuracy"].to_numpy(), seed=cfg.seed)
    pred.save(ctx["run_dir"] / "accuracy_predictor.json")
    rep = _jsonable(pred.report)
    _say(f"    accuracy predictor: {rep}")
    return {"pairs": len(df), "val_images": min(cfg.val_images, loaders.val.num_images), "min_acc": float(df["val_accuracy"].min()),
            "max_acc": float(df["val_accuracy"].max()), "predictor": rep}


class _limit:
    """The first n images of an evaluation loader (a deterministic prefix)."""

    def __init__(self, loader: Any, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        seen = 0
        for x, y in self.loader:
            if seen >= self.n:
                break
            take = min(len(y), self.n - seen)
            seen += take
            yield x[:take], y[:take]


# ---- 4. search -----------------------------------------------------------------------------------
def _objective(ctx: dict[str, Any]) -> PredictorObjective:
    from hwnas.estimators import AccuracyPredictor, EnergyPredictor, MemoryModel

    space = ctx["space"]
    lat = _latency_predictors(ctx)
    acc = AccuracyPredictor.load(ctx["run_dir"] / "accuracy_predictor.json")
    energy = {d: EnergyPredictor(p) for d, p in lat.items()}
    return PredictorObjective(space, acc, lat, MemoryModel(space, batch_size=1), energy)


def study_storage(run_dir: Path) -> str:
    return f"sqlite:///{run_dir / 'study.db'}"


def _stage_search(ctx: dict[str, Any]) -> dict[str, Any]:
    import optuna
    from hwnas.searchers import ParetoFront, search

    cfg, space, run_dir = ctx["cfg"], ctx["space"], ctx["run_dir"]
    fn = _objective(ctx)
    storage = cfg.storage or study_storage(run_dir)
    # A search whose settings changed starts a new study; a crashed one resumes.
    name = f"{cfg.name}-{_hash([cfg.sampler, cfg.objectives, cfg.budgets, cfg.seed, cfg.trials])[:8]}"
    try:
        resume = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except Exception:  # noqa: BLE001 - a storage that does not exist yet holds no study
        resume = False
    study = search(space, fn, objectives=list(cfg.objectives), budgets=list(cfg.budgets), n_trials=cfg.trials,
                   sampler=cfg.sampler, seed=cfg.seed, storage=storage, study_name=name, resume=resume,
                   runner="ray" if cfg.ray_address else "optuna", ray_address=cfg.ray_address, workers=cfg.workers,
                   warm_start=[space.min_arch(), space.max_arch()], progress=ctx["progress"])
    study.set_user_attr("supernet", str(run_dir / "supernet"))
    study.set_user_attr("run_dir", str(run_dir))
    front = ParetoFront.from_study(study)
    n_front = int(front.front_mask().sum())
    return {"study": name, "storage": storage, "trials": len(front), "front_size": n_front,
            "feasible": int(front.feasible().sum())}


# ---- 5. pareto -----------------------------------------------------------------------------------
def _study_front(ctx: dict[str, Any]) -> Any:
    """Every trial of the search: accuracy is the predictor's."""
    from hwnas.searchers import ParetoFront

    s = ctx["summaries"]["search"]
    return ParetoFront.load(s["study"], s["storage"])


def _front(ctx: dict[str, Any]) -> Any:
    """The final front: the measured candidates of the pareto stage (candidates.csv), accuracy
    measured on the search-val split through the supernet, the other metrics predicted."""
    import pandas as pd

    return _front_from_table(ctx["cfg"], pd.read_csv(ctx["run_dir"] / "candidates.csv"))


def _front_from_table(cfg: RunConfig, df: Any) -> Any:
    """A ParetoFront over a candidates table (its metric columns; bookkeeping columns skipped)."""
    from hwnas.searchers import ParetoFront

    skip = {"trial", "arch", "feasible", "front", "rank", "source"}
    return ParetoFront.build(objectives=list(cfg.objectives), archs=list(df["arch"]),
                             metrics={k: df[k].to_numpy() for k in df.columns if k not in skip},
                             trials=df["trial"].to_numpy(), budgets=list(cfg.budgets))


def _refine_candidates(study_front: Any, n: int, latency_key: str) -> list[tuple[str, int]]:
    """Up to n distinct feasible archs of the study, by Pareto rank: the whole predicted front
    first, then the next ranks, the last rank that does not fit spread evenly over `latency_key`.
    (A poor accuracy predictor can leave a front of a handful of archs; the next ranks fill in.)"""
    ranks = study_front.ranks()
    lat = study_front.column(latency_key)
    chosen: dict[str, int] = {}
    for r in sorted({int(x) for x in ranks if x >= 1}):
        idx = np.flatnonzero(ranks == r)
        layer: dict[str, int] = {}
        for i in idx[np.argsort(lat[idx], kind="stable")]:
            a = study_front.archs[i]
            if a not in chosen:
                layer.setdefault(a, int(study_front.trials[i]))
        items = list(layer.items())
        room = n - len(chosen)
        if len(items) > room:
            keep = np.unique(np.round(np.linspace(0, len(items) - 1, room)).astype(int)) if room > 0 else []
            items = [items[i] for i in keep]
        chosen.update(items)
        if len(chosen) >= n:
            break
    return list(chosen.items())


def _stage_pareto(ctx: dict[str, Any]) -> dict[str, Any]:
    """Re-measure the best of the search, then take the front of what was measured.

    The accuracy predictor is fitted on a few dozen pairs and can rank poorly; the latency
    predictors are checked against measurements in the profile stage. So the final front uses
    measured search-val accuracy (same images and BN recalibration as the accuracy pairs) for up
    to `refine_archs` distinct archs of the search taken by Pareto rank (`_refine_candidates`),
    plus every arch of the accuracy pairs (already measured), with their predicted latency,
    memory and energy.
    """
    import pandas as pd
    import torch
    from hwnas.supernet.bn import evaluate
    from tqdm import tqdm

    cfg, run_dir, space = ctx["cfg"], ctx["run_dir"], ctx["space"]
    study_front = _study_front(ctx)
    atomic_write_text(run_dir / "trials.csv", study_front.to_frame(all_trials=True).to_csv(index=False))
    fn = _objective(ctx)
    lat_key = f"latency_ms@{cfg.primary_device}"
    picked = _refine_candidates(study_front, cfg.refine_archs, lat_key)
    pairs = pd.read_csv(run_dir / "accuracy_samples.csv")
    measured = dict(zip(pairs["arch"], pairs["val_accuracy"]))
    cache = run_dir / "refine_samples.csv"
    if cache.is_file():  # resume: keep what a crashed run already measured
        prev = pd.read_csv(cache)
        measured.update(zip(prev["arch"], prev["val_accuracy"]))
    todo = [a for a, _ in picked if a not in measured]
    if todo:
        net, loaders = _supernet(ctx), _loaders(ctx)
        val = _limit(loaders.val, cfg.val_images)
        calib = loaders.calib_images(cfg.calib_images)
        new: dict[str, float] = {}
        with torch.no_grad():
            for k, a in enumerate(tqdm(todo, desc="re-measuring the front", disable=not ctx["progress"], unit="arch")):
                new[a] = evaluate(net, space.parse(a), val, calib=calib, num_calib=len(calib))
                if k % 10 == 9 or k == len(todo) - 1:
                    atomic_write_text(cache, pd.DataFrame({"arch": list(new), "val_accuracy": list(new.values())}).to_csv(index=False))
        measured.update(new)
    rows = []
    searched = dict(picked)
    sources = [(a, t, "search") for a, t in picked] + [(a, -1, "pairs") for a in pairs["arch"] if a not in searched]
    for a, t, src in sources:
        m = fn(space.parse(a))
        rows.append({"trial": t, "arch": a, "source": src, **m, "predicted_accuracy": m["accuracy"],
                     "accuracy": float(measured[a])})
    cand = pd.DataFrame(rows)
    front = _front_from_table(cfg, cand)
    full = front.to_frame(all_trials=True).assign(source=cand["source"].to_numpy())
    atomic_write_text(run_dir / "candidates.csv", full.to_csv(index=False))
    df = front.to_frame()
    atomic_write_text(run_dir / "pareto.csv", df.to_csv(index=False))
    _plot_pareto(front, cfg, run_dir / "pareto.png", exported=None, study_front=study_front)
    acc = df["accuracy"].to_numpy()
    fr = full[full["source"] == "search"]
    rho = float(pd.Series(fr["predicted_accuracy"]).corr(pd.Series(fr["accuracy"]), method="spearman")) if len(fr) > 2 else float("nan")
    _say(f"    re-measured: {len(picked)} archs of the search by Pareto rank ({len(todo)} new), {len(cand) - len(picked)} "
         f"accuracy pairs; final front {len(df)}; predicted vs measured accuracy on those {len(picked)}: Spearman {rho:.2f}")
    return {"front_size": len(df), "candidates": len(cand), "remeasured": len(todo), "predicted_front_spearman": rho,
            "accuracy_range": [float(acc.min()), float(acc.max())],
            "latency_range": {d: [float(df[f"latency_ms@{d}"].min()), float(df[f"latency_ms@{d}"].max())]
                              for d in cfg.devices if f"latency_ms@{d}" in df}}


def _plot_pareto(front: Any, cfg: RunConfig, path: Path, exported: list[dict[str, Any]] | None,
                 study_front: Any = None) -> dict[str, Any]:
    """Accuracy vs predicted latency for each device: the search's trials (predicted accuracy) faded,
    the re-measured candidates (search-val accuracy), their 2-D front, budgets and exported picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hwnas.searchers.pareto import nondominated_mask

    all_df = front.to_frame(all_trials=True)
    feas = all_df[all_df["feasible"]]
    trials = study_front.to_frame(all_trials=True) if study_front is not None else None
    devs = [d for d in cfg.devices if f"latency_ms@{d}" in all_df]
    fig, axes = plt.subplots(1, len(devs), figsize=(5.2 * len(devs), 4.2), squeeze=False)
    record: dict[str, Any] = {}
    for ax, d in zip(axes[0], devs):
        if trials is not None:
            t = trials[trials["feasible"]]
            ax.scatter(t[f"latency_ms@{d}"], t["accuracy"] * 100, s=4, c="lightgrey", alpha=0.5,
                       label=f"search trials, predicted accuracy ({len(t)})")
        lat = feas[f"latency_ms@{d}"].to_numpy()
        acc = feas["accuracy"].to_numpy()
        mask = nondominated_mask(np.stack([lat, -acc], axis=1))
        order = np.argsort(lat[mask])
        ax.scatter(lat, acc * 100, s=9, alpha=0.6, c="tab:blue", label=f"re-measured candidates ({len(lat)})")
        ax.plot(lat[mask][order], acc[mask][order] * 100, "o-", ms=3, c="tab:orange", label=f"2-D front ({mask.sum()})")
        record[d] = {"front_latency": lat[mask][order].tolist(), "front_accuracy": acc[mask][order].tolist()}
        if exported:
            for e in exported:
                b = e["budget_ms"] if d == cfg.primary_device else None
                if b is not None:
                    ax.axvline(b, color="grey", ls="--", lw=0.8)
                ax.scatter([e["predicted"][f"latency_ms@{d}"]], [e["predicted"]["accuracy"] * 100], marker="*", s=160,
                           c="red", edgecolor="k", zorder=5)
                ax.annotate(e["label"], (e["predicted"][f"latency_ms@{d}"], e["predicted"]["accuracy"] * 100),
                            textcoords="offset points", xytext=(6, -10), fontsize=8)
        ax.set_xlabel(f"predicted latency on {d} (ms, batch 1)")
        ax.set_ylabel(f"accuracy, search-val split (%; {cfg.val_images} images)")
        ax.set_title(f"{cfg.space}: accuracy vs latency@{d}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return record


# ---- 6. export -----------------------------------------------------------------------------------
def export_pick(
    *,
    supernet: Any,
    space: Any,
    arch: Any,
    out_dir: Path,
    devices: Sequence[str],
    loaders: Any,
    predicted: Mapping[str, float] | None = None,
    calib_images: int = 2000,
    formats: Sequence[str] = ("safetensors", "onnx"),
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    latency: Mapping[str, tuple[float, float]] | None = None,
    static: Any = None,
) -> dict[str, Any]:
    """Extract `arch`, recalibrate BN, measure test accuracy and latency/memory, export with both metric sets.

    `latency` ({device: (min_ms, median_ms)}) passes timings already taken (`measure_round_robin`);
    without it each device is timed here once. `static` passes `arch` already extracted."""
    import torch
    from hwnas.estimators import Device, MemoryModel, measure
    from hwnas.estimators.flops import arch_macs, arch_params
    from hwnas.supernet import export
    from hwnas.supernet.bn import evaluate, recalibrate_bn

    arch = space.parse(arch)
    calib = loaders.calib_images(calib_images)
    with torch.no_grad():
        static = (supernet.extract(arch) if static is None else static).eval()
        recalibrate_bn(static, None, calib, len(calib))
        test_acc = evaluate(static, None, loaders.test, recalibrate=False)
    measured: dict[str, float] = {"accuracy": float(test_acc)}
    for d in devices:
        dev = Device.from_name(d)
        if latency is not None and dev.name in latency:
            t_min, t_med = latency[dev.name]
        else:
            t = measure(static, dev, resolution=arch.resolution)
            t_min, t_med = t.min_ms, t.median_ms
        measured[f"latency_ms@{dev.name}"] = float(t_min)  # same statistic as the predictors
        measured[f"latency_median_ms@{dev.name}"] = float(t_med)
    mem = MemoryModel(space, batch_size=1).estimate(arch)
    metrics = {
        "predicted": dict(predicted or {}),
        "measured": measured,
        "notes": {
            "accuracy": "predicted.accuracy: search-val split through the supernet after BN recalibration (the value the "
                        "final front was built on; predicted.predicted_accuracy is the accuracy predictor's); measured: "
                        "test set after BN recalibration",
            "latency": "batch 1 on this machine (hwnas.estimators.measure): latency_ms = min of repeated runs (the "
                       "statistic the LUT predictors are fitted on, robust on a shared machine; the main job takes the "
                       "min over 3 interleaved rounds); latency_median_ms beside it",
        },
        "memory_bytes": mem.to_dict(),
        "params": int(arch_params(space, arch)),
        "macs": int(arch_macs(space, arch)),
    }
    export(static, arch, out_dir, space=space, formats=formats, metrics=metrics, overwrite=overwrite, extra=extra)
    return {"arch": str(arch), "dir": str(out_dir), "predicted": dict(predicted or {}), "measured": measured,
            "params": metrics["params"], "macs": metrics["macs"], "peak_mem_mb": mem.inference_bytes / 2**20}


def auto_latency_budgets(front: Any, key: str, *, tol: float = 0.05, quantiles: Sequence[float] = (0.2, 0.5, 0.9)
                         ) -> list[float]:
    """Three latency budgets that pick distinct, meaningfully different front members.

    The 2-D front of accuracy vs `key` over the feasible members is cut into groups of members
    whose latency is within `tol` (relative) of the group's fastest: predicted latencies closer
    than that are not told apart by the predictors (their held-out error is ~5-10%). Each group is
    represented by its most accurate member; the budgets are the latencies of the representatives
    at the `quantiles` of the group order. Fewer distinct groups give fewer budgets."""
    from hwnas.searchers.pareto import nondominated_mask

    feas = np.flatnonzero(front.feasible())
    lat = front.column(key)[feas]
    acc = front.column("accuracy")[feas]
    on = nondominated_mask(np.stack([lat, -acc], axis=1))
    lat, acc = lat[on], acc[on]
    order = np.lexsort((-acc, lat))
    starts: list[float] = []  # each group's fastest latency
    reps: list[tuple[float, float]] = []  # each group's most accurate member: (accuracy, latency)
    for i in order:
        if starts and lat[i] <= starts[-1] * (1 + tol):
            if acc[i] > reps[-1][0]:
                reps[-1] = (float(acc[i]), float(lat[i]))
            continue
        starts.append(float(lat[i]))
        reps.append((float(acc[i]), float(lat[i])))
    picks = sorted({int(round(q * (len(reps) - 1))) for q in quantiles})
    return [reps[j][1] for j in picks]


def measure_round_robin(nets: Sequence[tuple[Any, int]], devices: Sequence[str], rounds: int = 3
                        ) -> list[dict[str, tuple[float, float]]]:
    """Time each (static net, resolution) on each device in `rounds` interleaved rounds; per net and
    device: (min of the rounds' minima, median of their medians). A slow moment of a shared machine
    then hits one round of one net, not a net's whole measurement (seen: one exported subnet timed
    at 3.6 ms in the run and 1.96 ms on three re-measurements)."""
    from hwnas.estimators import Device, measure

    devs = [Device.from_name(d) for d in devices]
    samples: list[dict[str, list[tuple[float, float]]]] = [{d.name: [] for d in devs} for _ in nets]
    for _ in range(rounds):
        for i, (net, res) in enumerate(nets):
            for dev in devs:
                t = measure(net, dev, resolution=res)
                samples[i][dev.name].append((float(t.min_ms), float(t.median_ms)))
    return [{k: (min(a for a, _ in v), float(np.median([b for _, b in v]))) for k, v in s.items()} for s in samples]


def _stage_export(ctx: dict[str, Any]) -> dict[str, Any]:
    cfg, space, run_dir = ctx["cfg"], ctx["space"], ctx["run_dir"]
    front = _front(ctx)
    dev = cfg.primary_device
    key = f"latency_ms@{dev}"
    if cfg.latency_budgets == "auto":
        budgets = auto_latency_budgets(front, key)
    else:
        budgets = [float(b) for b in cfg.latency_budgets]
    exp_root = run_dir / "exported"
    if exp_root.exists():
        shutil.rmtree(exp_root)  # the stage re-runs whole; stale checkpoints must not survive
    net, loaders = _supernet(ctx), _loaders(ctx)
    out: list[dict[str, Any]] = []
    picks: list[tuple[int, float, Any]] = []
    for i, b in enumerate(budgets):
        pick = front.pick(f"{key}<={b}")
        if any(p.arch == pick.arch for _, _, p in picks):
            _say(f"    budget {key}<={b:g}: same subnet as a smaller budget, not exported twice")
            continue
        picks.append((i, b, pick))
    import torch

    with torch.no_grad():
        archs = [space.parse(p.arch) for _, _, p in picks]
        statics = [(net.extract(a).eval(), a.resolution) for a in archs]
    timings = measure_round_robin(statics, cfg.devices, rounds=3)  # before BN recalibration: timing is not affected
    for (i, b, pick), lat, (static, _) in zip(picks, timings, statics):
        label = f"B{i + 1} ({key}<={b:g})"
        res = export_pick(supernet=net, space=space, arch=pick.arch, out_dir=exp_root / f"budget{i + 1}",
                          devices=cfg.devices, loaders=loaders, predicted=pick.metrics, calib_images=cfg.calib_images,
                          formats=cfg.export_formats, extra={"budget": f"{key}<={b}", "trial": pick.trial},
                          latency=lat, static=static)
        res.update({"budget_ms": b, "label": f"B{i + 1}", "title": label, "trial": pick.trial})
        out.append(res)
        _say(f"    {label}: {pick.arch}  test acc {100 * res['measured']['accuracy']:.2f}%, "
             f"measured {res['measured'][key]:.3f} ms (predicted {pick.metrics[key]:.3f})")
    _plot_pareto(front, cfg, run_dir / "pareto.png", exported=out, study_front=_study_front(ctx))
    return {"budgets_ms": budgets, "exported": out}


# ---- 7. report -----------------------------------------------------------------------------------
def _stage_report(ctx: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    cfg, run_dir, S = ctx["cfg"], ctx["run_dir"], ctx["summaries"]
    exported = S["export"]["exported"]
    _plot_predicted_vs_measured(ctx, run_dir / "predicted_vs_measured.png")
    rows = []
    for e in exported:
        r = {"budget": e["title"], "arch": e["arch"].replace("|", "\\|"), "acc val (search)": 100 * e["predicted"]["accuracy"],
             "acc test (measured)": 100 * e["measured"]["accuracy"]}
        for d in cfg.devices:
            r[f"{d} ms pred"] = e["predicted"][f"latency_ms@{d}"]
            r[f"{d} ms meas"] = e["measured"][f"latency_ms@{d}"]
        r["peak mem MB"] = e["peak_mem_mb"]
        r["params"] = e["params"]
        r["MMACs"] = e["macs"] / 1e6
        rows.append(r)
    table = pd.DataFrame(rows)
    atomic_write_text(run_dir / "exported.csv", table.assign(arch=[e["arch"] for e in exported]).to_csv(index=False))
    text = _report_markdown(ctx, table)
    atomic_write_text(run_dir / "report.md", text)
    return {"report": str(run_dir / "report.md")}


def _plot_predicted_vs_measured(ctx: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    cfg, run_dir, S = ctx["cfg"], ctx["run_dir"], ctx["summaries"]
    fig, axes = plt.subplots(1, len(cfg.devices) + 1, figsize=(4.6 * (len(cfg.devices) + 1), 4.2), squeeze=False)
    for ax, d in zip(axes[0], cfg.devices):
        v = pd.read_csv(run_dir / "profiles" / d / "validation.csv")
        ax.scatter(v["measured_ms"], v["predicted_ms"], s=14, label=f"held-out random archs ({len(v)})")
        ex = S["export"]["exported"]
        ax.scatter([e["measured"][f"latency_ms@{d}"] for e in ex], [e["predicted"][f"latency_ms@{d}"] for e in ex],
                   marker="*", s=150, c="red", edgecolor="k", label="exported subnets")
        lo = min(v["measured_ms"].min(), v["predicted_ms"].min()) * 0.9
        hi = max(v["measured_ms"].max(), v["predicted_ms"].max()) * 1.1
        xs = np.linspace(lo, hi, 10)
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.2, label="±10%")
        ax.set_xlabel(f"measured latency on {d} (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(f"latency@{d}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    ex = S["export"]["exported"]
    ax.scatter([100 * e["measured"]["accuracy"] for e in ex], [100 * e["predicted"]["accuracy"] for e in ex], marker="*",
               s=150, c="red", edgecolor="k")
    for e in ex:
        ax.annotate(e["label"], (100 * e["measured"]["accuracy"], 100 * e["predicted"]["accuracy"]),
                    textcoords="offset points", xytext=(5, 3), fontsize=8)
    vals = [100 * e["measured"]["accuracy"] for e in ex] + [100 * e["predicted"]["accuracy"] for e in ex]
    xs = np.linspace(min(vals) - 1, max(vals) + 1, 10)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.set_xlabel("test accuracy, measured (%)")
    ax.set_ylabel("search-val accuracy at search time (%)")
    ax.set_title("accuracy of exported subnets")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _machine() -> dict[str, Any]:
    import torch
    from hwnas.estimators.devices import cpu_model
    from hwnas.supernet.checkpoint import versions

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "os": platform.platform(),
            "versions": versions()}


def _report_markdown(ctx: dict[str, Any], table: Any) -> str:
    cfg, S = ctx["cfg"], ctx["summaries"]
    m = _machine()
    t = S["train"].get("report", {})
    prof = S["profile"]["devices"]
    acc = S["accuracy"]
    sea = S["search"]
    par = S["pareto"]
    lines = [
        f"# hwnas run `{cfg.name}`",
        "",
        f"Command: `hwnas run --config <config>` (resolved config: `config.json`). Space `{cfg.space}`, "
        f"devices {', '.join(f'`{d}`' for d in cfg.devices)}, seed {cfg.seed}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['versions'].get('torch')}, "
        f"onnxruntime {m['versions'].get('onnxruntime')}, {m['os']}.",
        "",
        "## Stage times (this invocation; a skipped stage shows its original time)",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    for s in STAGES[:-1]:
        lines.append(f"| {s} | {S.get(s, {}).get('_seconds', 0.0):.1f} |")
    lines += [
        "",
        "## 1. Supernet training",
        "",
        f"Policy `{S['train'].get('policy')}`, schedule `{S['train'].get('schedule')}` ({S['train'].get('epochs')} epochs). "
        "Accuracy on the Fashion-MNIST **test set** after BN recalibration (source: `supernet/report.json`):",
        "",
        "```json",
        json.dumps(t, indent=1)[:3000],
        "```",
        "",
        "## 2. Device profiles and latency predictors",
        "",
        "Held-out check: random archs never used to fit the predictor, measured end to end in this run "
        "(`profiles/<device>/validation.csv`).",
        "",
        "| device | LUT rows | profiling s | held-out archs | Spearman | within ±10% | median abs rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, p in prof.items():
        lines.append(f"| {d} | {p['rows']} | {p['profile_seconds']:.0f} | {p['validation_archs']} | {p['spearman']:.3f} | "
                     f"{100 * p['within_10pct']:.0f}% | {100 * p['median_abs_rel_err']:.1f}% |")
    lines += [
        "",
        "## 3. Accuracy predictor",
        "",
        f"{acc['pairs']} (arch, accuracy) pairs from the supernet, each BN-recalibrated on {cfg.calib_images} training "
        f"images and scored on {acc['val_images']} images of the held-out search-val split "
        f"(range {100 * acc['min_acc']:.2f}..{100 * acc['max_acc']:.2f}%). Predictor report: `{acc['predictor']}`.",
        "",
        "## 4. Search",
        "",
        f"Optuna `{cfg.sampler}`, {sea['trials']} trials ({sea['feasible']} feasible), objectives "
        f"{', '.join(f'`{o}`' for o in cfg.objectives)}, budgets {', '.join(f'`{b}`' for b in cfg.budgets) or 'none'}. "
        f"Study `{sea['study']}` in `study.db` (every trial: `trials.csv`); its predicted front has {sea['front_size']} members.",
        "",
        f"**Re-measured front.** {par['candidates']} candidates: "
        f"up to {cfg.refine_archs} distinct archs of the search by Pareto rank (the predicted front first; a rank that "
        f"does not fit is spread over `latency_ms@{cfg.primary_device}`; {par['remeasured']} newly measured), plus the "
        f"{acc['pairs']} accuracy pairs; each scored on the search-val split through the supernet after BN "
        "recalibration, as the pairs were. Spearman of predicted vs measured accuracy over the re-measured search "
        f"archs: {par['predicted_front_spearman']:.2f}. The final front (`pareto.csv`, "
        f"{par['front_size']} members) uses the measured search-val accuracy and the predicted latency, memory and energy "
        "(`candidates.csv`: every candidate, both accuracies).",
        "",
        "![pareto](pareto.png)",
        "",
        "## 5. Exported subnets (predicted vs measured)",
        "",
        "Picked as the most accurate front member under each latency budget on "
        f"`{cfg.primary_device}`; checkpoints under `exported/`. Accuracy: on search-val at search time (through the "
        "supernet), then measured on the test set after BN recalibration. Latency: predicted by the LUT predictor, measured on this machine at batch 1 "
        "(min of repeated runs, the statistic the predictors are fitted on; medians are in each checkpoint's arch.json).",
        "",
        table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False),
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
        "Energy figures in `study.db` / `trials.csv` (`energy_mj@...`) are **estimated** (latency x a stated "
        "power model; no energy counter on this machine), never measured.",
        "",
    ]
    return "\n".join(lines)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


def _jsonable(o: Any) -> Any:
    return json.loads(json.dumps(o, default=lambda x: x.item() if hasattr(x, "item") else str(x)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `hwnas run`")
