"""Search scaling: trials/s of one study with 1, 2, 4 workers on SQLite, the journal file and PostgreSQL;
Ray with 2 nodes vs 1 on one machine; and what coordination costs with 8-32 workers that only sleep.

1. Storage scaling. `hwnas.searchers.search(..., workers=W, storage=URL)` (W processes sharing one
   study, random sampler) with an objective that burns ~0.2 s of CPU per trial. Trials/s is taken
   from the study itself (complete trials over the span from the first trial's start to the last
   one's end), so process start-up is not counted. Each configuration runs in its own child process
   whose stderr is scanned for lock errors and retries ("database is locked", serialization
   failures, deadlocks, OperationalError); FAIL and RUNNING-left trials are counted too. On 2
   cores, 4 workers oversubscribe: the 2-vs-1 ratio is the figure. Goal: PostgreSQL 2 vs 1 >= 1.8x
   with zero errors.
2. Ray: the same objective as Ray Tune trials (2 concurrent), on one node with 2 CPUs vs two nodes
   with 1 CPU each (both on this machine, loopback), study on PostgreSQL.
3. Coordination cost: an objective that *sleeps* 0.2 s (no CPU), so 8, 16 and 32 concurrent workers
   fit on this machine: worker processes on one PostgreSQL study, and Ray trials (one node declaring
   32 logical CPUs). Trials/s against the ideal workers / 0.2 s. Goal >= 80% of ideal at 32 workers.
4. The sampler's time per trial as the study grows: `study.ask()` on a PostgreSQL study holding
   100, 1,000 and 10,000 complete trials (copied in bulk), random and NSGA-II.

PostgreSQL and Ray nodes are throw-away ones started here (tests/_cluster.py: `initdb` + `pg_ctl`
on a free loopback port, `ray start --block` nodes), stopped at the end.

    python benchmarks/search_scaling.py            # the full measurement (tens of minutes)
    python benchmarks/search_scaling.py --quick    # a tiny smoke run of every part (a minute or two)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Lock errors and retries as Optuna / SQLAlchemy / the drivers print them.
_ERROR_PATTERNS = {
    "locked": re.compile(r"database is locked", re.I),
    "serialization": re.compile(r"could not serialize|serialization failure", re.I),
    "deadlock": re.compile(r"deadlock detected", re.I),
    "operational_error": re.compile(r"OperationalError", re.I),
    "retry": re.compile(r"\bretry|\bretrying", re.I),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
}


class Burn:
    """flops/params after `seconds` of CPU work (busy loop), or of sleep when `sleep` (no CPU)."""

    def __init__(self, space_dict: dict, seconds: float, sleep: bool = False):
        self.space_dict, self.seconds, self.sleep, self.space = space_dict, seconds, sleep, None

    def __call__(self, arch):
        from hwnas.search_space import Space
        from hwnas.searchers import arch_cost

        if self.space is None:
            self.space = Space.from_dict(self.space_dict)
        if self.sleep:
            time.sleep(self.seconds)
        else:
            end = time.thread_time() + self.seconds  # CPU seconds of this thread, whatever the load
            x = 0
            while time.thread_time() < end:
                for i in range(2000):
                    x += i * i
        return arch_cost(self.space, arch)


def _study_rate(storage: str, name: str) -> dict:
    """Complete/FAIL/RUNNING counts and the steady trials/s from the stored trial timestamps."""
    import optuna
    from hwnas.searchers import load_study

    trials = load_study(name, storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    # why: "surplus" / "duplicate" are give-backs of the workers' coordination (a trial asked for a slot
    # or an arch another worker took in the same instant; never evaluated), anything else an error
    reasons: dict[str, int] = {}
    for t in failed:
        why = str(t.user_attrs.get("error", "(none)")).split(":")[0]
        reasons[why] = reasons.get(why, 0) + 1
    return {"complete": len(done), "fail": len(failed), "fail_by_reason": reasons,
            "running_left": sum(t.state == optuna.trial.TrialState.RUNNING for t in trials),
            "trials_total": len(trials), "span_s": span, "trials_per_s": len(done) / span if span > 0 else None}


def _error_fails(res: dict) -> int:
    """FAIL trials that are errors: not the give-backs of the workers' coordination (surplus, duplicate)."""
    if "fail_by_reason" not in res:
        return res.get("fail", 0)
    return sum(n for why, n in res["fail_by_reason"].items() if why not in ("surplus", "duplicate"))


# ---- one configuration, in a child process --------------------------------------------------------
def _child(args: argparse.Namespace) -> int:
    """`--one`: run one search (workers processes or Ray) and print its figures as JSON."""
    import optuna
    from hwnas.search_space import Space
    from hwnas.searchers import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space.preset(args.space)
    fn = Burn(space.to_dict(), args.seconds, sleep=args.sleep)
    name = f"scale-{args.workers}"
    t = time.perf_counter()
    kw = dict(runner="ray", ray_address=args.ray_address, ray_storage_path=args.ray_dir) if args.ray_address else {}
    search(space, fn, objectives="flops,params:max", n_trials=args.trials, sampler="random", seed=0,
           storage=args.storage, study_name=name, workers=args.workers, progress=False, **kw)
    wall = time.perf_counter() - t
    print("RESULT " + json.dumps({"wall_s": wall, **_study_rate(args.storage, name)}), flush=True)
    return 0


