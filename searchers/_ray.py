"""Ray Tune runner: the same study model, trials run as Ray Tune trials on a Ray cluster.

Ray Tune's `OptunaSearch` (ray 2.60) drives the Optuna study (`ask` on suggest, `tell` on
complete) but knows nothing of constraints or user attributes, so `_ConstrainedOptunaSearch` is a
thin subclass that, before Optuna's `tell`, stores the arch and metrics on the Optuna trial and sets
one `trial.set_constraint` per budget. A trial whose objective fails is told FAIL with its message.

The Optuna study (in memory, SQLite, journal, PostgreSQL) is the source of truth: a resumed search
counts the COMPLETE trials already stored and runs only the rest, so nothing completed is lost
or repeated. Trials never chdir into their directories (`RAY_CHDIR_TO_TRIAL_DIR=0`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, ObjectiveError
from hwnas.search_space import Space
from hwnas.searchers._budgets import Budget
from hwnas.searchers._liveness import WORKER_ATTR, this_worker
from hwnas.searchers._objectives import Objective, ObjectiveFn, check_values
from hwnas.searchers._optuna_internals import (
    count_trials,
    ray_ask_trial,
    ray_fail_trial,
    ray_forget_trial,
    ray_optuna_trial,
    set_trial_attrs,
)

__all__ = ["run_ray", "ray_trial"]

log = logging.getLogger("hwnas.searchers")
_ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0"}


def ray_trial(config: dict[str, Any], space_dict: dict[str, Any] | None = None, fn: ObjectiveFn | None = None,
              needed: Sequence[str] = (), objective_names: Sequence[str] = ()) -> None:
    """The Ray Tune function trainable: build the arch, evaluate it, report once."""
    from ray import tune

    space = Space.from_dict(space_dict)
    out: dict[str, Any] = {"hwnas_cwd": os.getcwd(), "hwnas_pid": os.getpid()}
    try:
        arch = space.from_choices(config)
        out["hwnas_arch"] = arch.to_string()
        values = check_values(fn(arch), list(needed), arch.to_string())
    except Exception as e:  # reported to the driver, which fails the Optuna trial with the message
        out["hwnas_error"] = f"{type(e).__name__}: {e}"
        # Tune ends the whole run on a result without the searcher's metrics: NaN, never told
        out.update({f"hwnas_obj_{i}": float("nan") for i in range(len(objective_names))})
        tune.report(out)
        return
    out["hwnas_metrics"] = json.dumps(values)
    out["hwnas_error"] = ""
    for i, n in enumerate(objective_names):
        out[f"hwnas_obj_{i}"] = values[n]
    tune.report(out)


def _searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    class _ConstrainedOptunaSearch(OptunaSearch):
        """OptunaSearch that records arch/metrics and sets the budgets' constraints before `tell`."""

        def __init__(self, *, objectives: Sequence[Objective], budgets: Sequence[Budget], hw_space: Space | None = None,
                     held: Any = None, **kw: Any):
            self._hw_objectives = tuple(objectives)
            self._hw_budgets = tuple(budgets)
            self._hw_space, self._hw_held = hw_space, held
            super().__init__(**kw)
            self._hw_dists = dict(kw.get("space") or {})

        def suggest(self, trial_id: str) -> dict | None:
            """OptunaSearch's suggestion, with the arch recorded at once; a repeat of an arch the study
            holds (another driver on the same storage proposed it in the same instant) is given back
            and asked again; an exhausted space ends the search."""
            from hwnas.searchers._dedup import MAX_REDRAWS
            from ray.tune.search import Searcher

            for _ in range(MAX_REDRAWS + 1):
                if self._hw_held is not None and self._hw_held.exhausted():
                    return Searcher.FINISHED
                if self._hw_space is not None:
                    # the params, the arch and the worker (the driver runs the trial: a resume checks
                    # the driver) in one transaction; OptunaSearch's suggest then returns its params
                    ray_ask_trial(self, trial_id, self._hw_dists, self._hw_attrs, {WORKER_ATTR: this_worker()})
                config = super().suggest(trial_id)
                ot = ray_optuna_trial(self, trial_id)
                if ot is None or self._hw_space is None or self._hw_held is None:
                    return config
                arch = self._hw_space.from_choices(ot.params).to_string()
                if ot.user_attrs.get("arch") != arch:  # asked by OptunaSearch itself
                    ot.set_user_attr(WORKER_ATTR, this_worker())
                    ot.set_user_attr("arch", arch)
                other = self._hw_held.claim(ot.study, arch, ot.number)
                if other is None:
                    return config
                ot.set_user_attr("error", f"duplicate: trial {other} holds this arch")
                ray_fail_trial(self, trial_id, ot)
                ray_forget_trial(self, trial_id)
            return Searcher.FINISHED

        def _hw_attrs(self, params: dict) -> dict:
            return {WORKER_ATTR: this_worker(), "arch": self._hw_space.from_choices(params).to_string()}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot = ray_optuna_trial(self, trial_id)
            if ot is None:
                return super().on_trial_complete(trial_id, result, error)
            result = result or {}
            err = result.get("hwnas_error")
            if err is None:
                err = "the Ray trial errored before reporting (see its log)" if error else "the Ray trial reported nothing"
            if result.get("hwnas_arch"):
                ot.set_user_attr("arch", result["hwnas_arch"])
            if not err:
                try:
                    values = check_values(json.loads(result["hwnas_metrics"]), [o.name for o in self._hw_objectives])
                    set_trial_attrs(ot, {"metrics": values}, {str(b): b.violation(values) for b in self._hw_budgets})
                except (ObjectiveError, KeyError, ValueError) as e:
                    err = f"{type(e).__name__}: {e}"
            if err:
                ot.set_user_attr("error", err)
                ray_fail_trial(self, trial_id, ot)
                log.warning("ray trial %s failed: %s", trial_id, err)
                return None
            return super().on_trial_complete(trial_id, result, error)

    return _ConstrainedOptunaSearch


