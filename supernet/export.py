"""Export a subnet as a self-contained checkpoint directory, and load it back without pickles.

Layout of a checkpoint directory::

    arch.json           space, arch, input shape, normalisation, metrics, versions, file hashes
    weights.safetensors the static model's state dict
    model.onnx          (optional) ONNX graph, batch dimension dynamic
    model.pt            (optional) TorchScript

`load(dir)` rebuilds the static model from `arch.json` and the safetensors weights: no code is
unpickled, and every file's SHA-256 is checked against `arch.json` so a truncated or altered
checkpoint is refused.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from hwnas._io import atomic_dir
from hwnas.errors import CheckpointError
from hwnas.search_space import Arch, Space
from hwnas.supernet._supernet import Supernet
from hwnas.supernet.static import StaticNet, build_static
from torch import nn

__all__ = ["FORMATS", "export", "load", "read_info", "versions"]

FORMATS = ("safetensors", "onnx", "torchscript")
CHECKPOINT_FORMAT = "hwnas-checkpoint"
CHECKPOINT_VERSION = 1


def versions() -> dict[str, str]:
    """Library versions recorded with every checkpoint and measurement."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    from hwnas import __version__

    out["hwnas"] = __version__
    for mod in ("onnx", "onnxruntime", "safetensors", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional library missing is not an error here
            pass
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    out = []
    for f in formats:
        if f not in FORMATS:
            raise CheckpointError(f"unknown export format {f!r}; allowed: {list(FORMATS)}")
        out.append(f)
    if "safetensors" not in out:
        out.insert(0, "safetensors")  # the weights are what `load` needs; always written
    return tuple(dict.fromkeys(out))


def export(
    model: Supernet | StaticNet,
    arch: Arch | str | None,
    out_dir: str | Path,
    *,
    formats: Iterable[str] | str = ("safetensors",),
    space: Space | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    opset: int = 17,
) -> Path:
    """Write a checkpoint directory for `arch` (extracted from a supernet, or a static model).

    The directory appears whole or not at all. An existing `out_dir` is an error unless
    `overwrite=True`.
    """
    out_dir = Path(out_dir)
    fmts = _parse_formats(formats)
    if out_dir.exists() and not overwrite:
        raise CheckpointError(f"export directory {str(out_dir)!r} already exists (pass overwrite=True / --overwrite to replace it)")
    if isinstance(model, Supernet):
        space = model.space
        arch = space.parse(arch) if arch is not None else model.active_arch
        static = model.extract(arch)
    elif isinstance(model, StaticNet):
        if space is None:
            raise CheckpointError("exporting a StaticNet needs its space (space=...)")
        arch = space.parse(arch if arch is not None else model.arch_string)
        if arch.to_string() != model.arch_string:
            raise CheckpointError(f"model is {model.arch_string!r} but arch {arch} was given")
        static = model
    else:
        raise CheckpointError(f"export takes a Supernet or StaticNet, not {type(model).__name__}")
    static = static.float().eval().cpu()
    shape = [1, space.in_channels, arch.resolution, arch.resolution]
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in static.state_dict().items()}
        save_file(state, str(tmp / "weights.safetensors"))
        example = torch.randn(*shape)
        if "onnx" in fmts:
            _export_onnx(static, example, tmp / "model.onnx", opset)
        if "torchscript" in fmts:
            _export_torchscript(static, example, tmp / "model.pt")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        info = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "arch": arch.to_string(),
            "arch_dict": arch.to_dict(),
            "space": space.to_dict(),
            "input_shape": shape,
            "input_layout": "NCHW",
            "normalization": {"mean": list(space.mean), "std": list(space.std)},
            "num_classes": space.num_classes,
            "metrics": dict(metrics or {}),
            "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": files,
        }
        if extra:
            info["extra"] = dict(extra)
        (tmp / "arch.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    scripted.save(str(path))


def read_info(ckpt_dir: str | Path) -> dict[str, Any]:
    """The parsed `arch.json` of a checkpoint directory, with its shape checked."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory {str(ckpt_dir)!r} does not exist")
    p = ckpt_dir / "arch.json"
    if not p.is_file():
        raise CheckpointError(f"{str(ckpt_dir)!r} is not a checkpoint: arch.json is missing")
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: arch.json is corrupted ({e})") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not an hwnas checkpoint (format {info.get('format') if isinstance(info, dict) else None!r})")
    for key in ("arch", "space", "files"):
        if key not in info:
            raise CheckpointError(f"{p}: arch.json lacks {key!r} (truncated?)")
    return info


def load(ckpt_dir: str | Path, *, verify: bool = True, map_location: str | torch.device = "cpu") -> StaticNet:
    """Rebuild the static model of a checkpoint directory (eval mode), with no pickled code."""
    ckpt_dir = Path(ckpt_dir)
    info = read_info(ckpt_dir)
    wpath = ckpt_dir / "weights.safetensors"
    if not wpath.is_file():
        raise CheckpointError(f"{str(ckpt_dir)!r}: weights.safetensors is missing")
    if verify:
        for name, digest in info["files"].items():
            f = ckpt_dir / name
            if not f.is_file():
                raise CheckpointError(f"{str(ckpt_dir)!r}: {name} listed in arch.json is missing")
            if _sha256(f) != digest:
                raise CheckpointError(f"{str(ckpt_dir)!r}: {name} does not match its SHA-256 in arch.json (truncated or altered)")
    try:
        space = Space.from_dict(info["space"])
        arch = space.parse(info["arch"])
    except ValueError as e:
        raise CheckpointError(f"{str(ckpt_dir)!r}: arch.json does not describe a valid arch: {e}") from None
    model = build_static(space, arch)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(wpath), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{str(wpath)!r} cannot be read: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{str(wpath)!r} does not fit arch {arch}: {str(e).splitlines()[0]}") from None
    model.space = space  # type: ignore[attr-defined]  # lets callers re-export or profile it
    return model.eval()