def run_one(storage: str, workers: int, trials: int, seconds: float, *, sleep: bool = False, space: str,
            ray_address: str | None = None, ray_dir: str | None = None, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", "--storage", storage, "--workers", str(workers), "--trials", str(trials),
           "--seconds", str(seconds), "--space", space]
    if sleep:
        cmd.append("--sleep")
    if ray_address:
        cmd += ["--ray-address", ray_address, "--ray-dir", ray_dir or tempfile.mkdtemp(prefix="hwnas-scale-ray-")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**(env or os.environ), "PYTHONWARNINGS": "ignore"},
                       timeout=3600)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    out = json.loads(line[len("RESULT "):]) if line else {"failed": True, "rc": r.returncode}
    out["errors"] = {k: len(p.findall(r.stderr)) for k, p in _ERROR_PATTERNS.items()}
    if r.returncode != 0:
        out["stderr_tail"] = r.stderr[-1500:]
    return out


# ---- the parts --------------------------------------------------------------------------------------
def storage_scaling(pg, tmp: Path, args: argparse.Namespace) -> dict:
    out: dict = {}
    for kind in ("sqlite", "journal", "postgresql"):
        out[kind] = {}
        for w in args.workers:
            url = (f"sqlite:///{tmp}/s-{w}.db" if kind == "sqlite" else str(tmp / f"j-{w}.log") if kind == "journal"
                   else pg.new_database(f"scale{w}"))
            res = run_one(url, w, args.trials, args.seconds, space=args.space)
            out[kind][str(w)] = res
            print(f"{kind:10s} {w} worker(s): {res.get('trials_per_s') or 0:.2f} trials/s, "
                  f"{res.get('complete')} complete, {res.get('fail')} fail, errors {res['errors']}", flush=True)
        rate = {w: (out[kind][str(w)].get("trials_per_s") or 0) for w in args.workers}
        if 1 in rate and 2 in rate and rate[1]:
            out[kind]["ratio_2_vs_1"] = rate[2] / rate[1]
    return out


def ray_nodes(pg, tmp: Path, args: argparse.Namespace) -> dict:
    from tests._cluster import RayNode, ray_env, wait_nodes

    out = {}
    for layout in ("1 node x 2 cpus", "2 nodes x 1 cpu"):
        rtmp = Path(tempfile.mkdtemp(prefix="hwsr", dir="/tmp"))
        nodes = []
        try:
            two = layout.startswith("2")
            nodes.append(RayNode(rtmp, num_cpus=1 if two else 2, worker_ports=(24000, 24099)))
            if two:
                nodes.append(RayNode(rtmp, head_address=nodes[0].address, num_cpus=1, worker_ports=(24100, 24199)))
            wait_nodes(nodes[0].address, len(nodes))
            url = pg.new_database("ray")
            res = run_one(url, 2, args.ray_trials, args.seconds, space=args.space, ray_address=nodes[0].address,
                          env=ray_env())
        finally:
            for n in reversed(nodes):
                n.stop()
            shutil.rmtree(rtmp, ignore_errors=True)
        out[layout] = res
        print(f"ray {layout}: {res.get('trials_per_s') or 0:.2f} trials/s ({res.get('complete')} complete)", flush=True)
    a, b = (out[k].get("trials_per_s") or 0 for k in ("1 node x 2 cpus", "2 nodes x 1 cpu"))
    out["ratio_2_nodes_vs_1"] = b / a if a else None
    return out


def coordination(pg, tmp: Path, args: argparse.Namespace) -> dict:
    """Sleeping objectives: trials/s against workers / seconds, processes on PostgreSQL and Ray trials."""
    from tests._cluster import RayNode, ray_env, wait_nodes

    out: dict = {"processes_postgresql": {}, "ray": {}}
    for w in args.sleep_workers:
        n = max(args.sleep_trials_per_worker * w, w)
        res = run_one(pg.new_database(f"sleep{w}"), w, n, args.seconds, sleep=True, space=args.space)
        res["ideal_trials_per_s"] = w / args.seconds
        res["fraction_of_ideal"] = (res.get("trials_per_s") or 0) / res["ideal_trials_per_s"]
        out["processes_postgresql"][str(w)] = res
        print(f"sleep, {w} processes on PostgreSQL: {res['fraction_of_ideal']:.0%} of ideal", flush=True)
    if args.skip_ray:
        return out
    rtmp = Path(tempfile.mkdtemp(prefix="hwsc", dir="/tmp"))
    head = None
    try:
        head = RayNode(rtmp, num_cpus=max(args.sleep_workers), worker_ports=(24200, 24399))
        wait_nodes(head.address, 1)
        for w in args.sleep_workers:
            n = max(args.sleep_trials_per_worker * w, w)
            res = run_one(pg.new_database(f"raysleep{w}"), w, n, args.seconds, sleep=True, space=args.space,
                          ray_address=head.address, env=ray_env())
            res["ideal_trials_per_s"] = w / args.seconds
            res["fraction_of_ideal"] = (res.get("trials_per_s") or 0) / res["ideal_trials_per_s"]
            out["ray"][str(w)] = res
            print(f"sleep, {w} concurrent Ray trials: {res['fraction_of_ideal']:.0%} of ideal", flush=True)
    finally:
        if head is not None:
            head.stop()
        shutil.rmtree(rtmp, ignore_errors=True)
    return out


