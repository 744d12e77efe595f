"""Nothing unsafe is loaded: a scan of the tracked tree, crafted files that would run code, Ray on 127.0.0.1.

The scan parses every tracked `*.py` file (AST, so comments and strings do not count) for calls that
can run code from a file or a string: `torch.load` without `weights_only=True`, `pickle.load(s)` /
`Unpickler` (only the allow-listed uses below), `eval` / `exec`, `yaml.load` / `yaml.unsafe_load` /
`yaml.full_load`, `np.load(..., allow_pickle=True)`, `subprocess` with `shell=True`.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# (file, what) pairs that are allowed, each with the reason it is safe.
ALLOWED_PICKLE = {
    # CIFAR-10's official batches are pickles: read with an Unpickler that only resolves numpy's
    # array reconstructors (tested below to refuse anything else).
    ("data.py", "Unpickler"),
}


def _tracked_py() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / p for p in out.splitlines() if (REPO / p).is_file()]


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""  # a call on an expression (`make().eval()`) is a method, not a builtin or module function
    parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> object:
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def scan(path: Path) -> list[tuple[int, str]]:
    """Unsafe loading calls in one file: (line, what)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for b in node.bases:
                if _dotted(b).endswith("Unpickler"):
                    found.append((node.lineno, "Unpickler"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
            found.append((node.lineno, name))
        elif name == "torch.load" and _kw(node, "weights_only") is not True:
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in ("pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads",
                      "joblib.load", "pickle.Unpickler", "marshal.loads", "shelve.open"):
            found.append((node.lineno, name))
        elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            found.append((node.lineno, name))
        elif name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") not in (None, False):
            found.append((node.lineno, "np.load allow_pickle"))
        elif name.startswith("subprocess.") and _kw(node, "shell") not in (None, False):
            found.append((node.lineno, "subprocess shell=True"))
        elif name == "os.system":
            found.append((node.lineno, name))
    return found


def test_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch, pickle, yaml, numpy as np, subprocess\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\npickle.loads(b'')\neval('1')\nexec('1')\n"
        "yaml.load('a')\nnp.load('a', allow_pickle=True)\nsubprocess.run('ls', shell=True)\n"
        "class U(pickle.Unpickler): pass\n"
        "torch.load('x', weights_only=True)\nyaml.safe_load('a')\nmodel.eval()\nnp.load('a', allow_pickle=False)\n"
    )
    whats = [w for _, w in scan(bad)]
    assert len(whats) == 9, whats


def test_tree_has_no_unsafe_loading() -> None:
    files = _tracked_py()
    assert len(files) > 30
    problems = []
    used_allowances = set()
    for f in files:
        rel = f.relative_to(REPO).as_posix()
        if rel.startswith("tests/"):
            continue  # tests write malicious pickles on purpose
        for line, what in scan(f):
            if (rel, what) in ALLOWED_PICKLE:
                used_allowances.add((rel, what))
                continue
            problems.append(f"{rel}:{line}: {what}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)
    assert used_allowances == ALLOWED_PICKLE, f"stale allowances: {ALLOWED_PICKLE - used_allowances}"


def test_tests_load_torch_files_weights_only() -> None:
    """Even tests use weights_only=True (a test copying a pattern should copy the safe one)."""
    problems = [f"{f.relative_to(REPO)}:{ln}" for f in _tracked_py() if f.relative_to(REPO).parts[0] == "tests"
                for ln, what in scan(f) if what.startswith(("torch.load", "eval", "exec", "yaml."))]
    assert not problems, problems


# ---- crafted files that would run code on load --------------------------------------------------
class _Evil:
    """Unpickling this runs `open(MARKER, "w")`: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(marker: Path) -> bytes:
    _Evil.marker = str(marker)
    return pickle.dumps(_Evil())


def _evil_torch_file(marker: Path) -> bytes:
    """A torch.save-format zip whose data.pkl calls open(): what a malicious checkpoint looks like."""
    import torch

    buf = io.BytesIO()
    _Evil.marker = str(marker)
    torch.save({"format": "hwnas-train-checkpoint", "model": _Evil()}, buf)
    return buf.getvalue()


def test_export_load_rejects_code_in_weights(tmp_path: Path) -> None:
    from hwnas.errors import CheckpointError
    from hwnas.search_space import Space
    from hwnas.supernet import build_static, export, load_subnet

    space = Space.preset("fmnist-mbv3")
    arch = space.min_arch()
    ck = export(build_static(space, arch), arch, tmp_path / "ck", space=space)
    marker = tmp_path / "pwned"
    for payload in (_evil_pickle(marker), _evil_torch_file(marker)):
        (ck / "weights.safetensors").write_bytes(payload)
        with pytest.raises(CheckpointError):
            load_subnet(ck)
        with pytest.raises(CheckpointError):
            load_subnet(ck, verify=False)  # without the SHA-256 check the safetensors reader still refuses it
    assert not marker.exists(), "loading a checkpoint ran code"


def test_load_supernet_rejects_code(tmp_path: Path) -> None:
    from hwnas.errors import CheckpointError
    from hwnas.search_space import Space
    from hwnas.supernet import Supernet, load_supernet, save_supernet

    d = tmp_path / "sn"
    save_supernet(Supernet(Space.preset("fmnist-mbv3")), d)
    marker = tmp_path / "pwned"
    for payload in (_evil_pickle(marker), _evil_torch_file(marker)):
        (d / "supernet.safetensors").write_bytes(payload)
        with pytest.raises(CheckpointError):
            load_supernet(d)
    assert not marker.exists(), "load_supernet ran code"


@pytest.mark.slow
def test_train_resume_rejects_code_in_checkpoint(tmp_path: Path) -> None:
    """The one torch.load in the project (train resume) is weights_only: a code-running checkpoint is refused."""
    from hwnas.errors import CheckpointError
    from hwnas.supernet.train import load_config, train

    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(_evil_torch_file(marker))
    cfg = load_config(None, schedule="tiny", overrides={"subset": 128, "epochs": 1})
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        train(cfg, out, resume=True, progress=False)
    assert not marker.exists(), "resuming a training run ran code from its checkpoint"


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    from hwnas.data import _read_cifar_batch
    from hwnas.errors import DataError

    marker = tmp_path / "pwned"
    p = tmp_path / "data_batch_1"
    p.write_bytes(_evil_pickle(marker))
    with pytest.raises(DataError, match="refusing to unpickle"):
        _read_cifar_batch(p)
    assert not marker.exists()
    # ...and still reads a genuine batch (dict of a numpy array and a list)
    p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 4]}))
    x, y = _read_cifar_batch(p)
    assert x.shape == (2, 3, 32, 32) and list(y) == [3, 4]


def test_predictor_files_load_without_pickle(tmp_path: Path) -> None:
    """A predictor's .npz holding an object array (pickle inside) is refused, not unpickled."""
    from hwnas.errors import ProfileError
    from hwnas.estimators import AccuracyPredictor
    from hwnas.search_space import Space

    space = Space.preset("fmnist-mbv3")
    rng = np.random.default_rng(0)
    archs = [space.sample(i) for i in range(16)]
    pred = AccuracyPredictor.fit(space, archs, rng.uniform(0.6, 0.9, len(archs)), epochs=2, hidden=8, layers=1) \
        if hasattr(AccuracyPredictor, "fit") else None
    if pred is None:
        pytest.skip("AccuracyPredictor.fit not available")
    path = pred.save(tmp_path / "acc.json")
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    arrays = Path(path).with_suffix(".npz") if Path(path).with_suffix(".npz").exists() else next(tmp_path.glob("*.npz"))
    np.savez(arrays, w0=np.array([_Evil()], dtype=object))
    with pytest.raises(ProfileError):
        AccuracyPredictor.load(path)
    assert not marker.exists()


# ---- servers ---------------------------------------------------------------------------------------
def test_ray_starts_bind_localhost() -> None:
    """Every local Ray start in the package and tests: 127.0.0.1, no dashboard."""
    problems = []
    for f in _tracked_py():
        rel = f.relative_to(REPO).as_posix()
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name == "ray.init" and _kw(node, "address") is None and not rel.startswith("tests/"):
                if _kw(node, "include_dashboard") is not False:
                    problems.append(f"{rel}:{node.lineno}: local ray.init without include_dashboard=False")
                if _kw(node, "_node_ip_address") != "127.0.0.1" and not rel.startswith("benchmarks/"):
                    problems.append(f"{rel}:{node.lineno}: local ray.init without _node_ip_address='127.0.0.1'")
            # `ray start ...` argument lists
            if isinstance(node.func, ast.Attribute) or isinstance(node.func, ast.Name):
                for a in node.args:
                    if isinstance(a, ast.List):
                        consts = [e.value for e in a.elts if isinstance(e, ast.Constant)]
                        if "start" in consts and ("--head" in consts or "--address" in consts):
                            if "--node-ip-address" not in consts or "127.0.0.1" not in consts:
                                problems.append(f"{rel}:{node.lineno}: `ray start` without --node-ip-address 127.0.0.1")
                            if "--head" in consts and "--include-dashboard" not in consts and "--dashboard-host" not in consts:
                                problems.append(f"{rel}:{node.lineno}: `ray start --head` leaves the dashboard on")
            for k in node.keywords:
                if k.arg in ("host", "dashboard_host", "bind", "listen") and isinstance(k.value, ast.Constant) \
                        and k.value.value in ("0.0.0.0", "::", ""):
                    problems.append(f"{rel}:{node.lineno}: {k.arg}={k.value.value!r}")
    assert not problems, "\n".join(problems)


def test_no_server_binds_all_interfaces_in_source() -> None:
    hits = []
    for f in _tracked_py():
        rel = f.relative_to(REPO).as_posix()
        if rel == "tests/test_security.py":
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if "0.0.0.0" in line and not line.lstrip().startswith("#"):
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert not hits, hits


def test_checkpoint_files_are_not_world_writable(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (0600): another local user cannot swap a checkpoint."""
    from hwnas._io import atomic_write_bytes

    p = atomic_write_bytes(tmp_path / "x.bin", b"abc")
    assert not (os.stat(p).st_mode & 0o022)
