"""manifest.json: what an index directory holds and how it was built.

It records the format version, each encoder's settings, counts, and a size + SHA-256 for every index
file, so opening an index whose files do not match (a copy cut short, a file from another build) is a
clear ``IndexCorrupt`` rather than wrong results. docs.sqlite is left out of the checksums: it changes
with every document write and SQLite guards its own pages.

Versioning. ``VERSION`` counts layouts of the index directory. Bump it when a file an existing reader
opens changes its layout or meaning (a column type, an array's dtype, how an impact is quantised), so
an older reader would misread it; then this reader refuses the older index with a one-line "rebuild"
message (no silent conversion). Parts an older reader can do without (chunk vectors, stored IDF) do
not bump it: they are named in ``features`` and a reader refuses an index that lists a feature it does
not know, so a newer index never loses data silently under an older sprig. The sparse engine's
segments carry their own version (sprig.index.sparse_format.VERSION) by the same rule.
History: 1 = the layout of sprig 0.1 (unchanged by the move to one ``sprig`` package).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sprig.core.errors import IndexCorrupt
from sprig.core.files import write_text_atomic

FORMAT = "sprig-index"
VERSION = 1
FEATURES: frozenset[str] = frozenset({"sentence_vectors", "idf", "chunk_vectors"})  # optional parts this reader understands (idf: inference-free corpus IDF; chunk_vectors: REFRAG chunk embeddings)
MANIFEST = "manifest.json"
DOCSTORE = "docs.sqlite"
_CHECKED_DIRS = ("sparse", "dense")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict:
    """What a manifest records of a file: its size and SHA-256."""
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def check_file(path: Path, want: dict, verify: bool, manifest: Path) -> None:
    """Raise IndexCorrupt naming ``path`` unless it exists with the recorded size (and hash, with ``verify``)."""
    if not path.is_file():
        raise IndexCorrupt(f"{path}: listed in {manifest} but missing")
    if path.stat().st_size != want["size"]:
        raise IndexCorrupt(f"{path}: {path.stat().st_size} bytes, the manifest says {want['size']} ({manifest}; truncated or replaced)")
    if verify and _sha256(path) != want["sha256"]:
        raise IndexCorrupt(f"{path}: SHA-256 does not match {manifest} (the file was modified)")


def checksums(index_dir: Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} for every file under sparse/ and dense/."""
    out = {}
    for sub in _CHECKED_DIRS:
        for path in sorted((index_dir / sub).rglob("*")):
            if path.is_file():
                out[path.relative_to(index_dir).as_posix()] = file_record(path)
    return out


def write_manifest(index_dir: Path, manifest: dict) -> dict:
    """Fill in format, version and checksums, then write manifest.json atomically (temp file + rename)."""
    features = sorted(FEATURES & set(manifest))
    manifest = {**manifest, "format": FORMAT, "version": VERSION, "features": features, "checksums": checksums(index_dir)}
    write_text_atomic(index_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(index_dir: str | Path, verify: bool = False, check_files: bool = True) -> dict:
    """Load and check a manifest: format and version always, file sizes unless ``check_files`` is off (an
    interrupted write, rolled back by sprig.index.reader, left them out of step), SHA-256 when ``verify``."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not path.is_file():
        hint = " (a build was interrupted: rerun `sprig index ... --resume`)" if Path(f"{index_dir}.partial").exists() else ""
        raise IndexCorrupt(f"{path}: not found; is {index_dir} a sprig index?{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise IndexCorrupt(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; this sprig reads {FORMAT!r} version {VERSION}: "
            f"rebuild it with `sprig index CORPUS --out {index_dir}`"
        )
    unknown = sorted(set(manifest.get("features", [])) - FEATURES)
    if unknown:
        raise IndexCorrupt(f"{path}: uses {', '.join(unknown)}, which this sprig does not know: upgrade sprig or rebuild the index")
    if not (index_dir / DOCSTORE).is_file():
        raise IndexCorrupt(f"{index_dir / DOCSTORE}: passage store missing")
    for rel, want in manifest.get("checksums", {}).items() if check_files else ():
        check_file(index_dir / rel, want, verify, path)
    return manifest
