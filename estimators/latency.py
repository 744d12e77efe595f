"""Latency predictors: lookup-table sum + learned correction, and a FLOPs-proxy baseline.

`LatencyPredictor`:  t(arch) = (w_lut * LUT(arch) + w_blk * n_blocks + b) * exp(r(arch))
- LUT(arch) is the sum of the profiled block medians (stem, every active block, head);
- the affine part, fitted by least squares on the whole-network samples, absorbs what timing a
  block alone cannot see: per-call dispatch overhead paid once per network instead of once per
  block (big on onnxruntime, where one session runs the whole graph), cache warmth across blocks;
- r(arch) is an optional ridge regression of the log residual on `space.encode(arch)`, used only
  when leave-one-out cross-validation says it helps (it captures operator fusion that depends on
  which blocks follow which). With few networks it is usually switched off.

Files: `save(path)` writes one JSON file (coefficients, the table itself, the fingerprint) plus a
`.npz` of arrays next to it; `load` reads both with no pickle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from hwnas._io import atomic_write_bytes, atomic_write_json, read_json
from hwnas.errors import ProfileError, StaleProfileError
from hwnas.estimators.devices import Device, fingerprint_hash, warn_if_host_changed
from hwnas.search_space import Arch, BlockSite, Space, walk

__all__ = ["LatencyPredictor", "MacsProxy", "ArchFeaturizer", "ridge_loo", "spearman", "within"]

PREDICTOR_FORMAT = "hwnas-latency-predictor"


def spearman(a: Any, b: Any) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)


def within(pred: Any, true: Any, tol: float = 0.10) -> float:
    """Share of predictions within +-tol (relative) of the truth."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    return float(np.mean(np.abs(pred - true) <= tol * np.abs(true)))


def ridge_loo(X: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
              ) -> tuple[float, np.ndarray, float, float]:
    """Ridge with intercept, alpha picked by exact leave-one-out error.

    Returns (alpha, coef including intercept last, loo_mse, loo_mse of the intercept-only model).
    """
    n = len(y)
    mu_x, mu_y = X.mean(0), y.mean()
    Xc, yc = X - mu_x, y - mu_y
    base = float(np.mean((yc * n / max(n - 1, 1)) ** 2))  # LOO error of predicting the mean
    best = (math.inf, None, math.inf)
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    for a in alphas:
        d = s / (s**2 + a)
        w = Vt.T @ (d * (U.T @ yc))
        # hat matrix diagonal of the centred ridge + 1/n for the intercept
        h = np.einsum("ij,j,ij->i", U, s * d, U) + 1.0 / n
        r = (yc - Xc @ w) / np.clip(1 - h, 1e-6, None)
        mse = float(np.mean(r**2))
        if mse < best[0]:
            best = (a, w, mse)
    a, w, mse = best
    coef = np.append(w, mu_y - mu_x @ w)
    return float(a), coef, mse, base


def _site_key(s: BlockSite) -> tuple:
    """What fixes a stage block's lookup-table entry, cheaper to build than its `BlockConfig.key`."""
    return (s.stage, s.stride, s.cin, s.cout, s.block, s.in_size)


class ArchFeaturizer:
    """Fast per-arch LUT sum and block count, with block keys cached by their shape-defining tuple."""

    def __init__(self, space: Space, lut: dict[str, float]):
        self.space = space
        self.lut = lut
        self._cache: dict[tuple, float] = {}
        self._sizes = {r: space.feature_sizes(r) for r in space.resolutions}

    def lut_sum(self, arch: Arch) -> float:
        sp = self.space
        sizes = self._sizes.get(arch.resolution) or sp.feature_sizes(arch.resolution)
        total = self._get(("stem", arch.resolution), arch)
        cin = sp.stem.channels
        for s in walk(sp, arch):
            total += self._get(_site_key(s), arch)
            cin = s.cout
        return total + self._get(("head", cin, sizes[-1]), arch)

    def _get(self, t: tuple, arch: Arch) -> float:
        v = self._cache.get(t)
        if v is None:
            self._fill(arch)
            v = self._cache.get(t)
            if v is None:
                raise ProfileError(f"no lookup-table entry for a block of {arch}")
        return v

    def _fill(self, arch: Arch) -> None:
        """Resolve the keys of all blocks of `arch` once (slow path via space.block_configs)."""
        sp = self.space
        arch = sp.validate(arch)
        cfgs = sp.block_configs(arch)
        sizes = sp.feature_sizes(arch.resolution)
        missing = [c.key for c in cfgs if c.key not in self.lut]
        if missing:
            raise ProfileError(f"the lookup table lacks {len(missing)} block(s) of {arch}, e.g. {missing[0]}; "
                               "profile the space again (resume fills the gaps)")
        self._cache[("stem", arch.resolution)] = self.lut[cfgs[0].key]
        cin = sp.stem.channels
        for k, s in enumerate(walk(sp, arch), start=1):
            self._cache[_site_key(s)] = self.lut[cfgs[k].key]
            cin = s.cout
        self._cache[("head", cin, sizes[-1])] = self.lut[cfgs[-1].key]

    def features(self, archs: list[Arch]) -> np.ndarray:
        """(n, 2): LUT sum in ms and number of blocks (stem and head included)."""
        out = np.empty((len(archs), 2), dtype=np.float64)
        for i, a in enumerate(archs):
            out[i, 0] = self.lut_sum(a)
            out[i, 1] = a.num_blocks + 2
        return out


