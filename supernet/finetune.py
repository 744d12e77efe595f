"""Fine-tuning of an exported subnet: distillation from the supernet's max subnet, then BN
recalibration, then the checkpoint folder re-written whole.

A subnet exported from a weight-sharing supernet carries weights that were trained to serve many
subnets at once; a few hundred steps of its own training recover part of what sharing cost
(Once-for-All fine-tunes its released specialised nets for 25-75 epochs). The loss is Once-for-All's:
label-smoothed cross-entropy plus the cross-entropy against the soft targets of the supernet's max
subnet (the teacher, BN-recalibrated, in eval mode); without a teacher (`kd=False`) the label term
alone. SGD with Nesterov momentum and a cosine learning rate from `lr` to 0, on the training split the
supernet was trained on (its search-validation images stay unseen).

Test accuracy is measured before (the folder as it was) and after (BN recalibrated on training
images), both written into `arch.json` (`metrics.finetune`; `metrics.measured.accuracy` becomes the
new test accuracy, its old value kept as `accuracy_before_finetune`) and returned.

The folder is replaced atomically: the new checkpoint (every format the folder had, so the ONNX or
TorchScript graph agrees with the weights) is written beside it under `.tmp-<name>-finetune-<pid>-*`
and exchanged with the original in one `renameat2(RENAME_EXCHANGE)` (two renames where the system
lacks it). A kill at any moment leaves the original or the new checkpoint in place; the next
fine-tuning of the same folder removes what a killed one left.

Imports: search_space, hwnas.data, and this package.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hwnas.errors import CheckpointError, ConfigError
from hwnas.search_space import Space
from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.bn import evaluate, recalibrate_bn
from hwnas.supernet.checkpoint import export, load_subnet, read_info, read_supernet_meta
from hwnas.supernet.train.losses import soft_ce

__all__ = ["FinetuneResult", "finetune", "find_teacher", "MAX_STEPS"]

MAX_STEPS = 1_000_000
# The files `export` writes for each optional format: the formats a folder has are re-made.
_FORMAT_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
_EXPORT_FILES = {"arch.json", "weights.safetensors", *_FORMAT_FILES.values()}


@dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tuning did; `record` is what went into `arch.json` (`metrics.finetune`)."""

    path: Path
    arch: str
    steps: int
    accuracy_before: float
    accuracy_after: float
    seconds: float
    teacher: str | None
    record: Mapping[str, Any]

    @property
    def gain_per_minute(self) -> float:
        """Test-accuracy points (0..100) gained per minute of fine-tuning (evaluation included)."""
        return 100 * (self.accuracy_after - self.accuracy_before) / max(self.seconds / 60, 1e-9)


# ---- the teacher ----------------------------------------------------------------------------------
def find_teacher(ckpt_dir: str | Path, info: Mapping[str, Any] | None = None) -> str | None:
    """Where the supernet of an exported subnet is, when nobody says: the one its `arch.json` names
    (`extra.supernet`), else the run's own (`<run>/exported/<name>` -> `<run>/supernet`), else the
    shipped bundle named after its space. Only a supernet of the very same space counts. None when
    there is none."""
    ckpt_dir = Path(ckpt_dir).resolve()
    info = read_info(ckpt_dir) if info is None else info
    space = Space.from_dict(info["space"])
    extra = info.get("extra") if isinstance(info.get("extra"), dict) else {}
    candidates = [extra.get("supernet"), ckpt_dir.parent.parent / "supernet", space.name]
    for c in candidates:
        if not c:
            continue
        try:
            read_supernet_meta(c, space=space)
        except (CheckpointError, OSError, ValueError):
            continue
        return str(c)
    return None


def _teacher_net(supernet: Supernet | str | os.PathLike, space: Space) -> tuple[Supernet, dict[str, Any]]:
    """(supernet, its training config) with the space checked against the export's."""
    from hwnas.supernet.checkpoint import load_supernet

    if isinstance(supernet, Supernet):
        if supernet.space.to_dict() != space.to_dict():
            raise CheckpointError(f"the teacher supernet holds space {supernet.space.name!r}, not the export's "
                                  f"{space.name!r} (or one that differs from it)")
        return supernet, {}
    _, meta = read_supernet_meta(supernet, space=space)
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return load_supernet(supernet, space=space), cfg


