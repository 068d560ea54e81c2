"""Small file helpers shared by the indexer and the benchmarks: writes that a crash cannot leave half done."""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path` to write (a file or a directory); on success rename it over `path`, on
    failure remove it.

    A reader (or a process killed mid-write) sees the old file or the new one, never a truncated one. The
    temp name carries the pid, so processes writing the same path do not collide; `suffix` keeps writers
    that insist on an extension (np.save: .npy, np.savez: .npz) from appending one of their own."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(src: Path, dst: Path) -> None:
    """Move the directory `src` to `dst`, replacing the directory there, so that `dst` is never missing.

    On Linux the two are exchanged in one step, so a reader, or a process killed mid-swap, finds the old
    directory or the new one at `dst`; elsewhere the old one is renamed aside first (a short window
    without `dst`). The old one is removed last, from ``<dst>.old``, where a killed swap's leftover is
    removed by the next swap."""
    aside = dst.with_name(dst.name + ".old")
    shutil.rmtree(aside, ignore_errors=True)
    if not dst.exists():
        os.rename(src, dst)
        return
    if _exchange(src, dst):
        os.rename(src, aside)
    else:
        os.rename(dst, aside)
        os.rename(src, dst)
    shutil.rmtree(aside)
