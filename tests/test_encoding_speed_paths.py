"""The CPU speed paths of issue 23 against the exact ones: per-document SPLADE pooling, worker threads,
bfloat16 on CPU, and the device checks. Math and equivalence only; speeds are in docs/benchmarks/encoding.md."""
import numpy as np
import pytest
import torch

from sprig.core.config import DenseConfig, SpladeConfig
from sprig.core.errors import SprigError
from sprig.core.types import to_csr
from sprig.encoders import device_paths
from sprig.encoders.batching import map_batches
from sprig.encoders.splade import SpladeEncoder, splade_pool, splade_pool_rows


def _padded(lengths, hidden_dim, generator):
    hidden = torch.randn(len(lengths), max(lengths), hidden_dim, generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return hidden, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_pooling_equals_packed_pooling(dtype):
    """The same products and maxima; only float32 summation order may differ between the two product shapes
    (≤ 1.2e-6 here), and a bfloat16 product's rounding by at most one bf16 step (here: none)."""
    g = torch.Generator().manual_seed(0)
    lengths = [9, 1, 17, 4]
    hidden, mask = _padded(lengths, 32, g)
    weight, bias = torch.randn(5003, 32, generator=g).to(dtype), torch.randn(5003, generator=g)  # spans two ROW_CHUNKs and a ragged tail
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-5, "rtol": 2 ** -7}
    packed = splade_pool(hidden[mask], lengths, weight, bias, 1024)
    torch.testing.assert_close(splade_pool_rows(hidden, lengths, weight, bias), packed, **tol)
    torch.testing.assert_close(splade_pool_rows(hidden, lengths, weight, None), splade_pool(hidden[mask], lengths, weight, None, 1024), **tol)


def test_worker_threads_keep_order_and_restore_the_thread_count():
    texts = [f"text {'x' * (i % 7)} {i}" for i in range(23)]
    threads = torch.get_num_threads()
    seen = []

    def compute(batch):
        seen.append(torch.get_num_threads())
        return [len(t) for t in batch]

    one = {int(i): r for idx, res in map_batches(list, compute, texts, 4, workers=1) for i, r in zip(idx, res)}
    two = {int(i): r for idx, res in map_batches(list, compute, texts, 4, workers=2) for i, r in zip(idx, res)}
    assert one == two == {i: len(t) for i, t in enumerate(texts)}
    assert torch.get_num_threads() == threads and 1 in seen


def test_auto_precision_follows_the_cpu(monkeypatch):
    assert device_paths.cpu_precision("float32", "cpu") == "float32"
    assert device_paths.cpu_precision("bfloat16", "cpu") == "bfloat16"
    assert device_paths.cpu_precision("auto", "cuda") == "float32"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(device_paths, "native_bf16", lambda native=native: native)
        assert device_paths.cpu_precision("auto", "cpu") == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error for a machine without CUDA")
def test_cuda_asked_for_but_absent_is_a_one_line_error():
    with pytest.raises(SprigError) as err:
        device_paths.encoding_device("cuda")
    assert "--device cpu" in str(err.value) and "\n" not in str(err.value)


def test_gpu_peak_is_reported_only_where_cuda_was_used(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert device_paths.peak_gpu_memory_mib() is None  # a CPU build's log line names no GPU memory
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**20)
    assert device_paths.peak_gpu_memory_mib() == 3.0


def _dense_rows(vecs, dim):
    return to_csr(vecs, dim).toarray()


@pytest.mark.parametrize("head", ["float32", "bfloat16"])
def test_splade_worker_path_equals_the_one_thread_path(head, scifact_docs):
    enc = SpladeEncoder(SpladeConfig(batch_size=4, doc_max_length=96, cpu_head=head), device="cpu")
    texts = [f"{d.title} {d.text}" for d in scifact_docs[:10]] + ["", "a"]
    one, two = (_dense_rows(enc.encode_documents(texts, workers=w), enc.vocab_size) for w in (1, 2))
    assert np.allclose(one, two, atol=1e-5, rtol=2 ** -7)
    assert enc.settings()["cpu_head"] == head


def test_auto_head_runs_documents_in_bf16_and_queries_in_float32(scifact_docs, monkeypatch):
    """Under auto the bf16 copy is made per batch (sprig.train swaps ``weight`` for its float32 Parameter), and
    queries keep today's float32 path."""
    monkeypatch.setattr(device_paths, "native_bf16", lambda: True)
    auto = SpladeEncoder(SpladeConfig(batch_size=4, doc_max_length=96, query_max_length=96), device="cpu")
    exact = SpladeEncoder(SpladeConfig(batch_size=4, doc_max_length=96, query_max_length=96, cpu_head="float32"), device="cpu")
    bf16 = SpladeEncoder(SpladeConfig(batch_size=4, doc_max_length=96, cpu_head="bfloat16"), device="cpu")
    assert auto.weight.dtype == torch.float32 and auto.settings()["doc_head"] == "bfloat16"
    texts = [f"{d.title} {d.text}" for d in scifact_docs[:6]]
    rows = {name: _dense_rows(enc.encode_documents(texts, workers=1), enc.vocab_size) for name, enc in (("auto", auto), ("bf16", bf16))}
    assert np.array_equal(rows["auto"], rows["bf16"])
    assert np.array_equal(_dense_rows(auto.encode_queries(texts), auto.vocab_size), _dense_rows(exact.encode_queries(texts), exact.vocab_size))


def test_dense_bfloat16_documents_stay_within_cosine_1e_3_and_workers_change_nothing(scifact_docs, monkeypatch):
    from sprig.encoders.dense import DenseEncoder

    monkeypatch.setattr(device_paths, "native_bf16", lambda: True)
    exact = DenseEncoder(DenseConfig(cpu_dtype="float32", batch_size=4), device="cpu")
    auto = DenseEncoder(DenseConfig(batch_size=4), device="cpu")
    texts = [f"{d.title} {d.text}" for d in scifact_docs[:10]]
    a = exact.encode_documents(texts, workers=1)
    assert np.allclose(a, exact.encode_documents(texts, workers=2), atol=1e-5)
    b = auto.encode_documents(texts, workers=2)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999 and auto.settings()["doc_dtype"] == "bfloat16"
    assert np.array_equal(auto.encode_queries(texts), exact.encode_queries(texts))  # queries: float32 under auto
