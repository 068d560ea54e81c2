"""Encoders built from the one config object, so every entry point (CLI, API, eval, indexer) agrees."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.core.config import ENCODER_KINDS, EncoderKind, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.types import SparseVec


def make_encoder(kind: EncoderKind, config: SprigConfig):
    """A fresh encoder of the given kind. BM25 comes back unfitted (it needs corpus statistics), and so does
    inference-free's corpus IDF."""
    if kind == "splade":
        from sprig.encoders.decoder_splade import splade_encoder

        return splade_encoder(config.splade, config.device)
    if kind == "bm25":
        from sprig.encoders.bm25 import BM25Encoder

        return BM25Encoder(config.bm25)
    if kind == "dense" and config.dense.model == "promptreps":
        from sprig.encoders.promptreps import promptreps_encoder

        return promptreps_encoder(config.promptreps, config.device).dense
    if kind == "dense":
        from sprig.encoders.dense import DenseEncoder

        return DenseEncoder(config.dense, config.device)
    if kind == "inference-free":
        from sprig.encoders.inference_free import InferenceFreeEncoder

        return InferenceFreeEncoder(config.inference_free, config.device)
    if kind == "promptreps":  # the sparse half; the dense half (dense.model=promptreps) shares its model and forward pass
        from sprig.encoders.promptreps import promptreps_encoder

        return promptreps_encoder(config.promptreps, config.device).sparse
    raise SprigError(f"unknown encoder '{kind}' (expected one of {', '.join(ENCODER_KINDS)})")


@dataclass
class Encoded:
    """One batch of passages as every encoder of a set sees it."""

    sparse: dict[str, list[SparseVec]]
    dense: np.ndarray | None
    sentences: list[np.ndarray] | None  # float16 [sentences, dim] per passage, for RECOMP's extractive compressor
    chunks: dict | None = None  # chunk size k -> per passage (spans, float16 vectors), for REFRAG (sprig.encoders.chunk_vectors)


class EncoderSet:
    """The encoders of one index: sparse ones by name, the dense one (or None), and whether passages also
    get per-sentence vectors (those come from the dense encoder)."""

    def __init__(self, sparse: Mapping[str, object], dense=None, sentences: bool = False, chunks=None):
        self.sparse = dict(sparse)
        self.dense = dense
        self.sentences = sentences and dense is not None
        self.chunks = chunks  # a ChunkVectorizer (REFRAG chunk vectors, from the dense encoder) or None

    @classmethod
    def build(cls, config: SprigConfig, sparse: Sequence[str], dense: bool, bm25=None, sentences: bool = False,
              chunk_sizes: Sequence[int] = ()) -> "EncoderSet":
        """Fresh encoders for a build; ``bm25`` is the fitted BM25 encoder when "bm25" is among ``sparse``;
        ``chunk_sizes``: REFRAG chunk vectors of k generator tokens for each k, encoded by the dense encoder."""
        if "bm25" in sparse and bm25 is None:
            raise SprigError("the BM25 encoder must be fitted (or loaded) before use")
        if dense and config.dense.model == "promptreps" and "promptreps" not in sparse:
            raise SprigError("dense model 'promptreps' is the dense half of PromptReps: build it with --sparse promptreps "
                             "(one forward pass gives both halves, and the index records the model with the sparse one)")
        if chunk_sizes and not dense:
            raise SprigError("--chunk-vectors needs the dense encoder (it encodes the chunks): drop --dense none")
        encoders = cls({name: bm25 if name == "bm25" else make_encoder(name, config) for name in sparse},
                       make_encoder("dense", config) if dense else None, sentences)
        if chunk_sizes:
            from sprig.encoders.chunk_vectors import ChunkVectorizer, decoder_label, decoder_tokenizer

            g = config.generator
            encoders.chunks = ChunkVectorizer(decoder_tokenizer(g.model, g.gguf_file), encoders.dense, chunk_sizes,
                                              decoder_label(g.model, g.gguf_file))
        return encoders

    @classmethod
    def for_index(cls, config: SprigConfig, settings: Mapping[str, dict], sparse: Sequence[str], dense: bool,
                  bm25_state: Path | None, sentences: bool, idf_state: Path | None = None) -> "EncoderSet":
        """The encoders an existing index was built with: ``settings`` (its manifest's) override ``config``'s
        model and length fields, BM25 is loaded with the corpus statistics stored at ``bm25_state``, and
        inference-free with the corpus IDF stored at ``idf_state``."""
        from sprig.encoders.bm25 import BM25Encoder

        config = config.with_encoder_settings(settings)
        bm25 = BM25Encoder.load(bm25_state) if "bm25" in sparse else None
        encoders = cls.build(config, sparse, dense, bm25, sentences)
        if "inference-free" in sparse:
            encoders.sparse["inference-free"].load_idf(idf_state)
        return encoders

    @property
    def names(self) -> list[str]:
        return list(self.sparse) + (["dense"] if self.dense is not None else [])

    def __getitem__(self, name: str):
        return self.dense if name == "dense" else self.sparse[name]

    def settings(self) -> dict:
        out = {name: enc.settings() | {"vocab_size": enc.vocab_size} for name, enc in self.sparse.items()}
        if self.dense is not None:
            out["dense"] = self.dense.settings() | {"dim": self.dense.dim}
        return out

    def encode(self, texts: Sequence[str], bodies: Sequence[str]) -> Encoded:
        """``texts`` (title + body, what retrieval sees) through every encoder; ``bodies`` split into sentences."""
        from sprig.encoders.sentences import sentence_vectors

        return Encoded(
            {name: enc.encode_documents(list(texts)) for name, enc in self.sparse.items()},
            self.dense.encode_documents(list(texts)) if self.dense is not None else None,
            sentence_vectors(self.dense, list(bodies)) if self.sentences else None,
            self.chunks.encode(list(bodies)) if self.chunks is not None else None,
        )
