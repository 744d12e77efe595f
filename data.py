"""Datasets for supernet training and search: Fashion-MNIST (default), CIFAR-10, image folders.

Everything is held in memory as one normalised float tensor and batched by indexing: on a
2-core CPU this is several times faster than a `DataLoader` with worker processes, and it makes
every epoch's order a pure function of `(seed, epoch)`, which exact resume and DDP need.

Fashion-MNIST is looked for, in order, in `data_dir`, `$HWNAS_DATA_DIR`, the Debian package `dataset-fashion-mnist`'s
`/usr/share/datasets/fashion-mnist`, and `~/.cache/hwnas/fashion-mnist`; where none has it and
`download=True`, it is downloaded into the cache (only where the internet answers).

The training set is split once, with a fixed seed, into a training part and a held-out
"search validation" part (55k / 5k for Fashion-MNIST): searches rank subnets on the held-out
part; the official test set is only for reporting.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hwnas.errors import DataError

__all__ = [
    "DATASETS",
    "DEBIAN_FMNIST_DIR",
    "TensorLoader",
    "Loaders",
    "load_fashion_mnist",
    "load_cifar10",
    "load_image_folder",
    "load_dataset",
    "make_loaders",
    "split_indices",
]

DATASETS = ("fashion-mnist", "cifar10", "folder")
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwnas"
FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}

_HOW_TO_PROVIDE = (
    "provide it one of three ways: (1) install the Debian package `dataset-fashion-mnist` "
    f"(files in {DEBIAN_FMNIST_DIR}), (2) put the four IDX files "
    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...) in a folder and pass "
    "--data-dir DIR or set HWNAS_DATA_DIR, (3) run where the internet is reachable so it is "
    f"downloaded into {CACHE_DIR / 'fashion-mnist'}"
)


# ---- IDX (MNIST-family) files ----------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if len(data) < 4:
        raise DataError(f"{path} is truncated ({len(data)} bytes)")
    zero, dtype, ndim = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = folder / name
        if p.is_file():
            return p
    return None


def _fmnist_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]  # an explicit folder is the only place looked at
    dirs = []
    if os.environ.get("HWNAS_DATA_DIR"):
        env = Path(os.environ["HWNAS_DATA_DIR"]).expanduser()
        dirs += [env, env / "fashion-mnist"]
    return dirs + [DEBIAN_FMNIST_DIR, CACHE_DIR / "fashion-mnist"]


def _download_fmnist(dest: Path, timeout: float = 10.0) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in FMNIST_FILES.values():
        target = dest / (stem + ".gz")
        if target.is_file():
            continue
        with urllib.request.urlopen(FMNIST_URL + stem + ".gz", timeout=timeout) as r:  # noqa: S310 - fixed https/http URL
            payload = r.read()
        tmp = target.with_suffix(".gz.part")
        tmp.write_bytes(payload)
        os.replace(tmp, target)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as `(train_x uint8 [60000,28,28], train_y int64, test_x [10000,28,28], test_y)`."""
    for folder in _fmnist_dirs(data_dir):
        paths = {k: _find_idx(folder, stem) for k, stem in FMNIST_FILES.items()}
        if all(paths.values()):
            break
    else:
        if not download:
            where = ", ".join(str(d) for d in _fmnist_dirs(data_dir))
            raise DataError(f"Fashion-MNIST not found (looked in {where}); {_HOW_TO_PROVIDE}")
        folder = Path(data_dir).expanduser() if data_dir is not None else CACHE_DIR / "fashion-mnist"
        try:
            _download_fmnist(folder)
        except OSError as e:
            where = ", ".join(str(d) for d in _fmnist_dirs(data_dir))
            raise DataError(
                f"Fashion-MNIST not found (looked in {where}) and the download from {FMNIST_URL} failed "
                f"({e}); {_HOW_TO_PROVIDE}"
            ) from e
        paths = {k: _find_idx(folder, stem) for k, stem in FMNIST_FILES.items()}
    arrays = {k: _read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"Fashion-MNIST {split} files disagree: images {x.shape}, labels {y.shape}")
    return arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"], arrays["test_y"].astype(np.int64)


# ---- CIFAR-10 python batches ------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches (dicts of numpy arrays and lists) and refuses everything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name} from a CIFAR batch file (only numpy arrays allowed)")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e}") from e
    x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(d["labels"], dtype=np.int64)
    return x, y


def load_cifar10(data_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 from its python batches (`data_batch_1..5`, `test_batch`): uint8 [N,3,32,32] + labels."""
    root = Path(data_dir).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train = [root / f"data_batch_{i}" for i in range(1, 6)]
    missing = [p.name for p in [*train, root / "test_batch"] if not p.is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 python batches missing in {root}: {missing}; download cifar-10-python.tar.gz "
            "from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass --data-dir"
        )
    parts = [_read_cifar_batch(p) for p in train]
    tx, ty = _read_cifar_batch(root / "test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tx, ty


# ---- image folders -----------------------------------------------------------------------------
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _read_folder(root: Path, classes: Sequence[str], size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, cls in enumerate(classes):
        for p in sorted((root / cls).rglob("*")):
            if p.suffix.lower() not in _IMAGE_EXT:
                continue
            try:
                with Image.open(p) as im:
                    im = im.convert(mode).resize((size, size), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.uint8)
            except OSError as e:
                raise DataError(f"cannot read image {p}: {e}") from e
            xs.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DataError(f"no images ({sorted(_IMAGE_EXT)}) under {root}")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_image_folder(
    data_dir: str | os.PathLike, *, size: int = 32, channels: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Images in `DIR/train/<class>/*` and `DIR/test/<class>/*` (ImageFolder layout), resized to `size`.

    Returns `(train_x uint8 [N,C,H,W], train_y, test_x, test_y, class_names)`.
    """
    root = Path(data_dir).expanduser()
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise DataError(f"image folder {root} needs train/<class>/ and test/<class>/ sub-folders")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"no class folders under {train_dir}")
    tx, ty = _read_folder(train_dir, classes, size, channels)
    vx, vy = _read_folder(test_dir, classes, size, channels)
    return tx, ty, vx, vy, classes


