"""Small file helpers shared by the indexer and the benchmarks."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write aside, then rename: a reader (or a process killed mid-write) sees the old file or the new one,
    never a truncated one. The temp name carries the pid, so processes writing the same path do not collide."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
