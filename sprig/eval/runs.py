"""TREC run files: one line per hit, `qid Q0 docid rank score tag`, ranked by (-score, docid)."""
from __future__ import annotations

from pathlib import Path

Run = dict[str, dict[str, float]]  # query id -> {doc id: score}


def ranked(hits: dict[str, float]) -> list[tuple[str, float]]:
    """Score descending, ties broken by doc id ascending (pyserini's tie-breaker), so runs are reproducible."""
    return sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))


def write_trec(run: Run, path: str | Path, tag: str = "sprig") -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for qid in sorted(run):
            for rank, (doc_id, score) in enumerate(ranked(run[qid]), 1):
                fh.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
    tmp.replace(path)


def read_trec(path: str | Path) -> Run:
    run: Run = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            qid, _, doc_id, _, score, _ = line.split()
            run.setdefault(qid, {})[doc_id] = float(score)
    return run
