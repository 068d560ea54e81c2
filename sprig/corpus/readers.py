"""Corpus, query and qrels readers: the one way sprig reads text in.

Formats: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), a jsonl file with configurable
field names, or a folder of .txt/.md files. Malformed input raises InputError naming file and line;
documents with empty text are kept and counted (ReadStats), never dropped silently.
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sprig.core.config import CORPUS_FORMATS, CorpusFormat
from sprig.core.errors import InputError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")


@dataclass
class Document:
    doc_id: str
    title: str
    text: str
    metadata: dict = field(default_factory=dict)


@dataclass
class ReadStats:
    """What a reader saw; empty documents are reported here rather than skipped."""

    documents: int = 0
    empty: int = 0
    empty_ids: list[str] = field(default_factory=list)

    def count(self, doc: Document) -> None:
        self.documents += 1
        if not (doc.text.strip() or doc.title.strip()):
            self.empty += 1
            if len(self.empty_ids) < 20:
                self.empty_ids.append(doc.doc_id)


def corpus_path(path: str | Path) -> Path:
    """``path`` as a Path; an empty string is an error, since Path("") is the working directory, which must never be
    indexed by accident (a failed `$(...)` in a shell command leaves an empty argument)."""
    if not str(path).strip():
        raise InputError("the corpus path is empty (expected a BEIR folder, a .jsonl file or a folder of .txt/.md files)")
    return Path(path)


def detect_format(path: Path) -> CorpusFormat:
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "text"
    if path.is_file():
        return "jsonl"
    raise InputError("no such file or folder (expected a BEIR folder, a .jsonl file or a folder of .txt/.md files)", str(path))


def read_corpus(
    path: str | Path,
    fmt: CorpusFormat = "auto",
    id_field: str = "_id",
    title_field: str = "title",
    text_field: str = "text",
    stats: ReadStats | None = None,
) -> Iterator[Document]:
    """Yield the documents of a corpus in file order."""
    path = corpus_path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    stats = stats if stats is not None else ReadStats()
    if fmt == "beir":
        docs = _read_jsonl_docs(path / "corpus.jsonl", "_id", "title", "text")
    elif fmt == "jsonl":
        docs = _read_jsonl_docs(path, id_field, title_field, text_field)
    elif fmt == "text":
        docs = _read_text_folder(path)
    else:
        raise InputError(f"unknown corpus format '{fmt}' (expected one of {', '.join(CORPUS_FORMATS)})")
    seen: set[str] = set()
    for doc in docs:
        if doc.doc_id in seen:
            raise InputError(f"duplicate document id '{doc.doc_id}'", str(path))
        seen.add(doc.doc_id)
        stats.count(doc)
        yield doc
    if stats.empty:
        log.warning("%s: %d of %d documents have empty text (kept; e.g. %s)", path, stats.empty, stats.documents, ", ".join(stats.empty_ids[:5]))


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise InputError("file not found", str(path))
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON ({exc.msg} at column {exc.colno})", str(path), line_no) from None
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, got {type(record).__name__}", str(path), line_no)
            yield line_no, record


def _field(record: dict, name: str, path: Path, line_no: int, required: bool) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise InputError(f"missing field '{name}' (fields present: {', '.join(sorted(record)) or 'none'})", str(path), line_no)
        return ""
    if not isinstance(value, (str, int, float)):
        raise InputError(f"field '{name}' should be text, got {type(value).__name__}", str(path), line_no)
    return str(value)


def _read_jsonl_docs(path: Path, id_field: str, title_field: str, text_field: str) -> Iterator[Document]:
    for line_no, record in _jsonl_records(path):
        doc_id = _field(record, id_field, path, line_no, required=True)
        text = _field(record, text_field, path, line_no, required=True)
        title = _field(record, title_field, path, line_no, required=False)
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        yield Document(doc_id, title.strip(), text, metadata)


def _read_text_folder(path: Path) -> Iterator[Document]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InputError("no .txt or .md files found", str(path))
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", str(file)) from None
        rel = file.relative_to(path).as_posix()
        yield Document(doc_id=rel, title=file.stem.replace("_", " "), text=text, metadata={"path": rel})


def read_queries(path: str | Path) -> dict[str, str]:
    """BEIR queries.jsonl (or a BEIR folder) -> {query id: text}."""
    path = Path(path)
    path = path / "queries.jsonl" if path.is_dir() else path
    return {
        _field(r, "_id", path, n, True): _field(r, "text", path, n, True) for n, r in _jsonl_records(path)
    }


def read_qrels(path: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """BEIR qrels tsv (or a BEIR folder + split) -> {query id: {doc id: relevance}}."""
    path = Path(path)
    if path.is_dir():
        qrels_dir = path / "qrels"
        if not qrels_dir.is_dir():
            raise InputError("no qrels/ folder (expected a BEIR dataset: corpus.jsonl, queries.jsonl, qrels/<split>.tsv)", str(path))
        path = qrels_dir / f"{split}.tsv"
        if not path.is_file():
            have = ", ".join(sorted(p.stem for p in qrels_dir.glob("*.tsv"))) or "none"
            raise InputError(f"no qrels for split '{split}' (splits present: {have})", str(path))
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or (line_no == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise InputError(f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}", str(path), line_no)
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError:
                raise InputError(f"relevance '{row[2]}' is not an integer", str(path), line_no) from None
    return qrels
