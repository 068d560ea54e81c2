"""The sparse index engine against a plain reference: integer dot products over the same quantised weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from sprig.core.errors import IndexCorrupt
from sprig.core.types import SparseVec
from sprig.index import sparse_format as fmt
from sprig.index.sparse import SparseIndex, _kept_terms
from sprig.kernels import sparse_search as sparse_kernels
from tests.conftest import dataset


def random_vecs(rng, n, vocab, max_terms, levels=None):
    """Irregular sizes (including empty vectors); ``levels`` draws weights from a few values to force ties."""
    out = []
    for _ in range(n):
        m = int(rng.integers(0, max_terms + 1))
        ids = np.sort(rng.choice(vocab, size=m, replace=False)).astype(np.int32)
        w = rng.choice(levels, size=m) if levels is not None else rng.gamma(0.8, 1.0, size=m) + 0.02
        out.append(SparseVec(ids, w.astype(np.float32)))
    return out


def reference(docs, numbers, index: SparseIndex, q: SparseVec, k: int):
    """Brute force from the raw vectors: integer query x impact sums, ties by the smaller doc number."""
    terms, vals, factor = index.quantize_query(q)
    qv = np.zeros(index.vocab_size, np.int64)
    qv[terms] = vals
    indptr, ids, w = fmt.csr_arrays(docs)
    mat = sp.csr_matrix((fmt.quantize_docs(w, index.scale).astype(np.int64), ids, indptr), shape=(len(docs), index.vocab_size))
    scores = mat @ qv
    order = np.lexsort((numbers, -scores))
    order = order[scores[order] > 0][:k]
    return numbers[order], (scores[order] * (index.scale / factor)).astype(np.float32)


def assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@pytest.fixture
def random_index(tmp_path):
    rng = np.random.default_rng(7)
    docs = random_vecs(rng, 1823, 781, 60)
    numbers = rng.permutation(10**7)[: len(docs)].astype(np.int64)
    return SparseIndex.create(tmp_path / "idx", docs, numbers, 781), docs, numbers, rng


@pytest.mark.parametrize("k", [1, 10, 37])
def test_exact_equals_brute_force_random(random_index, k):
    index, docs, numbers, rng = random_index
    for q in random_vecs(rng, 150, 781, 45):
        assert_same(index.search(q, k), reference(docs, numbers, index, q, k))


@pytest.mark.parametrize("range_shift", [0, 3, 11])
def test_ties_break_by_doc_number(tmp_path, range_shift):
    """Few weight levels make many equal scores; single-doc ranges make range bounds equal to scores."""
    rng = np.random.default_rng(3)
    docs = random_vecs(rng, 900, 60, 12, levels=np.array([0.5, 1.0]))
    numbers = rng.permutation(5000)[:900].astype(np.int64)
    index = SparseIndex.create(tmp_path / "idx", docs, numbers, 60, range_shift=range_shift)
    for q in random_vecs(rng, 80, 60, 6, levels=np.array([1.0])):
        got = index.search(q, 10)
        assert_same(got, reference(docs, numbers, index, q, 10))


@pytest.mark.parametrize("range_shift, n", [(0, 5000), (6, 5000), (9, 5000), (11, sparse_kernels.TILE + 3000)])
def test_exact_with_small_ranges(tmp_path, range_shift, n):
    """Many ranges, with chunks straddling range edges (a term's chunk holds sparse_kernels.CHUNK postings), and more
    documents than one accumulator tile."""
    rng = np.random.default_rng(5)
    vocab = 40
    lens = rng.integers(1, 6, size=n)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    ids = np.concatenate([np.sort(rng.choice(vocab, size=m, replace=False)) for m in lens]).astype(np.int32)
    w = (rng.gamma(1.0, 1.0, size=ids.size) + 0.05).astype(np.float32)
    numbers = np.arange(n, dtype=np.int64)[::-1] * 3
    index = SparseIndex.create(tmp_path / "idx", sp.csr_matrix((w, ids, indptr), shape=(n, vocab)), numbers, vocab, range_shift=range_shift)
    docs = [SparseVec(ids[a:b], w[a:b]) for a, b in zip(indptr[:-1], indptr[1:])]
    for q in random_vecs(rng, 25, vocab, 8):
        assert_same(index.search(q, 10), reference(docs, numbers, index, q, 10))


def test_approx_mode_trades_recall(random_index):
    index, docs, numbers, rng = random_index
    queries = random_vecs(rng, 100, 781, 45)
    exact = index.batch_search(queries, 10)
    same = index.batch_search(queries, 10, mode="approx", mu=1.0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(exact, same))
    approx = index.batch_search(queries, 10, mode="approx", mu=0.8, query_cut=30)
    recall = np.mean([len(np.intersect1d(a[0], e[0])) / len(e[0]) for a, e in zip(approx, exact) if len(e[0])])
    assert 0.7 <= recall <= 1.0


def full_scores(docs, numbers, index: SparseIndex, q: SparseVec) -> dict[int, float]:
    """Doc number -> brute-force score of every document (the reference with k = all)."""
    nums, scores = reference(docs, numbers, index, q, len(docs))
    return dict(zip(nums.tolist(), scores.tolist()))


@pytest.mark.parametrize("segments", [1, 3])
def test_approx_rescore_returns_true_scores(tmp_path, segments):
    """Candidates found on the heaviest query terms are completed on the others: every returned score is
    the document's full dot product, all candidates = exact, and recall rises with more candidates."""
    rng = np.random.default_rng(13)
    docs = random_vecs(rng, 1500, 400, 50)
    numbers = rng.permutation(10**6)[:1500].astype(np.int64)
    parts = np.array_split(np.arange(1500), segments)
    index = SparseIndex.create(tmp_path / "idx", [docs[i] for i in parts[0]], numbers[parts[0]], 400)
    for part in parts[1:]:
        index.add([docs[i] for i in part], numbers[part])
    gone = numbers[rng.choice(1500, 40, replace=False)]
    index.delete(gone)
    keep = ~np.isin(numbers, gone)
    live_docs, live_numbers = [d for d, ok in zip(docs, keep) if ok], numbers[keep]
    queries = random_vecs(rng, 60, 400, 40)
    exact = index.batch_search(queries, 10)
    recalls = []
    for rescore in (10, 40, 200):
        got = index.batch_search(queries, 10, mode="approx", mu=1.0, query_mass=0.5, rescore=rescore)
        for q, (nums, scores) in zip(queries, got):
            truth = full_scores(live_docs, live_numbers, index, q)
            np.testing.assert_allclose(scores, [truth[int(n)] for n in nums], rtol=1e-6)
            assert list(zip(-scores, nums)) == sorted(zip(-scores, nums))
        recalls.append(np.mean([len(np.intersect1d(a[0], e[0])) / len(e[0]) for a, e in zip(got, exact) if len(e[0])]))
    assert recalls[0] <= recalls[1] <= recalls[2] and recalls[2] >= 0.9
    for a, b in zip(exact, index.batch_search(queries, 10, mode="approx", mu=1.0, query_mass=1.0, rescore=50)):
        assert_same(a, b)


def test_kept_terms_by_count_and_mass():
    vals = np.array([5, 1, 3, 3, 8], np.int64)
    assert _kept_terms(vals, 0, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert _kept_terms(vals, 2, 1.0).tolist() == [0, 4]
    assert _kept_terms(vals, 0, 0.6).tolist() == [0, 4]  # 8 + 5 = 13 of 20 >= 12
    assert _kept_terms(vals, 0, 0.7).tolist() == [0, 2, 4]  # 13 < 14: one more (tied weights: the smaller position)
    assert _kept_terms(vals, 1, 0.9).tolist() == [4]


def test_batch_search_threads_match(random_index):
    index, docs, numbers, rng = random_index
    queries = random_vecs(rng, 60, 781, 45)
    for a, b in zip(index.batch_search(queries, 10, threads=1), index.batch_search(queries, 10, threads=2)):
        assert_same(a, b)


def test_empty_and_unknown_queries(random_index):
    index = random_index[0]
    for q in (SparseVec.empty(), SparseVec(np.array([10**6], np.int32), np.array([1.0], np.float32)),
              SparseVec(np.array([3], np.int32), np.array([-1.0], np.float32))):
        numbers, scores = index.search(q, 10)
        assert numbers.size == 0 and scores.size == 0 and numbers.dtype == np.int64


def test_add_delete_merge_visible_and_persisted(tmp_path):
    rng = np.random.default_rng(11)
    docs = random_vecs(rng, 700, 300, 30)
    numbers = np.arange(700, dtype=np.int64)
    index = SparseIndex.create(tmp_path / "idx", docs, numbers, 300)
    extra = random_vecs(rng, 300, 300, 30)
    index.add(extra, np.arange(700, 1000))
    replaced = random_vecs(rng, 5, 300, 30)
    index.add(replaced, np.array([1, 2, 3, 4, 5]))  # upsert: the old rows 1..5 are tombstoned
    assert index.delete([10, 11, 999, 12345]) == 3
    live = {int(n): v for n, v in zip(numbers, docs)} | {700 + i: v for i, v in enumerate(extra)} | dict(zip(range(1, 6), replaced))
    for n in (10, 11, 999):
        live.pop(n)
    ref_numbers = np.array(sorted(live), np.int64)
    ref_docs = [live[n] for n in ref_numbers]
    queries = random_vecs(rng, 60, 300, 20)

    def check(ix):
        assert len(ix) == len(live)
        for q in queries:
            assert_same(ix.search(q, 10), reference(ref_docs, ref_numbers, ix, q, 10))

    check(index)
    assert len(index.segments) == 3
    check(SparseIndex.open(tmp_path / "idx"))
    index.merge()
    assert len(index.segments) == 1
    check(index)
    reopened = SparseIndex.open(tmp_path / "idx")
    check(reopened)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["manifest.json", reopened.manifest["segments"][0]["name"]]


def test_empty_index_fits_its_scale_at_first_add(tmp_path):
    index = SparseIndex.create(tmp_path / "idx", [], np.zeros(0, np.int64), 50)
    q = SparseVec(np.array([1, 5], np.int32), np.array([1.0, 2.0], np.float32))
    assert index.search(q)[0].size == 0
    index.add([SparseVec(np.array([5], np.int32), np.array([0.01], np.float32))], [42])
    numbers, scores = SparseIndex.open(tmp_path / "idx").search(q)
    assert numbers.tolist() == [42]
    np.testing.assert_allclose(scores, [0.02], rtol=1e-3)


def _first_segment_file(path, name):
    return path / json.loads((path / "manifest.json").read_text())["segments"][0]["name"] / name


def test_truncated_file_is_reported(random_index):
    index = random_index[0]
    target = _first_segment_file(index.path, "words.npy")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorrupt, match="words.npy"):
        SparseIndex.open(index.path)


def test_tampered_file_is_reported(random_index):
    index = random_index[0]
    target = _first_segment_file(index.path, "impacts.npy")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x5A
    target.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="impacts.npy"):
        SparseIndex.open(index.path)


