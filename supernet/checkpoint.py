"""Checkpoints, both kinds, written and read without pickles.

- A **supernet** checkpoint: `supernet.safetensors` + `supernet.json` (space, training config,
  report). `save_supernet(net, dir)` / `load_supernet(dir) -> Supernet`.
- A **subnet** checkpoint: a static model of one arch, exported to run on its own.
  `export(supernet_or_static, arch, dir)` / `load_subnet(dir) -> StaticNet`.

Layout of a subnet checkpoint directory::

    arch.json           space, arch, input shape, normalisation, metrics, versions, file hashes
    weights.safetensors the static model's state dict
    model.onnx          (optional) ONNX graph, batch dimension dynamic
    model.pt            (optional) TorchScript

`load_subnet(dir)` rebuilds the static model from `arch.json` and the safetensors weights: no code is
unpickled, and every file's SHA-256 is checked against `arch.json` so a truncated or altered
checkpoint is refused.

Imports: search_space, and this package's `_supernet` and `static`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from hwnas._io import atomic_dir, atomic_write_bytes, atomic_write_json, read_json
from hwnas.errors import CheckpointError
from hwnas.search_space import Arch, Space
from hwnas.supernet._supernet import Supernet
from hwnas.supernet.static import StaticNet, build_static
from torch import nn

__all__ = [
    "FORMATS",
    "BUNDLE_ROOT",
    "bundle_names",
    "export",
    "load_subnet",
    "load_supernet",
    "read_info",
    "read_supernet_meta",
    "resolve_supernet",
    "save_supernet",
    "verify_bundle",
    "versions",
]

FORMATS = ("safetensors", "onnx", "torchscript")
CHECKPOINT_FORMAT = "hwnas-checkpoint"  # a subnet checkpoint (arch.json)
CHECKPOINT_VERSION = 1
SUPERNET_FORMAT = "hwnas-supernet"  # a supernet checkpoint (supernet.json)


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
    ckpt_dir = checkpoint_dir(ckpt_dir)
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
    version = info.get("format_version", CHECKPOINT_VERSION)  # checkpoints before the field are version 1
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: format_version {version!r} is not one this hwnas reads (1..{CHECKPOINT_VERSION}); "
                              "it was written by another (newer?) hwnas: load it with that version")
    return info


def checkpoint_dir(path: str | Path) -> Path:
    """The folder of a checkpoint given as the folder or as its `arch.json` / `weights.safetensors`."""
    p = Path(path)
    if p.is_file() and p.name in ("arch.json", "weights.safetensors"):
        return p.parent  # the user pointed at a file of the checkpoint: the folder is meant
    if p.is_file():
        raise CheckpointError(f"{str(p)!r} is a file; pass the checkpoint folder (the one holding arch.json)")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint directory {str(p)!r} does not exist")
    return p


def load_subnet(ckpt_dir: str | Path, *, verify: bool = True, map_location: str | torch.device = "cpu") -> StaticNet:
    """Rebuild the static model of a checkpoint directory (eval mode), with no pickled code."""
    ckpt_dir = checkpoint_dir(ckpt_dir)
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


# ---- supernet checkpoints ----------------------------------------------------------------------
def save_supernet(net: Supernet, out_dir: str | os.PathLike, *, config: Any = None,
                  report: Mapping[str, Any] | None = None) -> Path:
    """Write `supernet.safetensors` + `supernet.json` (space dict, config, report) atomically."""
    from safetensors.torch import save as st_save

    out = Path(out_dir)
    # An EMA or DDP wrapper may hold the net; what is saved is always the plain Supernet's state.
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(out / "supernet.safetensors", st_save(sd))

    atomic_write_json(
        out / "supernet.json",
        {
            "format": SUPERNET_FORMAT,
            "version": 1,
            "space": net.space.to_dict(),
            "config": config.to_dict() if hasattr(config, "to_dict") else config,
            "report": dict(report or {}),
            "versions": versions(),
        },
    )
    return out / "supernet.safetensors"


BUNDLE_ROOT = Path(__file__).resolve().parents[1] / "results" / "supernets"
BUNDLE_FORMAT = "hwnas-supernet-bundle"


def bundle_names(root: Path = BUNDLE_ROOT) -> list[str]:
    """The shipped supernet bundles (`results/supernets/<space>/`), by name."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "supernet.json").is_file())


