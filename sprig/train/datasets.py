"""Training and dev data by name: "DATASET:SPLIT" under a data folder of BEIR sets, test splits refused.

Test qrels are for reporting only; a trainer that can read them can be selected on them by accident, so a
``test`` split is an error here rather than a convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sprig.core.errors import SprigError
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus, read_qrels, read_queries


@dataclass(frozen=True)
class Judged:
    """One BEIR set's split: document texts by id, query texts by id, and the split's qrels."""

    name: str
    split: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def parse_split(spec: str, option: str) -> tuple[str, str]:
    """"scifact:train" -> ("scifact", "train"); ``option`` names the setting in the error."""
    name, sep, split = spec.partition(":")
    if not sep or not name or not split:
        raise SprigError(f"{option} '{spec}' is not DATASET:SPLIT (e.g. scifact:train)")
    if split == "test":
        raise SprigError(f"{option} '{spec}': test qrels are for reporting only; train on train splits and select on a dev split")
    return name, split


def load_judged(data_root: Path, spec: str, option: str) -> Judged:
    """A split's documents, queries and qrels (a missing folder or split is a one-line InputError from the readers)."""
    name, split = parse_split(spec, option)
    folder = data_root / name
    if not folder.is_dir():
        raise SprigError(f"{option} '{spec}': no dataset folder {folder} (a BEIR folder: corpus.jsonl, queries.jsonl, qrels/)")
    qrels = read_qrels(folder, split)
    docs = {d.doc_id: passage_text(d) for d in read_corpus(folder, fmt="beir")}
    return Judged(name, split, docs, read_queries(folder), qrels)
