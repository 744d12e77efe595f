"""Benchmark: few-shot latency prediction on devices we cannot reach (HELP's measured tables).

Protocol (shared/datasets/help-latency/README.md): for each target device column, draw k = 10, 20,
50, 100 architectures at random (fixed seeds) as the only target measurements, predict the rest,
report Spearman, RMSE and the share within +-10%, averaged over seeds.

Prior knowledge used (stated in the JSON): the archs are split once (seed 0) into a *source half*
and an *evaluation half*. On the source half we fit, for every *other* device column, a ridge model
on the arch encoding (`AdditiveLatencyModel`); those models are the priors of `fit_fewshot`. The
k target samples and every evaluated arch come from the evaluation half, so no prior model has
seen an evaluated arch. FBNet: priors = all device columns except the four targets (raspi4,
eyeriss, fpga, pixel3). OFA GPUs: priors = the columns of the other three GPUs.
Baseline "no prior": the same fit with the encoding alone.

    .venv/bin/python benchmarks/fewshot_latency.py --seeds 10
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

FBNET_OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
FBNET_TARGETS = ("raspi4", "eyeriss", "fpga", "pixel3")
HELP_K10 = {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892}


def fbnet_encode(ops: np.ndarray) -> np.ndarray:
    """One-hot of the op at each of the 22 FBNet layers (the FBNet space is not an hwnas preset)."""
    n, L = ops.shape
    X = np.zeros((n, L * len(FBNET_OPS)))
    idx = {o: i for i, o in enumerate(FBNET_OPS)}
    for j in range(L):
        cols = np.array([idx[o] for o in ops[:, j]])
        X[np.arange(n), j * len(FBNET_OPS) + cols] = 1.0
    return X


# HELP's measured tables (../shared/datasets/help-latency/; HWNAS_SHARED names another shared folder)
HELP_DATA = Path(os.environ.get("HWNAS_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) \
    / "datasets" / "help-latency"


def ofa_table_archs(space, df) -> list:
    """The `ofa-mbv3` arch of every row of HELP's OFA table (resolution, ks0..19, e0..19, d0..4)."""
    from hwnas.search_space import ofa_arch

    return [ofa_arch(space, r.resolution, [getattr(r, f"ks{i}") for i in range(20)],
                     [getattr(r, f"e{i}") for i in range(20)], [getattr(r, f"d{i}") for i in range(5)])
            for r in df.itertuples()]


def with_resolution(X: np.ndarray, archs) -> np.ndarray:
    """The encoding `X` of `archs` and `X` x (resolution / 224)^2: a latency model's features."""
    rs = (np.array([a.resolution for a in archs], float) / 224.0) ** 2
    return np.concatenate([X, X * rs[:, None]], axis=1)


def ofa_encode(df) -> tuple[np.ndarray, np.ndarray]:
    """hwnas encoding of the OFA rows (via `ofa_arch` on preset ofa-mbv3), and the encoding x resolution."""
    from hwnas.search_space import Space

    space = Space.preset("ofa-mbv3")
    archs = ofa_table_archs(space, df)
    X = space.encode_many(archs).astype(np.float64)
    return X, with_resolution(X, archs)


