"""Find a BEIR dataset on disk, or fetch it from the Hugging Face hub into the BEIR layout.

The shared evaluation folder wins when present (offline machines); otherwise `datasets` downloads
BeIR/<name> (corpus, queries) and BeIR/<name>-qrels and writes corpus.jsonl, queries.jsonl and
qrels/<split>.tsv under the cache folder.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from sprig.core.errors import SprigError

SHARED = Path(os.environ.get("SPRIG_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
CACHE = Path(os.environ.get("SPRIG_CACHE", Path.home() / ".cache" / "sprig" / "datasets"))


def locate_beir(name: str) -> Path:
    for folder in (SHARED / name, CACHE / name):
        if (folder / "corpus.jsonl").is_file():
            return folder
    return download_beir(name, CACHE / name)


def download_beir(name: str, target: Path) -> Path:
    try:
        from datasets import load_dataset

        corpus = load_dataset(f"BeIR/{name}", "corpus", split="corpus")
        queries = load_dataset(f"BeIR/{name}", "queries", split="queries")
        qrels = load_dataset(f"BeIR/{name}-qrels")
    except Exception as exc:  # the hub raises many types; every one means "not reachable here"
        raise SprigError(f"dataset '{name}' is not in {SHARED} and could not be downloaded from the hub ({type(exc).__name__}: {str(exc)[:120]})") from None
    tmp = target.with_name(target.name + ".partial")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    with (tmp / "corpus.jsonl").open("w") as fh:
        for row in corpus:
            fh.write(json.dumps({"_id": row["_id"], "title": row.get("title", ""), "text": row["text"]}) + "\n")
    with (tmp / "queries.jsonl").open("w") as fh:
        for row in queries:
            fh.write(json.dumps({"_id": row["_id"], "text": row["text"]}) + "\n")
    for split, rows in qrels.items():
        with (tmp / "qrels" / f"{split}.tsv").open("w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t")
            writer.writerow(["query-id", "corpus-id", "score"])
            writer.writerows((r["query-id"], r["corpus-id"], r["score"]) for r in rows)
    tmp.rename(target)
    return target


if __name__ == "__main__":  # `make demo`: the folder's path on stdout, or one line on stderr and exit code 2
    import sys

    name = sys.argv[1] if len(sys.argv) > 1 else "scifact"
    try:
        print(locate_beir(name))
    except SprigError as exc:
        sys.exit(f"error: {exc}; set SPRIG_DATA to a folder holding {name}/")
