import math
from collections import Counter

import pytest

from sprig.core.config import BM25Config
from sprig.encoders.bm25 import Analyzer, BM25Encoder, lucene_length


def test_analyzer_lowercases_drops_stopwords_and_possessives_and_stems():
    assert Analyzer()("The Cells' proteins and the cell's STUDIES of U.S.A. 3.5 mg") == [
        "cell", "protein", "cell", "studi", "u.s.a", "3.5", "mg",
    ]


def test_lucene_norm_rounding():
    # Lengths below 24 are exact; above, Lucene keeps 4 significant bits (SmallFloat.intToByte4).
    assert [lucene_length(n) for n in (0, 1, 23, 24, 40, 100, 1000)] == [0, 1, 23, 24, 40, 96, 984]
    assert all(lucene_length(n) <= n for n in range(3000))


def reference_bm25(query: str, docs: list[str], k1: float, b: float) -> list[float]:
    """BM25 written out term by term from the formula (Lucene flavour, no (k1 + 1))."""
    analyze = Analyzer()
    tokenized = [analyze(d) for d in docs]
    n, avgdl = len(docs), sum(map(len, tokenized)) / len(docs)
    scores = []
    for tokens in tokenized:
        tf, score = Counter(tokens), 0.0
        for term, count in Counter(analyze(query)).items():
            df = sum(term in t for t in tokenized)
            if df and tf[term]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += count * idf * tf[term] / (tf[term] + k1 * (1 - b + b * lucene_length(len(tokens)) / avgdl))
        scores.append(score)
    return scores


def test_dot_products_equal_reference_formula(scifact_docs, tmp_path):
    docs = [f"{d.title} {d.text}" for d in scifact_docs[:60]]
    enc = BM25Encoder(BM25Config(k1=0.9, b=0.4)).fit(docs)
    dvecs = enc.encode_documents(docs)
    for query in ["cancer cells and tumor growth", "vitamin d deficiency vitamin", "zzzunknownterm"]:
        (q,) = enc.encode_queries([query])
        assert [q.dot(d) for d in dvecs] == pytest.approx(reference_bm25(query, docs, 0.9, 0.4), rel=1e-5, abs=1e-6)
    enc.save(tmp_path)
    again = BM25Encoder.load(tmp_path)
    assert again.encode_queries(["tumor cells"])[0].dot(again.encode_documents(docs[:1])[0]) == pytest.approx(
        enc.encode_queries(["tumor cells"])[0].dot(dvecs[0])
    )