class LatencyPredictor:
    """Latency in ms of an arch on one device, from a lookup table plus a correction fitted on whole networks."""

    def __init__(self, *, space: Space, device: Device, lut: dict[str, float], fingerprint: dict[str, Any],
                 affine: tuple[float, float, float] = (1.0, 0.0, 0.0), ridge: np.ndarray | None = None,
                 fit_report: dict[str, Any] | None = None, host: dict[str, Any] | None = None):
        if not lut:
            raise ValueError("lut must hold at least one block")
        if len(affine) != 3 or not all(math.isfinite(v) for v in affine):
            raise ValueError(f"affine={affine!r} must be three finite numbers (w_lut, w_blocks, bias)")
        self.space = space
        self.device = device
        self.lut = dict(lut)
        self.fingerprint = dict(fingerprint)
        self.affine = tuple(float(v) for v in affine)
        self.ridge = None if ridge is None else np.asarray(ridge, dtype=np.float64)
        self.fit_report = dict(fit_report or {})
        self.host = dict(host or {})  # the CPU the profile was measured on (`devices.host_details`), {} if unknown
        self._feat = ArchFeaturizer(space, self.lut)

    @property
    def name(self) -> str:
        return f"latency_ms@{self.device.name}"

    # ---- fitting ---------------------------------------------------------------------------------
    @classmethod
    def from_profile(cls, prof: Any, *, correction: str = "auto", statistic: str | None = None) -> LatencyPredictor:
        """Fit on a `Profile`: correction in {"none", "affine", "auto"} ("auto" = affine + ridge when LOO says so).

        `statistic` ("min" or "median") picks the timing column; default: the profile's settings.
        """
        if correction not in ("none", "affine", "auto"):
            raise ValueError(f"correction={correction!r}; allowed: none, affine, auto")
        pred = cls(space=prof.space, device=prof.device, lut=prof.lut(statistic), fingerprint=prof.fingerprint,
                   host=prof.meta.get("host"))
        archs, y = prof.network_archs(), prof.network_latency_ms(statistic)
        if correction != "none" and len(y) >= 2:
            pred.fit(archs, y, ridge=correction == "auto")
        # which timing statistic the predictions mean: a check must measure the same one
        pred.fit_report["statistic"] = statistic or prof.settings.statistic
        return pred

    def fit(self, archs: list[Arch], latency_ms: Any, *, ridge: bool = True) -> LatencyPredictor:
        """Fit the correction on measured whole networks (in place; returns self)."""
        y = np.asarray(latency_ms, dtype=np.float64)
        if len(y) != len(archs) or len(y) < 2 or not np.all(y > 0):
            raise ValueError(f"need >= 2 positive latencies, one per arch (got {len(y)} for {len(archs)} archs)")
        F = self._feat.features(archs)
        if len(y) >= 6:
            A = np.column_stack([F[:, 0], F[:, 1], np.ones(len(y))])
        else:  # too few networks for three coefficients: a scale and an offset
            A = np.column_stack([F[:, 0], np.zeros(len(y)), np.ones(len(y))])
        coef = _robust_relative_lstsq(A, y)
        if coef[0] <= 0:  # degenerate fit (constant latencies): fall back to a pure scale
            coef = np.array([float(np.median(y / F[:, 0])), 0.0, 0.0])
        self.affine = tuple(float(v) for v in coef)
        base = self._affine(F)
        report: dict[str, Any] = {"n": int(len(y)), "affine": list(self.affine),
                                  "train_within_10pct_affine": within(base, y), "ridge": False}
        self.ridge = None
        if ridge and len(y) >= 20:
            X = self.space.encode_many(archs).astype(np.float64)
            r = np.log(y) - np.log(np.clip(base, 1e-9, None))
            alpha, w, mse, base_mse = ridge_loo(X, r)
            report.update({"ridge_alpha": alpha, "ridge_loo_mse": mse, "no_ridge_loo_mse": base_mse})
            if mse < 0.9 * base_mse:  # keep it only when it clearly beats the affine model out of sample
                self.ridge = w
                report["ridge"] = True
        report["train_within_10pct"] = within(self.predict_many(archs), y)
        self.fit_report = report
        return self

    def _affine(self, F: np.ndarray) -> np.ndarray:
        a, b, c = self.affine
        return a * F[:, 0] + b * F[:, 1] + c

    # ---- prediction --------------------------------------------------------------------------------
    def lut_sum(self, arch: Arch | str) -> float:
        return self._feat.lut_sum(self.space.parse(arch) if isinstance(arch, str) else arch)

    def predict(self, arch: Arch | str) -> float:
        return float(self.predict_many([arch])[0])

    def predict_many(self, archs: list[Arch | str]) -> np.ndarray:
        """Predicted latency (ms) of each arch; vectorised over the batch."""
        archs = [self.space.parse(a) if isinstance(a, str) else a for a in archs]
        out = self._affine(self._feat.features(archs))
        if self.ridge is not None:
            X = self.space.encode_many(archs).astype(np.float64)
            out = out * np.exp(X @ self.ridge[:-1] + self.ridge[-1])
        return np.maximum(out, 1e-6)

    __call__ = predict

    # ---- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write `path` (JSON) and `path` with suffix `.npz` (arrays); no pickle."""
        path = Path(path)
        arrays = {"ridge": self.ridge if self.ridge is not None else np.zeros(0)}
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        atomic_write_json(path, {
            "format": PREDICTOR_FORMAT, "version": 1, "space": self.space.to_dict(), "device": self.device.to_dict(),
            "fingerprint": self.fingerprint, "fingerprint_hash": fingerprint_hash(self.fingerprint),
            "affine": list(self.affine), "lut": self.lut, "fit_report": self.fit_report,
            "arrays": path.with_suffix(".npz").name, **({"host": self.host} if self.host else {}),
        })
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: Device | str | None = None, allow_stale: bool = False
             ) -> LatencyPredictor:
        path = Path(path)
        try:
            d = read_json(path)
            if d.get("format") != PREDICTOR_FORMAT:
                raise ValueError("not a latency predictor file")
            with np.load(path.parent / d["arrays"], allow_pickle=False) as z:
                ridge = z["ridge"]
            space, dev = Space.from_dict(d["space"]), Device.from_dict(d["device"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProfileError(f"{path}: cannot read latency predictor ({e})") from None
        if device is not None:
            want = Device.from_name(device) if isinstance(device, str) else device
            if want.fingerprint() != d["fingerprint"] and not allow_stale:
                raise StaleProfileError(f"{path} was fitted on fingerprint {d.get('fingerprint_hash')} "
                                        f"({d['fingerprint'].get('cpu')}, {d['fingerprint'].get('backend')}), this "
                                        f"device is {want.fingerprint_hash()}; pass allow_stale=True to use it anyway")
            if not allow_stale:
                warn_if_host_changed(f"latency predictor {path}", d.get("host"))
        return cls(space=space, device=dev, lut=d["lut"], fingerprint=d["fingerprint"], affine=tuple(d["affine"]),
                   ridge=ridge if ridge.size else None, fit_report=d.get("fit_report"), host=d.get("host"))


def _robust_relative_lstsq(A: np.ndarray, y: np.ndarray, iters: int = 20) -> np.ndarray:
    """Least squares on relative errors with Huber weights (IRLS).

    Relative: each network weighs by 1/y, so small nets count as much as big ones. Huber: a network
    whose timing a busy neighbour inflated (it happens on shared machines even with the min statistic)
    is down-weighted instead of dragging the three coefficients.
    """
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
    for _ in range(iters):
        r = (y - A @ coef) / y
        scale = 1.4826 * float(np.median(np.abs(r - np.median(r)))) + 1e-9
        k = 1.345 * scale
        hub = np.where(np.abs(r) <= k, 1.0, k / np.maximum(np.abs(r), 1e-12))
        ww = w * np.sqrt(hub)
        new, *_ = np.linalg.lstsq(A * ww[:, None], y * ww, rcond=None)
        if np.allclose(new, coef, rtol=1e-6, atol=1e-9):
            break
        coef = new
    return coef


class MacsProxy:
    """Baseline: latency = a * MACs + b, fitted on the same whole-network samples (MACs via the closed form)."""

    def __init__(self, space: Space, a: float = 1.0, b: float = 0.0):
        self.space, self.a, self.b = space, float(a), float(b)

    def macs(self, archs: list[Arch]) -> np.ndarray:
        from hwnas.estimators.flops import arch_macs_many

        return arch_macs_many(self.space, archs)

    def fit(self, archs: list[Arch], latency_ms: Any) -> MacsProxy:
        m, y = self.macs(archs), np.asarray(latency_ms, float)
        self.a, self.b = (float(v) for v in np.polyfit(m, y, 1))
        return self

    def predict_many(self, archs: list[Arch]) -> np.ndarray:
        return self.a * self.macs(archs) + self.b
