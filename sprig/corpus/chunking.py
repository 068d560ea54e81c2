"""Documents -> passages. Chunking by tokens with overlap; off by default (BEIR documents are passages)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sprig.core.errors import SprigError
from sprig.corpus.readers import Document


@dataclass
class Passage:
    passage_id: str
    doc_id: str
    title: str
    text: str
    metadata: dict = field(default_factory=dict)


def passage_text(item: Document | Passage) -> str:
    """What the encoders see: title, a space, text (BEIR's convention and pyserini's "flat" BM25)."""
    return f"{item.title} {item.text}".strip() if item.title else item.text


def to_passages(docs: Iterable[Document], tokenizer=None, max_tokens: int = 0, overlap: int = 0) -> Iterator[Passage]:
    """One passage per document when ``max_tokens`` is 0, else windows of ``max_tokens`` tokens that
    overlap by ``overlap`` tokens. Passage ids are ``<doc id>`` or ``<doc id>#<chunk number>``.

    Windows are cut on token offsets of a fast (HF) tokenizer, so the passage text is an exact slice of
    the original text, never a lossy decode of tokens.
    """
    if max_tokens and overlap >= max_tokens:
        raise SprigError(f"chunk overlap ({overlap}) must be smaller than max tokens ({max_tokens})")
    if max_tokens and tokenizer is None:
        raise SprigError("chunking by tokens needs a tokenizer")
    for doc in docs:
        if not max_tokens:
            yield Passage(doc.doc_id, doc.doc_id, doc.title, doc.text, doc.metadata)
            continue
        for n, text in enumerate(_windows(doc.text, tokenizer, max_tokens, overlap)):
            yield Passage(f"{doc.doc_id}#{n}", doc.doc_id, doc.title, text, {**doc.metadata, "chunk": n})


def _windows(text: str, tokenizer, max_tokens: int, overlap: int) -> Iterator[str]:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        yield text
        return
    step = max_tokens - overlap
    for start in range(0, len(offsets), step):
        window = offsets[start : start + max_tokens]
        yield text[window[0][0] : window[-1][1]]
        if start + max_tokens >= len(offsets):
            return
