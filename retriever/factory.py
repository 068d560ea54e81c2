"""Build encoders from the one config object, so every entry point (CLI, API, eval) agrees."""
from __future__ import annotations

from typing import Literal

from sprig.config import SprigConfig

EncoderKind = Literal["splade", "bm25", "dense"]
ENCODER_KINDS: tuple[str, ...] = ("splade", "bm25", "dense")


def make_encoder(kind: EncoderKind, config: SprigConfig):
    """A fresh encoder of the given kind. BM25 comes back unfitted (it needs corpus statistics)."""
    if kind == "splade":
        from retriever.encoders.splade import SpladeEncoder

        s = config.splade
        return SpladeEncoder(
            s.model, config.device, s.doc_max_length, s.query_max_length, s.batch_size, s.vocab_chunk,
            s.doc_top_k, s.query_top_k, s.threshold,
        )
    if kind == "bm25":
        from retriever.encoders.bm25 import BM25Encoder

        return BM25Encoder(config.bm25.k1, config.bm25.b)
    if kind == "dense":
        from retriever.encoders.dense import DenseEncoder

        d = config.dense
        return DenseEncoder(d.model, config.device, d.max_length, d.batch_size)
    raise ValueError(f"unknown encoder '{kind}' (expected one of {', '.join(ENCODER_KINDS)})")