def _auth_env(address: str | None) -> None:
    """Send the local Ray auth token when connecting to an existing cluster.

    Ray 2.60 clusters started with `ray start` use token authentication by default, but a driver
    only sends its token when RAY_AUTH_MODE=token, and Ray reads that when it is first imported.
    Never overrides an explicit RAY_AUTH_MODE.
    """
    if not address or "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _init_ray(address: str | None, workers: int) -> bool:
    """Connect to (or start) Ray; returns whether this call started it (so we shut it down)."""
    import ray

    if ray.is_initialized():
        # Reuse a live connection only when it is the one asked for: a driver left connected to
        # another (or a dead) cluster by earlier work in this process must not receive the trials.
        try:
            current = ray.get_runtime_context().gcs_address
        except Exception:  # noqa: BLE001 - a broken connection has no usable address
            current = None
        if not address or address == "auto" or current == address:
            return False
        ray.shutdown()
    kw: dict[str, Any] = {"runtime_env": {"env_vars": dict(_ENV)}, "log_to_driver": False,
                          "ignore_reinit_error": True}
    if address:
        if address != "auto" and ":" not in address and not address.startswith("ray://"):
            raise ConfigError(f"--ray-address {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT")
        # 'auto' inside a Ray job (`ray job submit`) means the job's RAY_ADDRESS: loopback there too.
        target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
        if target.split(":")[0] in ("127.0.0.1", "localhost"):
            # The driver must look for its raylet on loopback too, not on the machine's LAN address.
            kw["_node_ip_address"] = "127.0.0.1"
        stale = os.environ.pop("RAY_ADDRESS", None) if address != "auto" else None
        try:
            ray.init(address=address, **kw)
        finally:
            if stale is not None:
                os.environ["RAY_ADDRESS"] = stale
    else:
        # A local instance announces itself on 127.0.0.1 (not the machine's LAN address) and has no dashboard.
        ray.init(num_cpus=max(1, workers), include_dashboard=False, _node_ip_address="127.0.0.1", **kw)
    return True


