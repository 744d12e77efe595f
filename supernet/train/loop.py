"""The `Trainer`: one loop for every policy, with DDP, exact resume, metrics and the final report.

A step asks the policy for its tasks (subnet, target, weight), resolves attentive candidate pools,
runs each task's forward/backward on every micro-batch, clips, and takes one optimizer step.
Checkpoints are written each epoch (model, optimizer, weight EMA, torch RNG) so `resume=True`
continues exactly; everything else random is a pure function of `(seed, step)`.

Distributed: run under `torchrun --nproc_per_node=N` (or `--nnodes`); each rank takes its slice
of the global batch, DDP averages gradients (`find_unused_parameters=True`: inactive slots get no
gradient). BatchNorm uses per-rank batch statistics, as in plain DDP; a single process reproduces
a DDP run exactly with `accum_steps=N` (the global batch in N micro-batches) — except under
`attentive`, whose pick is scored on each rank's slice (all-reduced), not on micro-batches.

Imports: search_space, hwnas.data, this package's config/policies/losses and the supernet modules.

Over 500 lines because the trainer is one idea: the step, the epoch loop and the checkpoint it
writes share the optimizer, EMA and policy state; the pieces without that state (EMA, metrics log,
zero-init, distributed set-up) are small module-level helpers here rather than files of their own.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hwnas._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from hwnas.errors import CheckpointError, ConfigError
from hwnas.search_space import Arch, Space
from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.checkpoint import save_supernet
from hwnas.supernet.train.config import TrainConfig
from hwnas.supernet.train.losses import alpha_div, l2_penalty, soft_ce
from hwnas.supernet.train.policies import Task, make_policy, report_archs
from torch import nn

__all__ = ["Trainer", "TrainResult", "train", "zero_init_residual_bn", "WeightEMA", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "hwnas-train-checkpoint"


# ---- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: where things were written and the final report."""

    out_dir: Path
    supernet_path: Path
    metrics_path: Path
    report: dict[str, Any]
    epochs: int
    global_step: int
    train_seconds: float
    images_per_s: float
    resumed_from: int | None = None
    model: Supernet | None = field(default=None, compare=False, repr=False)


# ---- pieces the trainer is made of -------------------------------------------------------------
def _decay_params(net: nn.Module, *, max_only: bool = False) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): weight decay on conv/linear weights only, not on BN, biases or
    kernel-transform matrices. `max_only`: the max subnet's L2 term, which leaves out the separate
    smaller kernels (`kernel_sharing: separate`) the max subnet never uses."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        skip = p.ndim <= 1 or ".transforms." in name or (max_only and ".kernel_weights." in name)
        (no_decay if skip else decay).append(p)
    return decay, no_decay


def _make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = _decay_params(net)
    # With max-only regularisation the decay is an explicit L2 term on the max subnet's loss instead.
    wd = 0.0 if cfg.regularize_max_only else cfg.weight_decay
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


@torch.no_grad()
def zero_init_residual_bn(net: Supernet) -> int:
    """Zero the last BN's gamma of every block slot that is a residual in every arch using it
    (BigNAS, after Goyal et al.): such a block starts as the identity, so deep and shallow subnets
    start out computing the same function. Returns how many BNs were zeroed.

    A slot is always residual when its stride is 1 and its input width always equals its output
    width: every slot after a stage's first (the stage's width is shared), and a first slot whose
    previous stage (or stem) and own stage each have one width, the same one.
    """
    space = net.space
    prev_widths: tuple[int, ...] = (space.stem.channels,)
    n = 0
    for ss, slots in zip(space.stages, net.stages):
        for j, slot in enumerate(slots):
            first_ok = len(prev_widths) == 1 and tuple(ss.widths) == prev_widths and ss.stride == 1
            if j == 0 and not first_ok:
                continue
            for blk in slot.values():
                bns = [m for m in blk.modules() if isinstance(m, nn.BatchNorm2d)]
                if bns:
                    bns[-1].weight.zero_()
                    n += 1
        prev_widths = tuple(ss.widths)
    return n


