"""BatchNorm recalibration and BN-recalibrated evaluation of subnets (as Once-for-All does).

A subnet inherits running statistics that were accumulated by whichever subnets happened to be
active during training, so they do not match its own activations. Before a subnet is evaluated
or exported its BN statistics are recomputed from about 2,000 training images: reset, then a
cumulative average (momentum None) over a few forward passes in train mode without gradients.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hwnas.search_space import Arch
from hwnas.supernet._supernet import Supernet, resize_input
from hwnas.supernet.static import StaticNet
from torch import nn

__all__ = ["recalibrate_bn", "evaluate", "calib_tensor"]


def calib_tensor(images_or_loader: Any, num_images: int) -> torch.Tensor:
    """Up to `num_images` images from a tensor, a loader with `.images(n)`, or an iterable of batches."""
    if isinstance(images_or_loader, torch.Tensor):
        return images_or_loader[:num_images]
    if hasattr(images_or_loader, "images"):
        return images_or_loader.images(num_images)
    got, n = [], 0
    for batch in images_or_loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        got.append(x)
        n += len(x)
        if n >= num_images:
            break
    if not got:
        raise ValueError("no calibration images: the loader is empty")
    return torch.cat(got)[:num_images]


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _resolution(model: nn.Module, arch: Arch | str | None) -> int:
    if isinstance(model, Supernet):
        if arch is not None:
            model.set_active(arch)
        assert model.active_arch is not None
        return model.active_arch.resolution
    if arch is not None:
        return arch.resolution if isinstance(arch, Arch) else Arch.from_string(str(arch)).resolution
    if isinstance(model, StaticNet):
        return model.resolution
    raise ValueError("pass arch= to give the input resolution of a model that is neither a Supernet nor a StaticNet")


@torch.no_grad()
def recalibrate_bn(
    model: Supernet | StaticNet | nn.Module,
    arch: Arch | str | None,
    images_or_loader: Any,
    num_images: int = 2000,
    batch_size: int = 500,
) -> nn.Module:
    """Recompute the BN running statistics of `arch` (Supernet: made active; only its slice changes).

    For a `Supernet` the BN buffers of the active channels are overwritten (the dynamic BN updates
    only its first c channels). For a `StaticNet`, `arch` may be None. Returns the model, in the
    train/eval mode it came in with.
    """
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"num_images and batch_size must be >= 1, got {num_images} and {batch_size}")
    res = _resolution(model, arch)
    x = calib_tensor(images_or_loader, num_images)
    was_training = model.training
    bns = _bn_modules(model)
    saved = [bn.momentum for bn in bns]
    device = next(model.parameters()).device
    try:
        model.eval()  # dropout off
        for bn in bns:
            bn.train()
            bn.momentum = None  # cumulative average over the calibration batches
        for bn in bns:
            # With momentum None the first calibration batch replaces the statistics outright, and only
            # the channels the active subnet uses are written (a dynamic BN updates views of its buffers).
            bn.num_batches_tracked.zero_()
        for i in range(0, len(x), batch_size):
            model(resize_input(x[i : i + batch_size].to(device), res))
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
        model.train(was_training)
    return model


@torch.no_grad()
def _accuracy(model: nn.Module, loader: Iterable, res: int) -> float:
    model.eval()
    correct = total = 0
    device = next(model.parameters()).device
    for x, y in loader:
        logits = model(resize_input(x.to(device), res))
        correct += int((logits.argmax(1) == y.to(device)).sum())
        total += len(y)
    if total == 0:
        raise ValueError("the evaluation loader is empty")
    return correct / total


def evaluate(
    model: Supernet | StaticNet,
    arch: Arch | str | None,
    loader: Iterable,
    *,
    calib: Any = None,
    num_calib: int = 2000,
    recalibrate: bool = True,
    batch_size: int = 500,
) -> float:
    """Top-1 accuracy of `arch` on `loader`, after BN recalibration on `calib` (training images).

    For a `Supernet` the subnet is extracted first (a static copy), so evaluating never changes the
    supernet's own weights or statistics, and runs without dynamic slicing. `calib` is a tensor of
    images or a loader; pass `recalibrate=False` to evaluate with the inherited statistics.
    """
    if isinstance(model, Supernet):
        net: nn.Module = model.extract(model.space.parse(arch) if arch is not None else None)
    else:
        net = model
    res = _resolution(net, None if isinstance(net, StaticNet) else arch)
    if recalibrate:
        if calib is None:
            raise ValueError("evaluate needs calib= (training images or a loader) for BN recalibration, or recalibrate=False")
        recalibrate_bn(net, None, calib, num_calib, batch_size)
    was = net.training
    try:
        return _accuracy(net, loader, res)
    finally:
        net.train(was)
