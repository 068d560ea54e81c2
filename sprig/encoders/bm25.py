"""BM25 as a sparse encoder: documents become impact vectors, queries become term counts.

Scores are Lucene's BM25 (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and
Beyond"; Lucene >= 8 drops the constant (k1 + 1) factor):
    score(q, d) = sum_t count_q(t) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
Precomputing the impact per (term, doc) turns BM25 into a dot product, so the same sparse index serves
BM25 and SPLADE. Like Lucene, dl is stored in one byte (SmallFloat.intToByte4), which is what makes
our rankings match pyserini's; avgdl is exact.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from sprig.core.config import BM25Config
from sprig.core.errors import IndexCorrupt
from sprig.core.types import SparseVec

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
# Approximates Lucene's StandardTokenizer (UAX #29 word breaks): letters/digits/underscore, joined across
# a single '.' or apostrophe between word characters ("u.s.a", "don't", "3.5").
_TOKEN = re.compile(r"\w+(?:[.'\u2019]\w+)*")


class Analyzer:
    """Lowercase, tokenize, drop possessive 's, drop English stopwords, Porter-stem (Lucene's EnglishAnalyzer)."""

    def __init__(self, stopwords: Iterable[str] = LUCENE_STOPWORDS, stem: bool = True):
        import Stemmer  # PyStemmer's "porter" is the original Porter algorithm, as Lucene's PorterStemFilter

        self.stopwords = frozenset(stopwords)
        self._stem = Stemmer.Stemmer("porter").stemWord if stem else (lambda w: w)

    def __call__(self, text: str) -> list[str]:
        out = []
        for token in _TOKEN.findall(text.lower()):
            if token.endswith(("'s", "\u2019s")):
                token = token[:-2]
            if token and token not in self.stopwords:
                # Lucene's PorterStemmer leaves words of one or two letters alone ("s" stays "s").
                out.append(self._stem(token) if len(token) > 2 else token)
        return out


def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE = 255 - _long_to_int4(2**31 - 1)  # byte values that store a length exactly (24)


@lru_cache(maxsize=None)
def lucene_length(dl: int) -> int:
    """The document length Lucene's BM25 actually uses: dl rounded through its one-byte norm."""
    if dl < _FREE:
        return dl
    return _FREE + _int4_to_long(_long_to_int4(dl - _FREE))


def lucene_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """idf = ln(1 + (N - df + 0.5) / (df + 0.5)) per term (float32): positive even for a term in every document."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


class BM25Encoder:
    """Fit on a corpus (vocabulary, document frequencies, average length), then encode."""

    def __init__(self, config: BM25Config = BM25Config(), analyzer: Analyzer | None = None):
        self.k1, self.b = config.k1, config.b
        self.analyzer = analyzer or Analyzer()
        self.term_index: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        self.n_docs = 0
        self.avgdl = 0.0

    @property
    def vocab(self) -> list[str]:
        return list(self.term_index)

    @property
    def vocab_size(self) -> int:
        return len(self.term_index)

    def settings(self) -> dict:
        return {"model": "bm25", "k1": self.k1, "b": self.b, "analyzer": "lucene-english-porter"}

    def fit(self, texts: Iterable[str]) -> "BM25Encoder":
        df: Counter[str] = Counter()
        total, n = 0, 0
        for text in texts:
            tokens = self.analyzer(text)
            df.update(set(tokens))
            total += len(tokens)
            n += 1
        self.term_index = {t: i for i, t in enumerate(sorted(df))}
        self.df = np.array([df[t] for t in self.term_index], dtype=np.int64)
        self.n_docs, self.avgdl = n, (total / n if n else 0.0)
        return self

    def idf(self) -> np.ndarray:
        return lucene_idf(self.df, self.n_docs)

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        if not self.term_index:
            raise RuntimeError("BM25Encoder.fit must run before encode_documents")
        idf = self.idf()
        vecs = []
        for text in texts:
            tokens = self.analyzer(text)
            counts = Counter(t for t in tokens if t in self.term_index)
            ids = np.fromiter((self.term_index[t] for t in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            norm = self.k1 * (1 - self.b + self.b * lucene_length(len(tokens)) / self.avgdl)
            vecs.append(SparseVec.from_pairs(ids, idf[ids] * tf / (tf + norm)))
        return vecs

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        vecs = []
        for text in texts:
            counts = Counter(t for t in self.analyzer(text) if t in self.term_index)
            vecs.append(SparseVec.from_pairs([self.term_index[t] for t in counts], list(counts.values())))
        return vecs

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"k1": self.k1, "b": self.b, "n_docs": self.n_docs, "avgdl": self.avgdl, "vocab": self.vocab}
        (directory / "bm25.json").write_text(json.dumps(meta))
        np.save(directory / "bm25_df.npy", self.df)

    @classmethod
    def load(cls, directory: str | Path) -> "BM25Encoder":
        directory = Path(directory)
        try:
            meta = json.loads((directory / "bm25.json").read_text())
            df = np.load(directory / "bm25_df.npy")
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"cannot read BM25 statistics in {directory}: {exc}") from None
        if df.shape != (len(meta["vocab"]),):
            raise IndexCorrupt(f"{directory / 'bm25_df.npy'}: {df.shape[0]} document frequencies for {len(meta['vocab'])} terms")
        enc = cls(BM25Config(k1=meta["k1"], b=meta["b"]))
        enc.term_index = {t: i for i, t in enumerate(meta["vocab"])}
        enc.df, enc.n_docs, enc.avgdl = df, meta["n_docs"], meta["avgdl"]
        return enc