def load_dataset(
    dataset: str = "fashion-mnist", data_dir: str | os.PathLike | None = None, *, download: bool = True, **kw: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Any supported dataset as uint8 arrays `(train_x, train_y, test_x, test_y)`; images [N,C,H,W] or [N,H,W]."""
    if dataset == "fashion-mnist":
        return load_fashion_mnist(data_dir, download=download)
    if dataset == "cifar10":
        if data_dir is None:
            data_dir = os.environ.get("HWNAS_DATA_DIR")
        if data_dir is None:
            raise DataError("CIFAR-10 needs --data-dir (or HWNAS_DATA_DIR) pointing at cifar-10-batches-py")
        return load_cifar10(data_dir)
    if dataset == "folder":
        if data_dir is None:
            raise DataError("dataset 'folder' needs --data-dir DIR with train/<class>/ and test/<class>/")
        return load_image_folder(data_dir, **kw)[:4]
    raise DataError(f"unknown dataset {dataset!r}; allowed: {list(DATASETS)}")


# ---- in-memory loaders -------------------------------------------------------------------------
def split_indices(n: int, held_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of range(n) into (train, held-out) index arrays."""
    if not 0 <= held_out < n:
        raise ValueError(f"search_val must be in [0, {n}), got {held_out}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[held_out:]), np.sort(perm[:held_out])


def _to_tensor(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))  # IDX arrays are read-only views
    if t.ndim == 3:
        t = t[:, None]
    if t.shape[1] != len(mean):
        raise DataError(f"images have {t.shape[1]} channels but the normalisation has {len(mean)} (mean {list(mean)})")
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((t.float() / 255.0) - m) / s


class TensorLoader:
    """Batches of `(images, labels)` from in-memory tensors; shuffled per epoch from `(seed, epoch)`.

    `set_epoch(e)` picks the order (the same on every DDP rank: each rank takes its own slice of
    the global batch). `steps_per_epoch` caps an epoch to that many batches (a data subset per epoch).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        steps_per_epoch: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(x) != len(y):
            raise ValueError(f"images ({len(x)}) and labels ({len(y)}) differ in length")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    @property
    def num_images(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.x)
        full = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return full if self.steps_per_epoch is None else min(full, self.steps_per_epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = None
        bs = self.batch_size
        for i in range(len(self)):
            if order is None:
                yield self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = order[i * bs : (i + 1) * bs]
                yield self.x[idx], self.y[idx]

    def images(self, n: int) -> torch.Tensor:
        """The first `n` images in a fixed order (from `seed`): what BN recalibration uses."""
        g = torch.Generator().manual_seed(self.seed + 7)
        idx = torch.randperm(len(self.x), generator=g)[: min(n, len(self.x))]
        return self.x[idx]


@dataclass(frozen=True)
class Loaders:
    """The three loaders of a run: `train`, `val` (held-out search validation) and `test`."""

    train: TensorLoader
    val: TensorLoader
    test: TensorLoader
    num_classes: int
    in_channels: int

    def calib_images(self, n: int = 2000) -> torch.Tensor:
        """Fixed training images for BN recalibration."""
        return self.train.images(n)


def make_loaders(
    dataset: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 128,
    eval_batch_size: int = 500,
    search_val: int = 5000,
    seed: int = 0,
    subset: int | None = None,
    steps_per_epoch: int | None = None,
    space: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    download: bool = True,
    drop_last: bool = True,
) -> Loaders:
    """Train / search-validation / test loaders, normalised with the space's (or given) mean and std.

    The split of the training set into train and `search_val` held-out images is fixed by `seed`.
    `subset` keeps only that many (seeded) training images, for quick runs and tests.
    """
    if space is not None:
        mean, std = space.mean, space.std
    train_x, train_y, test_x, test_y = load_dataset(dataset, data_dir, download=download)
    channels = 1 if train_x.ndim == 3 else train_x.shape[1]
    if mean is None or std is None:
        mean, std = (0.5,) * channels, (0.5,) * channels
    tr, va = split_indices(len(train_x), search_val, seed)
    if subset is not None:
        if subset < 1:
            raise ValueError(f"subset must be >= 1 or None, got {subset}")
        tr = np.sort(np.random.default_rng(seed + 1).permutation(tr)[: min(subset, len(tr))])
    x_all = _to_tensor(train_x, mean, std)
    y_all = torch.from_numpy(train_y.astype(np.int64))
    tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
    train = TensorLoader(
        x_all[tr_t].contiguous(), y_all[tr_t], batch_size=batch_size, shuffle=True, drop_last=drop_last and len(tr) >= batch_size,
        seed=seed, steps_per_epoch=steps_per_epoch,
    )
    val = TensorLoader(x_all[va_t].contiguous(), y_all[va_t], batch_size=eval_batch_size)
    test = TensorLoader(_to_tensor(test_x, mean, std), torch.from_numpy(test_y.astype(np.int64)), batch_size=eval_batch_size)
    return Loaders(train, val, test, int(max(train_y.max(), test_y.max()) + 1), channels)