class WeightEMA:
    """An exponential moving average of the supernet's floating-point state (weights and BN
    buffers), updated after every optimizer step; the EMA is what the run saves and reports."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        for k, v in net.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, net: nn.Module) -> None:
        net.load_state_dict({**net.state_dict(), **self.shadow})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, sd: Mapping[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in sd.items()}


class _Metrics:
    """Append-only JSONL log a person can plot (one record per logged step, epoch and report)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("step", 0) <= step and rec.get("kind") != "report":
                keep.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def write(self, **rec: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def _torch_save_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _evaluate_archs(net: Supernet, archs: Mapping[str, Arch], loader: Any, calib: torch.Tensor, batch_size: int = 500
                    ) -> dict[str, float]:
    from hwnas.supernet.bn import evaluate

    return {name: evaluate(net, a, loader, calib=calib, num_calib=len(calib), batch_size=batch_size) for name, a in archs.items()}


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). Returns True if we created it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return True


# ---- the trainer -------------------------------------------------------------------------------
class Trainer:
    """Trains one supernet (or, with policy `single`, one subnet) as `config` says, into `out_dir`.

    `fit()` runs (or resumes) the whole schedule and returns a `TrainResult`; `train(...)` is the
    one-call form. The pieces a step is made of are methods, so a test can drive them one at a time.
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True):
        self.cfg = config
        self.out = Path(out_dir).resolve()
        self.resume, self.progress = resume, progress
        self.rank, self.world = 0, 1
        self.net: Supernet | None = None
        self.model: nn.Module | None = None
        self.ema: WeightEMA | None = None

    # -- set-up --
    def build(self, space: Space) -> Supernet:
        """The supernet, seeded and initialised as the config says (zero-init residual BN)."""
        torch.manual_seed(self.cfg.seed)
        net = Supernet(space)
        if self.cfg.zero_init_residual_bn:
            zero_init_residual_bn(net)
        if self.cfg.kernel_sharing == "separate":
            net.separate_kernels()  # after the zero-init: it copies kernels, not BNs
        if self.cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def task_loss(self, t: Task, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        """The loss of one task: labels, distillation from the soft targets, or both, plus the max
        subnet's L2 term when only the max subnet is regularised."""
        cfg = self.cfg
        is_max = t.arch == self.policy.max_arch()
        ls = cfg.label_smoothing if (is_max or not cfg.regularize_max_only) else 0.0
        if t.target == "labels":
            loss = F.cross_entropy(logits, y, label_smoothing=ls)
        else:
            assert soft is not None, "a distillation task needs a teacher before it"
            kd = soft_ce(logits, soft) if cfg.kd == "kl" else alpha_div(logits, soft)
            loss = kd if t.target == "teacher" else kd + F.cross_entropy(logits, y, label_smoothing=ls)
        if cfg.regularize_max_only and is_max and cfg.weight_decay > 0:
            assert self.net is not None
            loss = loss + l2_penalty(_decay_params(self.net, max_only=True)[0], cfg.weight_decay)
        return loss

    @torch.no_grad()
    def resolve_pool(self, t: Task, x: torch.Tensor, y: torch.Tensor) -> Task:
        """A pool task becomes the candidate with the lowest (`best`) or highest (`worst`) label loss
        on this rank's batch; the losses are summed over ranks so every rank picks the same one."""
        if not t.pool:
            return t
        assert self.net is not None
        losses = []
        for a in t.pool:
            self.net.set_active(a)
            losses.append(F.cross_entropy(self.net(resize_input(x, a.resolution)), y))
        vec = torch.stack(losses)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(vec)
        i = int(torch.argmin(vec) if t.pick == "best" else torch.argmax(vec))
        return Task(t.pool[i], t.target, t.weight, t.makes_soft)

    def _dropout_for(self, arch: Arch) -> None:
        assert self.net is not None
        head_drop = self.net.head.dropout
        head_drop.p = self.net.head.dropout_p if (arch == self.policy.max_arch() or not self.cfg.regularize_max_only) else 0.0

    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """One optimizer step on the global batch `(x, y)`: returns (logged loss, number of tasks)."""
        cfg, net, model, opt = self.cfg, self.net, self.model, self.opt
        assert net is not None and model is not None
        if self.policy.on_step(step, net):
            self.opt = opt = _make_optimizer(net, cfg)
        lr = self.policy.lr(step)
        for g in opt.param_groups:
            g["lr"] = lr
        bs_rank = cfg.batch_size // self.world
        x_r = x[self.rank * bs_rank : (self.rank + 1) * bs_rank]
        y_r = y[self.rank * bs_rank : (self.rank + 1) * bs_rank]
        tasks = [self.resolve_pool(t, x_r, y_r) for t in self.policy.tasks(step)]
        opt.zero_grad(set_to_none=True)
        mb = bs_rank // cfg.accum_steps
        step_loss = 0.0
        for a in range(cfg.accum_steps):
            xm, ym = x_r[a * mb : (a + 1) * mb], y_r[a * mb : (a + 1) * mb]
            if cfg.channels_last:
                xm = xm.contiguous(memory_format=torch.channels_last)
            soft = None
            logged = False
            for t in tasks:
                net.set_active(t.arch)
                self._dropout_for(t.arch)
                xi = resize_input(xm, t.arch.resolution)
                if t.target == "soft":
                    with torch.no_grad():
                        soft = F.softmax(net(xi), 1)
                    continue
                logits = model(xi)
                loss = self.task_loss(t, logits, ym, soft)
                if t.makes_soft:
                    soft = F.softmax(logits.detach(), 1)
                (loss * (t.weight / cfg.accum_steps)).backward()
                if not logged:  # the logged loss: the first trained subnet's (a teacher-only pass has none)
                    step_loss += float(loss.detach()) / cfg.accum_steps
                    logged = True
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        if self.ema is not None:
            self.ema.update(net)
        self._lr = lr
        return step_loss, len(tasks)

    # -- the run --
    def fit(self, *, stop_after_epochs: int | None = None) -> TrainResult:
        """Train (or resume) to the end of the schedule, or to `stop_after_epochs` epochs in total
        (as a kill would; used to test resume). Rank 0 writes the files."""
        cfg = self.cfg
        created_pg = _maybe_init_distributed()
        self.rank, self.world = _dist_info()
        if cfg.batch_size % (self.world * cfg.accum_steps):
            raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by world_size*accum_steps="
                              f"{self.world * cfg.accum_steps}")
        threads_before = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // self.world))
        try:
            return self._fit(stop_after_epochs, created_pg)
        finally:
            torch.set_num_threads(threads_before)  # a library call leaves the process as it found it

    def _fit(self, stop_after_epochs: int | None, created_pg: bool) -> TrainResult:
        from hwnas.data import TensorLoader, make_loaders

        cfg, out = self.cfg, self.out
        ckpt_path = out / "checkpoint.pt"
        is_main = self.rank == 0
        if is_main and ckpt_path.exists() and not self.resume:
            raise ConfigError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        space = Space.preset(str(cfg.space))  # a preset name or a space YAML path
        loaders = make_loaders(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, search_val=cfg.search_val,
                               seed=cfg.seed, subset=cfg.subset, steps_per_epoch=cfg.steps_per_epoch, space=space)
        if is_main:
            out.mkdir(parents=True, exist_ok=True)  # only now: a missing dataset must leave no empty run dir behind
        spe = len(loaders.train)
        self.net = net = self.build(space)
        self.policy = make_policy(cfg, space, spe)
        self.opt = _make_optimizer(net, cfg)
        self.ema = WeightEMA(net, cfg.ema_decay) if cfg.ema_decay > 0 else None

        start_epoch, step, resumed_from, prior_seconds = 0, 0, None, 0.0
        if self.resume and ckpt_path.is_file():
            start_epoch, step, prior_seconds = self._load_checkpoint(ckpt_path)
            resumed_from = start_epoch

        self.model = net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(net, find_unused_parameters=True)

        metrics = _Metrics(out / "metrics.jsonl", is_main)
        if resumed_from is not None:
            metrics.truncate_after(step)
        elif is_main:
            (out / "metrics.jsonl").unlink(missing_ok=True)
        if is_main:
            atomic_write_json(out / "config.json", cfg.to_dict())

        calib = loaders.calib_images(cfg.calib_images)
        val_calib = calib[: min(len(calib), 500)]
        val_loader = TensorLoader(loaders.val.x[: cfg.val_images], loaders.val.y[: cfg.val_images], batch_size=500)
        last_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
        t_train = time.perf_counter()
        images_done = 0
        try:
            for epoch in range(start_epoch, last_epoch):
                loaders.train.set_epoch(epoch)
                net.train()
                bar = None
                if self.progress and is_main:
                    from tqdm import tqdm

                    bar = tqdm(total=spe, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=True, dynamic_ncols=True)
                t_ep, n_ep, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
                t_log, n_log = time.perf_counter(), 0
                for x, y in loaders.train:
                    step_loss, n_tasks = self.step(step, x, y)
                    step += 1
                    n_ep += len(x)
                    n_log += len(x)
                    images_done += len(x)
                    loss_sum += step_loss
                    loss_n += 1
                    if bar is not None:
                        el = time.perf_counter() - t_ep
                        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{self._lr:.4f}", phase=self.policy.phase(step - 1),
                                        img_s=f"{n_ep / max(el, 1e-9):.0f}", refresh=False)
                        bar.update(1)
                    if step % cfg.log_every == 0:
                        now = time.perf_counter()
                        metrics.write(kind="step", epoch=epoch, step=step, phase=self.policy.phase(step - 1), loss=step_loss,
                                      lr=self._lr, img_s=n_log / max(now - t_log, 1e-9), subnets=n_tasks)
                        t_log, n_log = now, 0
                if bar is not None:
                    bar.close()
                ep_seconds = time.perf_counter() - t_ep
                rec: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": step, "phase": self.policy.phase(step - 1),
                                       "train_loss": loss_sum / max(loss_n, 1), "seconds": ep_seconds,
                                       "img_s": n_ep / max(ep_seconds, 1e-9)}
                if is_main and cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                    accs = self._evaluate(self.policy.eval_archs(), val_loader, val_calib)
                    rec.update({f"val_acc_{k}": v for k, v in accs.items()})
                metrics.write(**rec)
                if self.progress and is_main:
                    extra = " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k.startswith("val_acc"))
                    print(f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train_loss']:.4f} {rec['img_s']:.0f} img/s "
                          f"{ep_seconds:.0f}s {extra}", flush=True)
                if is_main:
                    self._save_checkpoint(ckpt_path, epoch + 1, step, prior_seconds + time.perf_counter() - t_train)
        except BaseException:
            if is_main and self.progress:
                print(f"training stopped; resume with: hwnas train --config {out / 'config.json'} --out {out} --resume",
                      flush=True)
            raise

        train_seconds = prior_seconds + time.perf_counter() - t_train
        report: dict[str, Any] = {}
        if is_main and last_epoch >= cfg.epochs:
            if self.ema is not None:
                self.ema.copy_to(net)  # the averaged weights are the run's result
            report = self._final_report(space, loaders, calib, train_seconds, step)
            metrics.write(kind="report", step=step, **report)
            atomic_write_json(out / "report.json", report)
            save_supernet(net, out, config=cfg, report=report)
            if self.progress:
                print("test accuracy (BN recalibrated): " + ", ".join(f"{k} {v:.4f}" for k, v in report["test_acc"].items()),
                      flush=True)
        if created_pg:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return TrainResult(
            out_dir=out,
            supernet_path=out / "supernet.safetensors",
            metrics_path=out / "metrics.jsonl",
            report=report,
            epochs=last_epoch,
            global_step=step,
            train_seconds=train_seconds,
            images_per_s=images_done / max(time.perf_counter() - t_train, 1e-9) if images_done else 0.0,
            resumed_from=resumed_from,
            model=net,
        )

    def _evaluate(self, archs: Mapping[str, Arch], loader: Any, calib: torch.Tensor) -> dict[str, float]:
        """BN-recalibrated accuracies, on the EMA weights when there are any (the training weights come back after)."""
        assert self.net is not None
        if self.ema is None:
            return _evaluate_archs(self.net, archs, loader, calib)
        live = {k: v.clone() for k, v in self.net.state_dict().items()}
        try:
            self.ema.copy_to(self.net)
            return _evaluate_archs(self.net, archs, loader, calib)
        finally:
            self.net.load_state_dict(live)

    def _final_report(self, space: Space, loaders: Any, calib: torch.Tensor, train_seconds: float, step: int) -> dict[str, Any]:
        cfg = self.cfg
        t_eval = time.perf_counter()
        archs = report_archs(space, cfg.report_random) if cfg.policy != "single" else self.policy.eval_archs()
        assert self.net is not None
        from hwnas.data import TensorLoader

        test = loaders.test
        if cfg.report_test_images is not None and cfg.report_test_images < len(test.y):
            n = cfg.report_test_images
            test = TensorLoader(test.x[:n], test.y[:n], batch_size=500)
        accs = _evaluate_archs(self.net, archs, test, calib)
        return {
            "test_acc": accs,
            "test_images": len(test.y),
            "archs": {k: str(a) for k, a in archs.items()},
            "calib_images": len(calib),
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t_eval,
            "epochs": cfg.epochs,
            "steps": step,
            "world_size": self.world,
            "policy": cfg.policy,
            "schedule": cfg.schedule,
        }

    def _save_checkpoint(self, path: Path, epoch: int, step: int, seconds: float) -> None:
        assert self.net is not None
        ck = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "epoch": epoch,
            "global_step": step,
            "model": self.net.state_dict(),
            "optimizer": self.opt.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scheduler": {"kind": self.cfg.lr_schedule, "step": step, "lr": self.policy.lr(max(step - 1, 0))},
            "policy": self.policy.state_dict(step),
            "rng": {"torch": torch.get_rng_state()},
            "config": self.cfg.to_dict(),
            "train_seconds": seconds,
        }
        atomic_write_bytes(path, _torch_save_bytes(ck))

    def _load_checkpoint(self, path: Path) -> tuple[int, int, float]:
        assert self.net is not None
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
            raise CheckpointError(f"cannot read {path}: {e}") from e
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a training checkpoint")
        saved, now = ck["config"], self.cfg.to_dict()
        diff = sorted(k for k in now if saved.get(k, now[k]) != now[k] and k not in ("threads", "log_every"))
        if diff:
            raise CheckpointError(f"--resume with a different config than the checkpoint's: {diff}; use the same config")
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        torch.set_rng_state(ck["rng"]["torch"])
        return int(ck["epoch"]), int(ck["global_step"]), float(ck.get("train_seconds", 0.0))


def train(config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          stop_after_epochs: int | None = None) -> TrainResult:
    """Train a supernet with `config`, writing checkpoints, metrics and the final supernet to `out_dir`.

    `resume=True` continues from `out_dir/checkpoint.pt` exactly (same seeds: same final weights).
    `stop_after_epochs` ends the run early after that many epochs in total (as a kill would;
    used to test resume). Under `torchrun` the run is distributed; rank 0 writes the files.
    """
    return Trainer(config, out_dir, resume=resume, progress=progress).fit(stop_after_epochs=stop_after_epochs)
