"""Small I/O helpers shared by every component: atomic writes and JSON."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_dir", "read_json", "read_yaml_mapping",
           "replace_path", "apply_umask", "umask"]


def umask() -> int:
    """The process umask. Linux shows it in /proc (read without changing it, so no thread sees a
    umask of 0 meanwhile); elsewhere it is set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def apply_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give a file or folder made by mkstemp / mkdtemp (0600 / 0700, private by design for the
    temporary name) the mode a plain open() / mkdir() would: 0666 / 0777 less the umask. An
    output is for the user's other tools and colleagues, like every other program's."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never half.

    The file gets the mode the umask gives new files (not mkstemp's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_umask(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception]) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (`yaml.safe_load`; empty file -> {}).

    A missing file, invalid YAML or another top level raise `error` naming `what` and the path.
    """
    import yaml

    p = Path(path)
    if p.is_dir():
        raise error(f"{what} {str(p)!r} is a directory; expected a YAML file")
    if not p.is_file():
        raise error(f"{what} {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {str(p)!r} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise error(f"{what} {str(p)!r} cannot be read: {e.strerror or e}") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # PyYAML's own text spans several lines (context, a quoted snippet, a caret): errors are one line.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(e, "problem", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise error(f"{what} {str(p)!r} is not valid YAML: {why}{where}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise error(f"{what} {str(p)!r} must hold a mapping at the top level, not {type(d).__name__}")
    return d


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class atomic_dir:
    """Context manager: build a directory under a temporary name, rename it into place on success.

    On an exception (or a kill) the final path is never created; the temporary directory is
    removed on exceptions and carries a `.tmp-` prefix so a later run can clean it up.
    """

    def __init__(self, final: str | os.PathLike, *, overwrite: bool = False):
        self.final = Path(final)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.final.name}-", dir=self.final.parent))
        apply_umask(self.tmp, directory=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        # Files written inside by libraries that use mkstemp-like modes get the umask's mode too.
        for p in self.tmp.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o777 == 0o600:
                apply_umask(p)
        if not (self.final.exists() or self.final.is_symlink()):
            os.replace(self.tmp, self.final)
            return
        if not self.overwrite:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise FileExistsError(f"{self.final} already exists")
        replace_path(self.tmp, self.final)


def replace_path(new: Path, final: Path) -> None:
    """Put `new` (a file or folder) at `final`, which exists (a file, folder or link), leaving nothing else.

    Where the kernel can (Linux renameat2 RENAME_EXCHANGE), the two swap in one atomic step and
    the old one, now under the new one's temporary name, is removed. Elsewhere the old one moves
    aside under a hidden name first; a failure in between puts it back. Either way no
    `.old-` name outlives the call, whatever the old one was.
    """
    if _exchange(new, final):
        _remove(new)  # `new` now names the old content
        return
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    _remove(old)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # an old glibc without the wrapper
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), ctypes.c_uint(rename_exchange))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):  # filesystem cannot: fall back
        return False
    raise OSError(err, os.strerror(err), str(b))
