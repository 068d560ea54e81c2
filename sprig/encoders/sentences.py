"""Sentence splitting without downloaded data (NLTK's punkt model is not shipped offline).

A sentence ends at . ! or ? (optionally followed by closing quotes or brackets) before whitespace and
an upper-case letter, digit or opening quote, unless the word before the stop is a known abbreviation
or a single initial ("J. S. Bach"). Good enough for Wikipedia-style prose, where RECOMP's extractive
compressor works at sentence granularity.

``sentence_vectors`` is the one place sentences become dense vectors, used both by `sprig index` (stored
with each passage) and by the compressor for passages without stored vectors, so the two sources agree.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g", "i.e", "al", "no", "vol",
    "fig", "approx", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "u.s", "u.k", "gen", "col", "lt", "sgt", "rev", "gov", "sen", "rep", "ca", "c",
}
_BOUNDARY = re.compile(r"""[.!?]+["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])""")


def split_sentences(text: str) -> list[str]:
    """Non-empty sentences of ``text``, in order; joined with spaces they give back its words."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        before = text[start : match.start() + 1].split()
        last = before[-1].rstrip(".!?").lower() if before else ""
        if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def sentence_vectors(encoder, texts: Sequence[str]) -> list[np.ndarray]:
    """float16 [sentences, dim] per text: its ``split_sentences`` encoded as documents by ``encoder``
    (a DenseEncoder), all texts in one batch. float16 halves the store; scores are computed from these
    rounded vectors whichever source they come from."""
    split = [split_sentences(t) for t in texts]
    flat = [s for sentences in split for s in sentences]
    encoded = encoder.encode_documents(flat).astype(np.float16)
    bounds = np.cumsum([len(sentences) for sentences in split])[:-1]
    return np.split(encoded, bounds) if texts else []