def test_bad_manifest_is_reported(random_index):
    index = random_index[0]
    manifest = index.path / "manifest.json"
    text = manifest.read_text()
    for old in (99, 1):  # 1: plain uint8 impacts, before they were packed with the doc gaps
        manifest.write_text(text.replace(f'"version": {fmt.VERSION}', f'"version": {old}'))
        with pytest.raises(IndexCorrupt, match=f"manifest.json.*version {old}.*rebuild"):
            SparseIndex.open(index.path)
    manifest.write_text("{not json")
    with pytest.raises(IndexCorrupt, match="manifest.json"):
        SparseIndex.open(index.path)


def test_packing_round_trips(random_index):
    index, docs, numbers, _ = random_index
    mat, mat_numbers = index.impact_matrix()
    indptr, ids, w = fmt.csr_arrays(docs)
    want = sp.csr_matrix((fmt.quantize_docs(w, index.scale).astype(np.int32), ids, indptr), shape=mat.shape)
    want.eliminate_zeros()
    np.testing.assert_array_equal(mat_numbers, numbers)
    assert (mat != want).nnz == 0



def test_pfor_gaps_round_trip_with_exceptions():
    """Doc gaps with rare outliers take PFOR's exception path (and cost fewer bits than one width for
    all); runs of consecutive docs need 0 bits; the largest doc id needs 31."""
    rng = np.random.default_rng(3)
    outlier = rng.random(1000) < 0.05
    mixed = np.cumsum(np.where(outlier, rng.integers(1 << 15, 1 << 24, 1000), rng.integers(0, 4, 1000)) + 1) - 1
    lists = [np.arange(300), mixed, np.array([5, 2**31 - 2]), np.zeros(0, np.int64)]
    term_ptr = np.concatenate([[0], np.cumsum([x.size for x in lists])]).astype(np.int64)
    docs = np.concatenate(lists).astype(np.int32)
    term_chunk, chunk_base, chunk_last, chunk_pos, words = sparse_kernels.pack(term_ptr, docs)
    np.testing.assert_array_equal(sparse_kernels.unpack(words, term_ptr, term_chunk, chunk_base, chunk_last, chunk_pos), docs)
    one_width = sum(min(sparse_kernels.CHUNK, mixed.size - i) * 24 for i in range(0, mixed.size, sparse_kernels.CHUNK))
    assert chunk_base.tolist() == [0, chunk_base[-1]]  # one group of chunks: offsets from 0
    assert chunk_pos[term_chunk[2]] - chunk_pos[term_chunk[1]] < one_width / 2

