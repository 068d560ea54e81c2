"""Prompt assembly with numbered passages, and reading the citations back out of an answer.

Context blocks are numbered [1], [2], … in the prompt; an answer's [n] maps to block n's passage ids.
Small models often cite nothing, so an answer without markers is attributed after the fact to the
blocks that contain it (or share most of its words), and the citation says which way it was found.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sprig.core.types import Hit
from sprig.rag.compress.base import ContextBlock

RAG_SYSTEM = (
    "You answer questions with the shortest span copied from the passages, followed by the passage "
    "number like [1]. Do not write a sentence."
)
CLOSED_BOOK_SYSTEM = "You answer questions with a short answer of a few words. Do not write a sentence."
# One worked example: a 135M model copies a format far more reliably than it follows an instruction.
_EXAMPLE = [
    {"role": "user", "content": "Passages:\n[1] Marie Curie: Marie Curie was a physicist and chemist who was born in "
     "Warsaw in 1867. She won the Nobel Prize in Physics in 1903.\n\nQuestion: In which city was Marie Curie born?"},
    {"role": "assistant", "content": "Warsaw [1]"},
]

_MARKER = re.compile(r"\[(\d+)\]")
_WORD = re.compile(r"\w+")


@dataclass
class Citation:
    number: int  # [n] in the prompt
    passage_ids: list[str]
    found_by: str  # "marker" (the model wrote [n]) or "overlap" (attributed afterwards)


def entry(n: int, title: str, text: str) -> str:
    """Block ``n`` as the prompt writes it; ``text`` comes last (REFRAG finds its chunks there)."""
    return f"[{n}] {title}: {text}" if title else f"[{n}] {text}"


def _numbered(items: Sequence[tuple[str, str]]) -> str:
    return "\n".join(entry(n, title, text) for n, (title, text) in enumerate(items, 1))


def format_passages(passages: Sequence[Hit]) -> str:
    return _numbered([(p.title, p.text) for p in passages])


def format_blocks(blocks: Sequence[ContextBlock]) -> str:
    return _numbered([(b.title, b.text) for b in blocks])


# The fixed messages every prompt of a kind starts with: the generator keeps their KV cache (prefix caching).
RAG_PREFIX = ({"role": "system", "content": RAG_SYSTEM}, *_EXAMPLE)
CLOSED_BOOK_PREFIX = ({"role": "system", "content": CLOSED_BOOK_SYSTEM},)


def rag_messages(question: str, blocks: Sequence[ContextBlock]) -> list[dict[str, str]]:
    return [*RAG_PREFIX, {"role": "user", "content": f"Passages:\n{format_blocks(blocks)}\n\nQuestion: {question}"}]


def closed_book_messages(question: str) -> list[dict[str, str]]:
    return [*CLOSED_BOOK_PREFIX, {"role": "user", "content": f"Question: {question}"}]


def strip_citations(answer: str) -> str:
    return re.sub(r"\s+", " ", _MARKER.sub(" ", answer)).strip()


def cite(answer: str, blocks: Sequence[ContextBlock]) -> list[Citation]:
    """Citations of ``answer``: its in-range [n] markers, else the blocks it was most likely taken from."""
    numbers = sorted({int(n) for n in _MARKER.findall(answer) if 1 <= int(n) <= len(blocks)})
    if numbers:
        return [Citation(n, blocks[n - 1].passage_ids, "marker") for n in numbers]
    text = strip_citations(answer).lower()
    words = set(_WORD.findall(text))
    if not words:
        return []
    containing = [n for n, b in enumerate(blocks, 1) if text in b.text.lower()]
    if containing:
        return [Citation(n, blocks[n - 1].passage_ids, "overlap") for n in containing]
    overlap = [len(words & set(_WORD.findall(b.text.lower()))) / len(words) for b in blocks]
    best = max(overlap, default=0.0)
    if best < 0.5:  # fewer than half the answer's words occur in any block: cite nothing
        return []
    return [Citation(n, blocks[n - 1].passage_ids, "overlap") for n, o in enumerate(overlap, 1) if o == best]
