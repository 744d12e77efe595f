"""Datasets: Fashion-MNIST IDX files (real), split, loaders, CIFAR-10 batches, image folders, errors."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from hwnas.data import (
    DEBIAN_FMNIST_DIR,
    TensorLoader,
    load_cifar10,
    load_fashion_mnist,
    load_image_folder,
    make_loaders,
    split_indices,
)
from hwnas.errors import DataError

needs_fmnist = pytest.mark.skipif(
    not (DEBIAN_FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST Debian files not in {DEBIAN_FMNIST_DIR}",
)


def _write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@needs_fmnist
def test_fashion_mnist_from_debian_files():
    tx, ty, vx, vy = load_fashion_mnist(download=False)
    assert tx.shape == (60000, 28, 28) and tx.dtype == np.uint8
    assert vx.shape == (10000, 28, 28) and ty.shape == (60000,) and vy.shape == (10000,)
    assert set(np.unique(ty)) == set(range(10))


def test_idx_from_data_dir_and_env(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    tx, ty, vx, vy = load_fashion_mnist(tmp_path, download=False)
    assert tx.shape == (30, 28, 28) and vy.shape == (10,)
    monkeypatch.setenv("HWNAS_DATA_DIR", str(tmp_path))
    assert load_fashion_mnist(download=False)[0].shape == (30, 28, 28)


def test_missing_data_names_three_ways(tmp_path):
    with pytest.raises(DataError) as e:
        load_fashion_mnist(tmp_path / "nothing", download=False)
    msg = str(e.value)
    assert "--data-dir" in msg and "HWNAS_DATA_DIR" in msg and "fashion-mnist" in msg and "download" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_truncated_idx_is_refused(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    for name, arr in (("train-labels-idx1-ubyte.gz", np.zeros(5)), ("t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28))),
                      ("t10k-labels-idx1-ubyte.gz", np.zeros(2))):
        _write_idx(tmp_path / name, arr)
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist(tmp_path, download=False)


def test_split_is_fixed_and_disjoint():
    a_tr, a_va = split_indices(1000, 100, seed=3)
    b_tr, b_va = split_indices(1000, 100, seed=3)
    assert np.array_equal(a_tr, b_tr) and np.array_equal(a_va, b_va)
    assert len(a_va) == 100 and len(np.intersect1d(a_tr, a_va)) == 0 and len(a_tr) + len(a_va) == 1000
    assert not np.array_equal(split_indices(1000, 100, seed=4)[1], a_va)
    with pytest.raises(ValueError, match="search_val"):
        split_indices(10, 10)


@needs_fmnist
def test_make_loaders_split_and_normalisation():
    from hwnas.search_space import Space

    space = Space.preset("fmnist-mbv3")
    ld = make_loaders(batch_size=64, space=space, subset=2000)
    assert ld.train.num_images == 2000 and ld.val.num_images == 5000 and ld.test.num_images == 10000
    assert ld.num_classes == 10 and ld.in_channels == 1
    x, y = next(iter(ld.train))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    full = make_loaders(batch_size=500, space=space)
    assert full.train.num_images == 55000
    # normalised with the space's statistics: mean ~0, std ~1 over the training images
    m, s = full.train.x.mean().item(), full.train.x.std().item()
    assert abs(m) < 0.05 and abs(s - 1) < 0.05


def test_tensor_loader_order_is_a_function_of_seed_and_epoch():
    x, y = torch.arange(100.0).view(100, 1, 1, 1), torch.arange(100)
    a = TensorLoader(x, y, batch_size=10, shuffle=True, seed=1, drop_last=True)
    b = TensorLoader(x, y, batch_size=10, shuffle=True, seed=1, drop_last=True)
    a.set_epoch(2), b.set_epoch(2)
    assert all(torch.equal(p[1], q[1]) for p, q in zip(a, b))
    ys = torch.cat([yy for _, yy in a])
    assert sorted(ys.tolist()) == list(range(100))
    b.set_epoch(3)
    assert not torch.equal(ys, torch.cat([yy for _, yy in b]))
    capped = TensorLoader(x, y, batch_size=10, shuffle=True, steps_per_epoch=3)
    assert len(capped) == 3 and len(list(capped)) == 3
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, batch_size=0)


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
        (root / name).write_bytes(pickle.dumps(d))
    tx, ty, vx, vy = load_cifar10(tmp_path)
    assert tx.shape == (20, 3, 32, 32) and vx.shape == (4, 3, 32, 32) and ty.shape == (20,)
    ld = make_loaders("cifar10", tmp_path, batch_size=4, search_val=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert ld.train.x.shape == (16, 3, 32, 32) and ld.in_channels == 3


def test_cifar_unpickler_refuses_code(tmp_path):
    root = tmp_path
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    (root / "data_batch_1").write_bytes(pickle.dumps({"data": print, "labels": [0]}))
    with pytest.raises(DataError, match="refusing"):
        load_cifar10(root)
    with pytest.raises(DataError, match="missing"):
        load_cifar10(tmp_path / "none")


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    tx, ty, vx, vy, classes = load_image_folder(tmp_path, size=16)
    assert classes == ["cat", "dog"] and tx.shape == (4, 3, 16, 16) and sorted(ty.tolist()) == [0, 0, 1, 1]
    with pytest.raises(DataError, match="train/<class>"):
        load_image_folder(tmp_path / "train")