# ---- the folder swap ------------------------------------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot exchange
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_debris(ckpt_dir: Path) -> None:
    """Remove what a killed fine-tuning of `ckpt_dir` left beside it; where it was killed between the
    two renames of the fallback swap (no `ckpt_dir`, the original in `old/`), put the original back."""
    prefix = f".tmp-{ckpt_dir.name}-finetune-"
    for d in ckpt_dir.parent.glob(prefix + "*"):
        pid = d.name[len(prefix):].split("-", 1)[0]
        if not d.is_dir() or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if not ckpt_dir.exists() and (d / "old" / "arch.json").is_file():
            os.replace(d / "old", ckpt_dir)
        shutil.rmtree(d, ignore_errors=True)


# ---- fine-tuning ----------------------------------------------------------------------------------
def _check(steps: int, lr: float, batch_size: int, kd_weight: float, label_smoothing: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"steps={steps!r}: choose an int in 1..{MAX_STEPS}")
    if not (isinstance(lr, (int, float)) and 0 < lr <= 10 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr!r}: choose a number in (0, 10]")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 65536:
        raise ConfigError(f"batch_size={batch_size!r}: choose an int in 1..65536")
    if not 0 <= kd_weight <= 100:
        raise ConfigError(f"kd_weight={kd_weight!r}: choose a number in [0, 100]")
    if not 0 <= label_smoothing < 1:
        raise ConfigError(f"label_smoothing={label_smoothing!r}: choose a number in [0, 1)")


def _batches(n: int, batch_size: int, seed: int):
    """Index batches, reshuffled every pass, forever (a pure function of the seed)."""
    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=g)
        for i in range(0, n - bs + 1, bs):
            yield order[i : i + bs]


