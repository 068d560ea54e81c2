"""The one data split every REFRAG training stage obeys: squad-a articles 16-23 are the evaluation set and
are never trained on, by reconstruction, continual pre-training or QA fine-tuning.

squad-a passage ids are "<article>-<paragraph>" (article = index in the official SQuAD v1.1 dev order), and a
squad-a question belongs to the article of its gold paragraph (qrels/test.tsv). Other corpora (scifact,
nfcorpus) hold no evaluation questions, so all of their text is training text.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from sprig.core.errors import InputError
from sprig.corpus.readers import Document, read_corpus, read_qrels

SQUAD = "squad-a"  # the BEIR folder whose articles are split
TRAIN_ARTICLES = range(0, 16)
EVAL_ARTICLES = range(16, 24)
TRAINING_CORPORA = ("scifact", "nfcorpus", SQUAD)  # the text of stages (a) and (b), BEIR folders under a data folder


def squad_article(passage_id: str) -> int:
    """The article of a squad-a passage id "<article>-<paragraph>"."""
    head, dash, _ = passage_id.partition("-")
    if not dash or not head.isdigit():
        raise InputError(f"not a squad-a passage id (expected '<article>-<paragraph>'): '{passage_id}'", SQUAD)
    return int(head)


def is_training_text(corpus: str, passage_id: str) -> bool:
    """Whether a passage of ``corpus`` (a folder name) may be trained on: all but squad-a's evaluation articles."""
    return corpus != SQUAD or squad_article(passage_id) in TRAIN_ARTICLES


def training_documents(corpora: Iterable[str | Path]) -> Iterator[tuple[str, Document]]:
    """(corpus name, document) of every trainable document of the ``corpora`` (BEIR folders, .jsonl files or text
    folders; a corpus is named by its folder or file stem, so squad-a is split wherever it lives), in file order."""
    for path in corpora:
        name = Path(path).stem
        for doc in read_corpus(path):
            if is_training_text(name, doc.doc_id):
                yield name, doc


def gold_passages(squad_beir: str | Path) -> dict[str, str]:
    """squad-a question id -> its gold paragraph's passage id (qrels/test.tsv: one per question)."""
    return {qid: next(iter(docs)) for qid, docs in read_qrels(squad_beir, "test").items()}


def question_articles(squad_beir: str | Path) -> dict[str, int]:
    """squad-a question id -> the article of its gold paragraph."""
    return {qid: squad_article(pid) for qid, pid in gold_passages(squad_beir).items()}
