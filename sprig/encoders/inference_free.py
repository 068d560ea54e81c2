"""Inference-free learned sparse retrieval: SPLADE vectors for documents, a table lookup for queries.

Geng et al. 2024 ("Towards Competitive Search Relevance For Inference-Free Learned Sparse Retrievers")
encode documents with a masked-LM SPLADE encoder at indexing time, and a query as the set of its
tokenizer ids (no special tokens), each weighted by a fixed per-token value, so no model runs at query
time. The values are the model's own (OpenSearch's idf.json, a sentence-transformers
SparseStaticEmbedding) or, with ``query_weights="corpus"``, the IDF of the indexed corpus:

    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

where N counts passages and df(t) those whose text (title + body, untruncated, no special tokens)
holds token id t: the ids queries are split into, so both sides share one vocabulary. The formula is
BM25's (sprig.encoders.bm25.lucene_idf) rather than log(N / df), because it stays positive for a token
in every passage where log(N / df) is 0 and would drop the token from the query. A token repeated in a
query counts once, as in SparseStaticEmbedding.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from sprig.core.config import Device, InferenceFreeConfig, SpladeConfig
from sprig.core.errors import IndexCorrupt, SprigError
from sprig.core.files import atomic_path
from sprig.core.models import default_splade, recorded, resolve
from sprig.core.types import SparseVec
from sprig.encoders.bm25 import lucene_idf
from sprig.encoders.inference_free_model import load_inference_free_model
from sprig.encoders.query_tokens import QueryTokenizer
from sprig.encoders.splade import SpladeEncoder

IDF_FORMULA = "ln(1 + (N - df + 0.5) / (df + 0.5)), df over tokenizer ids without special tokens"


def document_frequencies(tokenizer, texts: Iterable[str], vocab_size: int, batch_size: int = 512) -> tuple[np.ndarray, int]:
    """(df per token id, int64 [vocab_size]; number of texts) over whole texts, special tokens left out."""
    df, n, texts = np.zeros(vocab_size, np.int64), 0, iter(texts)
    while batch := list(islice(texts, batch_size)):
        ids = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        df += np.bincount(np.concatenate([np.unique(np.asarray(row, np.int64)) for row in ids]), minlength=vocab_size)[:vocab_size]
        n += len(batch)
    return df, n


def lookup(token_ids: Sequence[int], weights: np.ndarray, min_weight: float = 0.0) -> SparseVec:
    """The query vector: each distinct token id with its weight (zero weights, and those under ``min_weight``, dropped).
    Built in place: the ids are unique and sorted already, and SparseVec.from_pairs's summing of duplicates took
    12 of a scifact query's 25 us here."""
    ids = np.unique(np.asarray(token_ids, np.int64))
    ids = ids[ids < weights.size]  # tokens a tokenizer added past the model's vocabulary
    w = weights[ids]
    keep = (w > 0) & (w >= min_weight)
    return SparseVec(ids[keep].astype(np.int32), w[keep].astype(np.float32, copy=False))


class InferenceFreeEncoder:
    """Documents through ``SpladeEncoder`` over the model's masked LM; queries through ``lookup``."""

    def __init__(self, config: InferenceFreeConfig = InferenceFreeConfig(), device: Device = "auto"):
        from transformers import AutoTokenizer

        self.name, self.recorded_model = resolve(config.model, default_splade), recorded(config.model)
        model = load_inference_free_model(self.name)
        self.documents = SpladeEncoder(SpladeConfig(model=model.document_model, doc_max_length=config.doc_max_length,
                                                    batch_size=config.batch_size, cpu_head=config.cpu_head), device)
        self.tokenizer = AutoTokenizer.from_pretrained(model.query_tokenizer)
        self.query_tokens = QueryTokenizer(self.tokenizer, config.query_cache)
        self.extra_log1p, self.doc_max_length = model.extra_log1p, config.doc_max_length
        self.query_weights, self.model_weights = config.query_weights, model.query_weights
        self.query_min_idf = config.query_min_idf
        self.idf: np.ndarray | None = None
        self.n_docs = 0
        if self.query_weights == "model" and self.model_weights is None:
            raise SprigError(f"'{self.name}' ships no query weights (neither idf.json nor a sentence-transformers Router in modules.json): "
                             "set inference_free.query_weights=corpus to weight query tokens by the indexed corpus's IDF")
        if self.model_weights is not None and self.model_weights.shape != (self.vocab_size,):
            raise SprigError(f"'{self.name}': {self.model_weights.size} query weights for a document vocabulary of {self.vocab_size}")

    @property
    def vocab(self) -> list[str]:
        return self.documents.vocab

    @property
    def vocab_size(self) -> int:
        return self.documents.vocab_size

    def settings(self) -> dict:
        """What an index records: the document encoder, and the query weights it was built for (a corpus-IDF
        index stores the IDF; a model-weights one does not), so its searches weight queries the same way."""
        return {"model": self.recorded_model, "doc_max_length": self.doc_max_length, "query_weights": self.query_weights,
                "cpu_head": self.documents.cpu_head, "doc_head": self.documents.doc_head}

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        vecs = self.documents.encode_documents(texts, progress)
        return [SparseVec(v.term_ids, np.log1p(v.weights)) for v in vecs] if self.extra_log1p else vecs

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        weights = self.query_table()
        floor = self.query_min_idf if self.query_weights == "corpus" else 0.0
        return [lookup(ids, weights, floor) for ids in self.query_tokens(texts)]

    def query_table(self) -> np.ndarray:
        """float32 [vocab]: the weight each query token id gets."""
        if self.query_weights == "model":
            return self.model_weights
        if self.idf is None:
            raise SprigError("inference-free queries with corpus IDF need the IDF: fit the encoder on the corpus, or open an index that stores it")
        return self.idf

    # --- corpus IDF ------------------------------------------------------------------------------

    def fit(self, texts: Iterable[str]) -> "InferenceFreeEncoder":
        df, self.n_docs = document_frequencies(self.tokenizer, texts, self.vocab_size)
        self.idf = lucene_idf(df, self.n_docs)
        return self

    def save_idf(self, path: Path) -> dict:
        """Write the fitted IDF (float32 .npy); returns what the index manifest records of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".npy") as tmp:
            np.save(tmp, self.idf)
        return {"n_docs": self.n_docs, "formula": IDF_FORMULA}

    def load_idf(self, path: Path | None) -> None:
        """Take the IDF an index stored at build time; a missing file is an error only for corpus weights."""
        if path is None or not path.is_file():
            if self.query_weights == "corpus":
                raise SprigError(f"{path or 'the index'}: no stored IDF for corpus query weights (the index holds the model's): "
                                 "rebuild it with SPRIG_INFERENCE_FREE__QUERY_WEIGHTS=corpus to weight queries by corpus IDF")
            return
        idf = np.load(path)
        if idf.shape != (self.vocab_size,) or idf.dtype != np.float32:
            raise IndexCorrupt(f"{path}: IDF {idf.dtype} {idf.shape}, expected float32 ({self.vocab_size},)")
        self.idf = idf