def finetune(
    path: str | os.PathLike,
    *,
    steps: int,
    supernet: Supernet | str | os.PathLike | None = None,
    kd: bool = True,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
    kd_weight: float = 1.0,
    label_smoothing: float = 0.1,
    weight_decay: float = 3e-5,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    loaders: Any = None,
    calib_images: int = 2000,
    device: str = "cpu",
    teacher_label: str | None = None,
    progress: bool = True,
    log_every: int | None = None,
    say: Callable[[str], None] = print,
) -> FinetuneResult:
    """Fine-tune the exported subnet in folder `path` for `steps` steps and re-write the folder.

    `supernet` is the teacher (a `Supernet`, a folder or a shipped bundle name); None looks for it
    (`find_teacher`) and fails naming what to pass when there is none. `kd=False` trains on the labels
    alone (no teacher needed). The data is the teacher's training dataset and split unless `dataset` /
    `loaders` (an `hwnas.data.Loaders`, e.g. the main job's) say otherwise. Without `progress`, a line
    `step i/N loss x` goes to `say` every `log_every` steps (default: about 20 lines in all).
    """
    from hwnas.data import make_loaders

    _check(steps, lr, batch_size, kd_weight, label_smoothing)
    if log_every is not None and log_every < 1:
        raise ConfigError(f"log_every={log_every!r}: choose an int >= 1")
    ckpt_dir = Path(path).resolve()
    _clean_debris(ckpt_dir)
    info = read_info(ckpt_dir)
    stamp = (ckpt_dir / "arch.json").read_bytes()  # to notice a change of the folder while training
    student = load_subnet(ckpt_dir).to(device)
    space = Space.from_dict(info["space"])
    arch = space.parse(info["arch"])
    t0 = time.perf_counter()

    teacher, teacher_cfg, teacher_name = None, {}, None
    if kd:
        if supernet is None:
            supernet = find_teacher(ckpt_dir, info)
            if supernet is None:
                raise CheckpointError(
                    f"{str(ckpt_dir)!r}: no supernet of space {space.name!r} found to distil from (not named in "
                    "arch.json, no <run>/supernet beside it, no shipped bundle of that name); pass --supernet "
                    "PATH_OR_BUNDLE, or --no-kd to fine-tune on the labels alone")
        teacher_name = teacher_label or (str(supernet) if not isinstance(supernet, Supernet) else "supernet object")
        net, teacher_cfg = _teacher_net(supernet, space)
    if loaders is None:
        loaders = make_loaders(dataset or teacher_cfg.get("dataset") or "fashion-mnist",
                               data_dir if data_dir is not None else teacher_cfg.get("data_dir"),
                               space=space, search_val=int(teacher_cfg.get("search_val", 5000)),
                               seed=int(teacher_cfg.get("seed", 0)), subset=subset)
    calib = loaders.calib_images(calib_images)
    if kd:
        max_arch = space.max_arch()
        with torch.no_grad():
            teacher = net.extract(max_arch).to(device)
            recalibrate_bn(teacher, None, calib, len(calib))
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    # The folder's own model is scored at the end, beside the result: the steps start at once, and a
    # run killed mid-way has spent nothing on evaluation.
    original = copy.deepcopy(student).eval()
    say(f"finetune {ckpt_dir.name}: {arch}, {steps} steps; "
        + (f"distilling from the max subnet of {teacher_name}" if kd else "no teacher (--no-kd): label-smoothed CE only"))

    x_all, y_all = loaders.train.x, loaders.train.y
    torch.manual_seed(seed)
    decay = [p for p in student.parameters() if p.ndim > 1]
    no_decay = [p for p in student.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    every = log_every or max(1, steps // 20)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"finetune {ckpt_dir.name}", unit="step", dynamic_ncols=True)
    student.train()
    losses: list[float] = []
    batches = _batches(len(x_all), batch_size, seed)
    try:
        for step in range(1, steps + 1):
            idx = next(batches)
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            logits = student(resize_input(x, arch.resolution))
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(teacher(resize_input(x, max_arch.resolution)), 1)
                loss = loss + kd_weight * soft_ce(logits, soft)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            elif step % every == 0 or step == 1 or step == steps:
                say(f"step {step}/{steps} loss {losses[-1]:.4f} lr {sched.get_last_lr()[0]:.5f}")
    finally:
        if bar is not None:
            bar.close()
    student.eval()
    with torch.no_grad():
        recalibrate_bn(student, None, calib, len(calib))
    acc_before = evaluate(original, None, loaders.test, recalibrate=False)
    acc_after = evaluate(student, None, loaders.test, recalibrate=False)
    seconds = time.perf_counter() - t0

    metrics = copy.deepcopy(info.get("metrics") or {})
    measured = metrics.get("measured")
    if not isinstance(measured, dict):
        measured = metrics["measured"] = {}
    if "accuracy" in measured:  # the export's own test accuracy, of the weights before any fine-tuning
        measured.setdefault("accuracy_before_finetune", measured["accuracy"])
    measured["accuracy"] = float(acc_after)
    record: dict[str, Any] = {
        "steps": steps, "lr": lr, "batch_size": min(batch_size, len(x_all)), "seed": seed,
        "optimizer": "SGD nesterov momentum 0.9, cosine lr to 0, grad clip 5",
        "loss": (f"CE(label_smoothing={label_smoothing}) + {kd_weight} * KD(max subnet)" if kd
                 else f"CE(label_smoothing={label_smoothing})"),
        "teacher": teacher_name, "teacher_arch": str(max_arch) if kd else None,
        "train_images": int(len(x_all)), "calib_images": int(len(calib)),
        "split": "test", "test_images": int(len(loaders.test.x)), "accuracy_before": float(acc_before), "accuracy_after": float(acc_after),
        "loss_first": losses[0], "loss_last": losses[-1], "seconds": round(seconds, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if isinstance(metrics.get("finetune"), dict):
        record["earlier"] = metrics["finetune"]  # a second fine-tuning keeps the first one's record
    metrics["finetune"] = record
    formats = ["safetensors", *(f for f, name in _FORMAT_FILES.items() if name in info["files"])]
    _rewrite(ckpt_dir, stamp, student.cpu(), space, arch, formats, metrics, info.get("extra"))
    say(f"finetune {ckpt_dir.name}: test accuracy {100 * acc_before:.2f}% -> {100 * acc_after:.2f}% in {steps} steps "
        f"({seconds:.0f} s); re-written: {', '.join(formats)}")
    return FinetuneResult(path=ckpt_dir, arch=str(arch), steps=steps, accuracy_before=float(acc_before),
                          accuracy_after=float(acc_after), seconds=seconds, teacher=teacher_name, record=record)


def _rewrite(ckpt_dir: Path, stamp: bytes, model: torch.nn.Module, space: Space, arch: Any, formats: list[str],
             metrics: Mapping[str, Any], extra: Any) -> None:
    """Write the new checkpoint beside `ckpt_dir` and exchange the two folders in one step."""
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{ckpt_dir.name}-finetune-{os.getpid()}-", dir=ckpt_dir.parent))
    try:
        new = export(model, arch, work / "new", space=space, formats=formats, metrics=metrics,
                     extra=extra if isinstance(extra, dict) else None)
        for p in ckpt_dir.iterdir():  # whatever else the user kept in the folder stays with it
            if p.name not in _EXPORT_FILES:
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, new / p.name)
        if (ckpt_dir / "arch.json").read_bytes() != stamp:
            raise CheckpointError(f"{str(ckpt_dir)!r} changed while it was being fine-tuned; left as it is now, "
                                  "the fine-tuned weights are not written")
        if not _exchange(new, ckpt_dir):
            os.replace(ckpt_dir, work / "old")  # a kill between these two: the next finetune puts it back
            os.replace(new, ckpt_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