def sampler_cost(pg, tmp: Path, args: argparse.Namespace) -> dict:
    """Seconds per `study.ask()` + tell on a PostgreSQL study already holding n complete trials."""
    import optuna
    from hwnas.search_space import Space
    from hwnas.searchers._optuna import _distributions, make_sampler
    from hwnas.searchers._storage import open_storage

    from tests._cluster import copy_sqlite_study_to_postgres
    from tests._synthetic import write_synthetic_study

    space = Space.preset(args.space)
    dists = _distributions(space)
    out: dict = {}
    for n in args.study_sizes:
        db = tmp / f"grow-{n}.db"
        write_synthetic_study(space, n, db)
        url = pg.new_database(f"grow{n}")
        copy_sqlite_study_to_postgres(db, url)
        for sampler in ("random", "nsga2"):
            study = optuna.load_study(study_name="big", storage=open_storage(url),
                                      sampler=make_sampler(sampler, seed=0, n_objectives=2))
            times = []
            for _ in range(args.asks):
                t = time.perf_counter()
                trial = study.ask(dists)
                study.tell(trial, [1.0, 1.0])
                times.append(time.perf_counter() - t)
            out.setdefault(sampler, {})[str(n)] = {"median_s": sorted(times)[len(times) // 2], "asks": len(times)}
            print(f"{sampler} ask+tell at {n} trials: {out[sampler][str(n)]['median_s'] * 1e3:.1f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="fmnist-mbv3")
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of every part")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--out", default="results/benchmarks/search_scaling.json")
    # --one: internal, one configuration in a child process
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--storage", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=0.2, help=argparse.SUPPRESS)
    ap.add_argument("--sleep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ray-address", help=argparse.SUPPRESS)
    ap.add_argument("--ray-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))  # tests/_cluster.py: the throw-away PostgreSQL server and Ray nodes
    if args.one:
        return _child(args)

    q = args.quick
    args.workers = [1, 2] if q else [1, 2, 4]
    args.trials = 8 if q else 120
    args.seconds = 0.05 if q else 0.2
    args.ray_trials = 6 if q else 60
    args.sleep_workers = [2] if q else [8, 16, 32]
    args.sleep_trials_per_worker = 3 if q else 15
    args.study_sizes = [100] if q else [100, 1000, 10_000]
    args.asks = 3 if q else 20

    from hwnas._io import atomic_write_json

    from tests._cluster import postgres_or_skip

    doc: dict = {"benchmark": "search_scaling", "quick": q, "space": args.space, "objective_seconds": args.seconds,
                 "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                             "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}}
    tmp = Path(tempfile.mkdtemp(prefix="hwnas-scale-"))
    try:
        pg = postgres_or_skip()
    except BaseException as e:  # pytest.skip outside pytest: say why and stop
        print(f"PostgreSQL is not available: {e}", file=sys.stderr)
        return 2
    parts = [("storages", storage_scaling), ("ray_nodes", None if args.skip_ray else ray_nodes),
             ("coordination", coordination), ("sampler", sampler_cost)]
    try:
        for key, part in parts:
            if part is None:
                continue
            doc[key] = part(pg, tmp, args)
            # each part as it lands: a run stopped in a later part (the Ray ones are slow) keeps these
            atomic_write_json(args.out, {**doc, "complete": False})
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    doc["machine"]["load_avg_end"] = os.getloadavg()
    pgs = doc["storages"]["postgresql"]
    errs = sum(sum(v["errors"].values()) + _error_fails(v) for k, v in pgs.items() if k != "ratio_2_vs_1")
    top = str(max(args.sleep_workers))
    doc["goals"] = {
        "postgresql_2_vs_1_ge_1.8_zero_errors": (pgs.get("ratio_2_vs_1") or 0) >= 1.8 and errs == 0,
        "processes_ge_80pct_ideal_at_max_workers": doc["coordination"]["processes_postgresql"][top]["fraction_of_ideal"] >= 0.8,
        "ray_ge_80pct_ideal_at_max_workers": None if args.skip_ray else
        doc["coordination"]["ray"][top]["fraction_of_ideal"] >= 0.8,
    }
    doc["complete"] = True
    atomic_write_json(args.out, doc)
    print(json.dumps(doc["goals"]), "->", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
