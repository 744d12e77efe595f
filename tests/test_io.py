"""Atomic outputs: a replace leaves nothing behind, and files and folders get the user's umask."""

from __future__ import annotations

import os
import stat

import pytest
from hwnas._io import atomic_dir, atomic_write_bytes, umask


@pytest.fixture
def mask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.parametrize("old_kind", ["file", "folder", "none"])
def test_overwrite_replaces_a_file_or_folder_cleanly(tmp_path, old_kind) -> None:
    final = tmp_path / "out"
    if old_kind == "file":
        final.write_text("old file")
    elif old_kind == "folder":
        (final / "sub").mkdir(parents=True)
        (final / "sub" / "old.txt").write_text("old")
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "weights.bin").write_bytes(b"new")
    assert final.is_dir() and sorted(p.name for p in final.iterdir()) == ["weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .old-out-PID, no .tmp-out-...


def test_without_overwrite_an_existing_output_stays(tmp_path) -> None:
    final = tmp_path / "out"
    final.write_text("keep")
    with pytest.raises(FileExistsError), atomic_dir(final) as tmp:
        (tmp / "x").write_text("new")
    assert final.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_follow_the_umask(tmp_path, mask_027) -> None:
    assert umask() == 0o027
    f = atomic_write_bytes(tmp_path / "a.json", b"{}")
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert stat.S_IMODE(f.stat().st_mode) == 0o640  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o750  # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "ckpt" / "w.bin").stat().st_mode) == 0o640


def test_export_overwrite_onto_a_file_leaves_no_debris(tmp_path, mask_027) -> None:
    from hwnas.search_space import Space
    from hwnas.supernet import build_static, export, load_subnet

    space = Space.preset("fmnist-mbv3")
    arch = space.min_arch()
    out = tmp_path / "subnet"
    out.write_text("a file where the export goes")
    export(build_static(space, arch), arch, out, space=space, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subnet"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "weights.safetensors").stat().st_mode) == 0o640
    # the folder or its arch.json both load
    assert load_subnet(out / "arch.json").arch_string == load_subnet(out).arch_string == arch.to_string()
