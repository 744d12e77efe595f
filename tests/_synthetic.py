"""A large synthetic Optuna study for the load tests and the search benchmarks (not part of the library).

The one home of `write_synthetic_study`, shared by `tests/test_load.py` (`from tests._synthetic import
write_synthetic_study`) and `benchmarks/search_throughput.py` (which puts `tests/` on `sys.path` and
imports `_synthetic`). It writes Optuna's SQL tables directly, which only a test fixture may do.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["write_synthetic_study"]


def write_synthetic_study(space: Any, n: int, path: str | Path, *, distinct: int | None = None, seed: int = 0) -> str:
    """A real Optuna SQLite study named "big" holding `n` COMPLETE trials, for load tests and benchmarks.

    The study is created through Optuna (schema, study, directions, hwnas attributes); its trials are
    bulk-inserted into Optuna's tables, which takes seconds where Optuna's per-trial commits would
    take hours. Metrics are real: the analytic `flops` provider on `distinct` random archs (default
    `n`; fewer are repeated cyclically), objectives `flops` and `params:max`, budget `params<=1e6`.
    `optuna.load_study` reads the result like any study. Returns the storage URL.
    """
    import numpy as np
    import optuna
    from hwnas.searchers._budgets import Budget
    from hwnas.searchers._objectives import make_objective
    from hwnas.searchers._optuna import _distributions

    path = Path(path)
    url = f"sqlite:///{path}"
    fn = make_objective(space, "flops")
    study = optuna.create_study(study_name="big", storage=url, directions=["minimize", "maximize"])
    budget = Budget.parse("params<=1e6")
    for k, v in {"hwnas.space": space.to_dict(), "hwnas.objectives": ["flops", "params:max"],
                 "hwnas.budgets": [str(budget)], "hwnas.sampler": "random", "hwnas.n_trials": n}.items():
        study.set_user_attr(k, v)
    dists = _distributions(space)
    dist_json = {k: optuna.distributions.distribution_to_json(d) for k, d in dists.items()}
    pre = []  # per distinct arch: metrics and every row value but the trial id
    for a in space.sample_many(distinct or n, np.random.default_rng(seed)):
        m = fn(a)
        ch = space.to_choices(a)
        pre.append((m, json.dumps(str(a)), json.dumps(m), json.dumps(budget.violation(m)),
                    [(k, float(d.to_internal_repr(ch[k])), dist_json[k]) for k, d in dists.items()]))
    now = "2026-01-01 00:00:00.000000"
    con = sqlite3.connect(path)
    try:
        # the study's id in Optuna's tables, read from them (the rows below go into the same tables)
        (sid,), = con.execute("SELECT study_id FROM studies WHERE study_name = ?", ("big",)).fetchall()
        trials, values, uattrs, sattrs, params = [], [], [], [], []
        for i in range(n):
            m, a, mj, vj, ps = pre[i % len(pre)]
            tid = i + 1
            trials.append((tid, i, sid, "COMPLETE", now, now))
            values += [(tid, 0, m["flops"], "FINITE"), (tid, 1, m["params"], "FINITE")]
            uattrs += [(tid, "arch", a), (tid, "metrics", mj)]
            sattrs.append((tid, f"constraints:{budget}", vj))
            params += [(tid, k, v, d) for k, v, d in ps]
        with con:
            con.executemany("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, datetime_complete) "
                            "VALUES (?, ?, ?, ?, ?, ?)", trials)
            con.executemany("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, ?, ?, ?)", values)
            con.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", uattrs)
            con.executemany("INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", sattrs)
            con.executemany("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                            "VALUES (?, ?, ?, ?)", params)
    finally:
        con.close()
    return url