def _round_errors(grid: Any, study: Any) -> str:
    """What went wrong in a round without progress: Ray's trial errors, else the failed trials' `error`."""
    import optuna

    try:
        errs = [f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}" for e in grid.errors]
    except Exception as e:  # noqa: BLE001 - a diagnostic must not hide the error it explains
        errs = [f"(Ray's results unreadable: {type(e).__name__})"]
    if not errs:
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        errs = [f"trial {t.number}: {t.user_attrs.get('error', '(no error recorded)')}" for t in failed[-3:]]
    if not errs:
        return "Ray reported no error and no trial failed"
    return f"{len(errs)} error(s), e.g. " + " | ".join(errs[:3])


def run_ray(study: Any, storage: Any, space: Space, fn: ObjectiveFn, objectives: Sequence[Objective],
            budgets: Sequence[Budget], n_trials: int, *, workers: int = 1, address: str | None = None,
            resources: Mapping[str, float] | None = None, storage_path: str | None = None,
            progress: bool = False) -> None:
    """Run Ray Tune trials until the study holds `n_trials` COMPLETE trials."""
    _auth_env(address)
    import optuna
    import ray
    from optuna.distributions import CategoricalDistribution
    from ray import tune

    os.environ.update(_ENV)  # the driver-side default too (local trials inherit it)
    started = _init_ray(address, workers)
    res = dict(resources or {"cpu": 1})
    for k, v in res.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"resource {k}={v!r} must be a number >= 0")
    root = Path(storage_path or Path("results/runs/ray")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    C = optuna.trial.TrialState.COMPLETE
    names = [o.name for o in objectives]
    needed = names + [b.metric for b in budgets if b.metric not in names]
    trainable = tune.with_resources(
        tune.with_parameters(ray_trial, space_dict=space.to_dict(), fn=fn, needed=needed, objective_names=names), res
    )
    searcher_cls = _searcher_class()
    dists = {k: CategoricalDistribution(list(v)) for k, v in space.choices().items()}
    rounds_without_progress = 0
    held = getattr(study.sampler, "held", None)
    try:
        while True:
            done = count_trials(study, (C,))
            remaining = n_trials - done
            if remaining <= 0:
                return
            if held is not None:
                held.refresh(study)
                if held.exhausted():
                    from hwnas.searchers._generation import exhausted_message
                    from hwnas.searchers._optuna import _exhausted

                    _exhausted(study, exhausted_message(space, held, done, n_trials))
                    return
            searcher = searcher_cls(
                objectives=objectives, budgets=budgets, hw_space=space, held=held, space=dists,
                metric=[f"hwnas_obj_{i}" for i in range(len(objectives))],
                mode=["min" if o.direction == "minimize" else "max" for o in objectives],
                sampler=study.sampler, storage=storage, study_name=study.study_name,
            )
            tuner = tune.Tuner(
                trainable,
                # reuse_actors: starting a fresh trial actor (a Python process importing hwnas and
                # the objective) costs seconds per trial, more than a predictor-based objective.
                tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining, max_concurrent_trials=workers,
                                            reuse_actors=True, trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
                run_config=tune.RunConfig(name=f"{study.study_name}-{int(time.time() * 1000)}", storage_path=str(root),
                                          verbose=1 if progress else 0),
            )
            grid = tuner.fit()
            after = count_trials(study, (C,))
            if after == done:
                rounds_without_progress += 1
                if rounds_without_progress >= 2:
                    raise ObjectiveError(f"no Ray trial completed in two rounds of {remaining}; "
                                         f"{_round_errors(grid, study)}; see also the Ray logs under {root}")
            else:
                rounds_without_progress = 0
    finally:
        if started:
            ray.shutdown()