def evaluate(name: str, X: np.ndarray, Xsrc: np.ndarray, Y: dict[str, np.ndarray], targets: list[str],
             priors_for: dict[str, list[str]], ks: list[int], seeds: int) -> dict:
    from hwnas.estimators.fewshot import AdditiveLatencyModel, fit_fewshot
    from hwnas.estimators.latency import spearman, within

    n = len(X)
    perm = np.random.default_rng(0).permutation(n)
    src, ev = perm[: n // 2], perm[n // 2:]
    models = {d: AdditiveLatencyModel.fit(Xsrc[src], Y[d][src]) for d in sorted({p for t in targets for p in priors_for[t]})}
    prior_pred = {d: m.predict(Xsrc) for d, m in models.items()}
    out: dict = {}
    for t in targets:
        P = np.column_stack([prior_pred[d] for d in priors_for[t]])
        res = {"priors": priors_for[t], "k": {}}
        for k in ks:
            rows = {"prior": [], "no_prior": []}
            for s in range(seeds):
                rng = np.random.default_rng(1000 + s)
                pick = rng.choice(ev, size=k, replace=False)
                rest = np.setdiff1d(ev, pick)
                y = Y[t]
                for label, Pm in (("prior", P), ("no_prior", None)):
                    m = fit_fewshot(X[pick], y[pick], None if Pm is None else Pm[pick])
                    p = m.predict(X[rest], None if Pm is None else Pm[rest])
                    rows[label].append({"spearman": spearman(p, y[rest]),
                                        "rmse_ms": float(np.sqrt(np.mean((p - y[rest]) ** 2))),
                                        "within_10pct": within(p, y[rest])})
                    if k == ks[0] and s == 0 and label == "prior":
                        res["scatter"] = {"measured": y[rest].tolist(), "predicted": p.tolist()}
            res["k"][k] = {lab: {m: float(np.mean([r[m] for r in v])) for m in ("spearman", "rmse_ms", "within_10pct")}
                           | {"spearman_std": float(np.std([r["spearman"] for r in v]))} for lab, v in rows.items()}
            print(f"{name}/{t} k={k}: prior rho={res['k'][k]['prior']['spearman']:.4f} "
                  f"w10={res['k'][k]['prior']['within_10pct']:.3f} | no prior rho={res['k'][k]['no_prior']['spearman']:.4f}")
        out[t] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HELP_DATA), help="folder of HELP's tables (default %(default)s)")
    ap.add_argument("--ks", default="10,20,50,100")
    ap.add_argument("--seeds", type=int, default=10, help="random draws per k (>= 5; default 10)")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args(argv)
    import pandas as pd

    ks = [int(k) for k in args.ks.split(",")]
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "fewshot_latency", "seeds": args.seeds, "ks": ks,
                    "method": "log-linear map of prior-device models + ridge on the arch encoding, penalties by LOO "
                              "(hwnas.estimators.fewshot.fit_fewshot)",
                    "prior_protocol": __doc__.split("Prior knowledge used")[1].split("    .venv")[0].strip()}

    fb = pd.read_csv(data / "fbnet_device_latency.csv")
    ops = fb[[f"op{i}" for i in range(22)]].to_numpy()
    Xf = fbnet_encode(ops)
    cols = [c[:-3] for c in fb.columns if c.endswith("_ms")]
    Yf = {c: fb[c + "_ms"].to_numpy(float) for c in cols}
    prior_cols = [c for c in cols if c not in FBNET_TARGETS]
    report["fbnet"] = evaluate("fbnet", Xf, Xf, Yf, list(FBNET_TARGETS), {t: prior_cols for t in FBNET_TARGETS}, ks,
                               args.seeds)
    k10 = [report["fbnet"][t]["k"][ks[0]]["prior"]["spearman"] for t in HELP_K10]
    report["summary"] = {"fbnet_mean_spearman_k10_raspi4_eyeriss_fpga": float(np.mean(k10)),
                         "help_reported_mean_k10": 0.910, "help_per_device": HELP_K10}

    ofa = pd.read_csv(data / "ofa_mbv3_gpu_latency.csv")
    Xo, Xo_src = ofa_encode(ofa)
    gcols = [c[:-3] for c in ofa.columns if c.endswith("_ms")]
    Yo = {c: ofa[c + "_ms"].to_numpy(float) for c in gcols}
    gpu = lambda c: c.rsplit("_", 1)[0]  # noqa: E731
    pri = {t: [c for c in gcols if gpu(c) != gpu(t)] for t in gcols}
    report["ofa_gpus"] = evaluate("ofa", Xo, Xo_src, Yo, gcols, pri, ks, args.seeds)
    report["summary"]["ofa_mean_spearman_k10"] = float(np.mean([report["ofa_gpus"][t]["k"][ks[0]]["prior"]["spearman"]
                                                                for t in gcols]))
    print(json.dumps(report["summary"], indent=1))
    _plot(out / "fewshot_latency.png", report, ks[0])
    for sec in ("fbnet", "ofa_gpus"):
        for t in report[sec]:
            report[sec][t].pop("scatter", None)
    (out / "fewshot_latency.json").write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", out / "fewshot_latency.json")
    return 0


def _plot(path: Path, report: dict, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("fbnet", t) for t in FBNET_TARGETS] + [("ofa_gpus", t) for t in ("2080ti_1", "v100_64")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, (sec, t) in zip(axes.ravel(), panels):
        r = report[sec].get(t)
        if not r or "scatter" not in r:
            ax.set_visible(False)
            continue
        m, p = np.array(r["scatter"]["measured"]), np.array(r["scatter"]["predicted"])
        ax.scatter(m, p, s=3, alpha=0.4)
        lo, hi = m.min(), m.max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=1)
        ax.set_title(f"{t}: k={k}, ρ={r['k'][k]['prior']['spearman']:.3f} (mean of seeds)", fontsize=9)
        ax.set_xlabel("measured ms")
        ax.set_ylabel("predicted ms")
    fig.suptitle(f"Few-shot latency, k={k} target samples (seed 0 shown), priors = other devices")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
