"""Small file helpers shared by the indexer and the benchmarks."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path` to write; on success rename it over `path`, on failure remove it.

    A reader (or a process killed mid-write) sees the old file or the new one, never a truncated one. The
    temp name carries the pid, so processes writing the same path do not collide; `suffix` keeps writers
    that insist on an extension (np.save: .npy, np.savez: .npz) from appending one of their own."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