# --- real data --------------------------------------------------------------------------------------


def _beir_slice(name, n_docs, n_queries):
    from sprig.corpus.readers import read_corpus, read_queries

    docs = list(read_corpus(dataset(name)))[:n_docs]
    queries = list(read_queries(dataset(name)).values())[:n_queries]
    return [f"{d.title} {d.text}".strip() for d in docs], queries


def _check_real(tmp_path, doc_vecs, query_vecs, vocab_size):
    numbers = np.arange(1, len(doc_vecs) + 1, dtype=np.int64)
    index = SparseIndex.create(tmp_path / "idx", doc_vecs, numbers, vocab_size)
    for q in query_vecs:
        assert_same(index.search(q, 10), reference(doc_vecs, numbers, index, q, 10))


@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_exact_bm25_real_slice(tmp_path, name):
    from sprig.encoders.bm25 import BM25Encoder

    texts, queries = _beir_slice(name, 600, 120)
    enc = BM25Encoder().fit(texts)
    _check_real(tmp_path, enc.encode_documents(texts), enc.encode_queries(queries), enc.vocab_size)


def test_exact_splade_real_slice(tmp_path, splade_encoder):
    texts, queries = _beir_slice("scifact", 64, 40)
    _check_real(tmp_path, splade_encoder.encode_documents(texts), splade_encoder.encode_queries(queries), splade_encoder.vocab_size)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_exact_full_corpus(tmp_path, name, splade_encoder):
    from sprig.encoders.bm25 import BM25Encoder

    texts, queries = _beir_slice(name, 10**9, 10**9)
    enc = BM25Encoder().fit(texts)
    _check_real(tmp_path / "bm25", enc.encode_documents(texts), enc.encode_queries(queries), enc.vocab_size)
    _check_real(tmp_path / "splade", splade_encoder.encode_documents(texts), splade_encoder.encode_queries(queries), splade_encoder.vocab_size)