def resolve_supernet(name_or_path: str | os.PathLike) -> Path:
    """The folder of a supernet: a path to a folder (or to its supernet.json / .safetensors), or the
    name of a shipped bundle (`"fmnist-mbv3"` -> results/supernets/fmnist-mbv3)."""
    p = Path(name_or_path)
    if p.is_file() and p.name not in ("supernet.json", "supernet.safetensors"):
        raise CheckpointError(f"supernet {str(p)!r} is a file, not a supernet: pass the folder holding supernet.json "
                              "and supernet.safetensors (a `hwnas train` output) or a bundle name")
    if p.exists():
        return p if p.is_dir() else p.parent
    name = str(name_or_path)
    if "/" not in name and "\\" not in name and (BUNDLE_ROOT / name / "supernet.json").is_file():
        return BUNDLE_ROOT / name
    raise CheckpointError(f"no supernet at {name!r}: not a path that exists, nor a shipped bundle "
                          f"(shipped: {bundle_names() or 'none'})")


def verify_bundle(d: Path, meta: Mapping[str, Any]) -> None:
    """Check every file a bundle manifest lists against its SHA-256; raise CheckpointError naming
    the first one that is missing or altered."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{d / 'supernet.json'}: a bundle manifest must list its files with SHA-256")
    for name, digest in sorted(files.items()):
        f = d / name
        if "/" in name or not f.is_file():
            raise CheckpointError(f"bundle {d}: {name} listed in supernet.json is missing")
        if _sha256(f) != digest:
            raise CheckpointError(f"bundle {d}: {name} does not match its SHA-256 in supernet.json (altered or "
                                  "truncated); re-make the bundle with `hwnas train ... --bundle`")


def read_supernet_meta(name_or_path: str | os.PathLike, *, verify: bool = True, space: Space | str | None = None
                       ) -> tuple[Path, dict[str, Any]]:
    """(folder, parsed supernet.json) of a supernet checkpoint or bundle; a bundle's hashes are
    checked. A bundle named (not a path) must hold the space of its name, and `space` (a Space or
    preset name), when given, is the space the caller expects: anything else is refused."""
    d = resolve_supernet(name_or_path)
    meta_p = d / "supernet.json"
    if not meta_p.is_file() or not (d / "supernet.safetensors").is_file():
        raise CheckpointError(f"{str(name_or_path)!r} is not a supernet checkpoint: {d} needs supernet.json and "
                              "supernet.safetensors")
    try:
        meta = read_json(meta_p)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {meta_p}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") not in (SUPERNET_FORMAT, BUNDLE_FORMAT):
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_p} is not a supernet description (format {fmt!r})")
    if meta["format"] == BUNDLE_FORMAT and verify:
        verify_bundle(d, meta)
    held = (meta.get("space") or {}).get("name") if isinstance(meta.get("space"), dict) else None
    if not Path(name_or_path).exists() and held != str(name_or_path):
        raise CheckpointError(f"bundle {str(name_or_path)!r} ({d}) holds space {held!r}, not {str(name_or_path)!r}: "
                              "a bundle's folder is named after its space")
    if space is not None:
        want = Space.preset(space) if isinstance(space, str) else space
        if want.to_dict() != meta.get("space"):
            raise CheckpointError(f"supernet {str(name_or_path)!r} holds space {held!r}, not the expected space "
                                  f"{want.name!r} (or one that differs from it); pass the supernet of that space")
    return d, meta


def load_supernet(name_or_path: str | os.PathLike, *, space: Space | str | None = None, verify: bool = True) -> Supernet:
    """Rebuild a trained `Supernet` (no pickles) from a folder with `supernet.json` +
    `supernet.safetensors`, or a shipped bundle by name (`load_supernet("fmnist-mbv3")`).

    A bundle's files are checked against the SHA-256 in its manifest. `space` (a Space or a preset
    name) is the space the caller expects: a supernet of another space is refused; a bundle loaded
    by name must hold the space of that name.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d, meta = read_supernet_meta(name_or_path, verify=verify, space=space)
    try:
        held = Space.from_dict(meta["space"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{d / 'supernet.json'} does not describe a valid space: {e}") from None
    w_p = d / "supernet.safetensors"
    net = Supernet(held)
    try:
        sd = load_file(str(w_p))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {w_p}: {e}") from e
    if any(".kernel_weights." in k for k in sd):  # trained with `kernel_sharing: separate`
        net.separate_kernels()
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{w_p} does not match its space: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net
