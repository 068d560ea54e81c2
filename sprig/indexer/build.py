"""`sprig index`: corpus -> index directory in one pass, resumable, swapped into place atomically.

Steps:
1. Read the corpus once to count passages and fit BM25's statistics (df, avgdl) — cheap, and BM25
   impacts need them before any document is encoded.
2. Encode shards of ``shard_size`` passages with every enabled encoder (and, with a dense encoder and
   ``index.sentence_vectors``, each passage's sentences for RECOMP's extractive compressor, and with
   ``index.chunk_vectors``, its k-generator-token chunks for REFRAG). A shard
   is committed to the passage store (text + sparse vectors + sentence vectors, one SQLite
   transaction) after its dense block is on disk, and only then marked done; ``--resume`` skips
   done shards and redoes the first unfinished one.
3. Write the sparse indexes with the engine's writer (and, for inference-free queries weighted by corpus
   IDF, that IDF over the stored passages), the FAISS index, and the manifest.
4. Swap the finished directory into place (sprig.core.files.replace_dir: one atomic exchange on Linux).
   Everything happens in ``<out>.partial``, so a crash never leaves a half-written index where a good
   one was. The manifest is written before the shards are cleaned up, so ``--resume`` of a build killed
   after it only does the clean-up and the swap.

Row numbers are corpus order + 1, so a resumed build numbers passages exactly as an unbroken one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from sprig.core.config import SprigConfig
from sprig.core.errors import SprigError
from sprig.core.files import atomic_path, replace_dir, write_text_atomic
from sprig.corpus.chunking import Passage, passage_text, to_passages
from sprig.corpus.readers import corpus_path, read_corpus
from sprig.encoders.device_paths import peak_gpu_memory_mib, peak_memory_mib
from sprig.encoders.factory import EncoderSet
from sprig.index.backend import is_milvus
from sprig.index.dense import DenseIndex, recall_at_k
from sprig.index.docstore import DocStore
from sprig.index.manifest import DOCSTORE, MANIFEST, write_manifest
from sprig.index.reader import BM25_STATE, IDF_STATE

if TYPE_CHECKING:
    from sprig.indexer.ray_encode import RayEncoding

log = logging.getLogger(__name__)

_PLAN = "build.json"
_SHARDS = "shards"
RECALL_QUERIES, RECALL_K = 1000, 10


@dataclass
class BuildReport:
    index_dir: Path | str  # a folder, or a Milvus location
    passages: int
    seconds: float
    resumed_shards: int = 0
    dense_recall: dict = field(default_factory=dict)
    peak_memory_mib: float = 0.0  # this process's peak resident memory when the build finished


def _plan(corpus: Path, fmt: str, config: SprigConfig) -> dict:
    stat = corpus.stat()
    return {
        "corpus": str(corpus.resolve()),
        "corpus_size": stat.st_size if corpus.is_file() else None,
        "corpus_mtime": stat.st_mtime,
        "format": fmt,
        # What the shards depend on; FAISS settings only shape the last step, so a resume may change them.
        "config": config.model_dump(mode="json", include={"splade": True, "inference_free": {"model", "doc_max_length", "query_weights"}, "bm25": True, "dense": True, "promptreps": True, "chunk": True,
                                                          "index": {"sparse", "dense", "sentence_vectors", "chunk_vectors", "shard_size"},
                                                          "generator": {"model", "gguf_file"}}),  # its tokenizer cuts REFRAG chunks
    }


def _passages(corpus: Path, fmt: str, config: SprigConfig, tokenizer) -> Iterator[Passage]:
    return to_passages(read_corpus(corpus, fmt), tokenizer, config.chunk.max_tokens, config.chunk.overlap)


def _chunk_tokenizer(config: SprigConfig):
    if not config.chunk.max_tokens:
        return None
    from transformers import AutoTokenizer

    from sprig.core.models import default_splade, resolve

    return AutoTokenizer.from_pretrained(resolve(config.splade.model, default_splade))


def _work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _started_from(work: Path) -> dict | None:
    """The plan a ``.partial`` build was started from: build.json, or once its manifest is written (the
    clean-up may have removed build.json), the manifest's record of it."""
    try:
        if (work / MANIFEST).exists():
            return {k: v for k, v in json.loads((work / MANIFEST).read_text())["build"].items() if k != "faiss"}
        return json.loads((work / _PLAN).read_text())
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def _open_work_dir(out: Path, plan: dict, resume: bool) -> tuple[Path, int]:
    """The ``.partial`` directory and how many shards in it are already done."""
    work = _work_dir(out)
    started = _started_from(work) if resume and work.exists() else None
    if started is not None:
        if started != plan:
            raise SprigError(f"{work}: was started from a different corpus or settings; rerun without --resume to start over")
        done = 0
        while (work / _SHARDS / f"{done:06d}.done").exists():
            done += 1
        return work, done
    if work.exists():
        log.info("removing the unfinished build in %s (%s)", work, "killed before it recorded its plan" if resume else "pass --resume to continue it")
        shutil.rmtree(work)
    elif resume:
        log.info("nothing to resume in %s; starting a fresh build", work)
    (work / _SHARDS).mkdir(parents=True)
    write_text_atomic(work / _PLAN, json.dumps(plan, indent=2))  # a build killed here leaves its whole plan or none
    return work, 0


def _fit_bm25(work: Path, corpus: Path, fmt: str, config: SprigConfig, tokenizer):
    """BM25 statistics over the whole corpus, fitted once and kept for a resumed build."""
    from sprig.encoders.bm25 import BM25Encoder

    state = work / BM25_STATE
    if state.exists():
        return BM25Encoder.load(state)
    texts = (passage_text(p) for p in _passages(corpus, fmt, config, tokenizer))
    enc = BM25Encoder(config.bm25).fit(tqdm(texts, desc="BM25 statistics", unit="doc", leave=False))
    with atomic_path(state) as tmp:  # a build killed mid-save must not resume from half the statistics
        enc.save(tmp)
    return enc


def _count(corpus: Path, fmt: str, config: SprigConfig, tokenizer) -> int:
    return sum(1 for _ in _passages(corpus, fmt, config, tokenizer))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, array)


def _encode_shards(work: Path, passages: Iterator[Passage], total: int, done: int, encoders: EncoderSet, store: DocStore, shard_size: int, progress: bool,
                   ray: RayEncoding | None = None) -> None:
    """Encode and commit the shards after the first ``done``: here, or on Ray (sprig.indexer.ray_encode) when given."""
    shards = work / _SHARDS
    with tqdm(total=total, initial=min(done * shard_size, total), desc="indexing", unit="doc", disable=not progress, smoothing=0.05) as bar:
        for _ in islice(passages, done * shard_size):  # skip what a killed run finished
            pass
        batches = iter(lambda: list(islice(passages, shard_size)), [])
        pairs = ray.encode(batches, encoders) if ray else ((b, encoders.encode([passage_text(p) for p in b], [p.text for p in b])) for b in batches)
        for shard, (batch, encoded) in enumerate(pairs, start=done):
            first = shard * shard_size + 1
            rows = np.arange(first, first + len(batch), dtype=np.int64)
            if encoded.dense is not None:
                _save_npy(shards / f"{shard:06d}.dense.npy", encoded.dense)
            store.delete_rows(int(rows[0]), int(rows[-1]))  # a killed run may have committed this shard
            store.add(batch, encoded.sparse, rows, encoded.sentences, encoded.chunks)
            (shards / f"{shard:06d}.done").touch()
            bar.update(len(batch))


def _log_paths(encoders: EncoderSet) -> None:
    """One line saying which path each model encoder takes on this device (sprig.encoders.device_paths)."""
    paths = {name: enc.path() for name in encoders.names if hasattr(enc := encoders[name], "path")}
    if paths:
        log.info("encoding paths: %s", "; ".join(f"{name}: {path}" for name, path in paths.items()))


def _write_sparse(work: Path, store: DocStore, name: str, vocab_size: int) -> dict:
    from sprig.index.sparse_format import write_sparse_index

    rows, vectors = store.all_vectors(name)
    return write_sparse_index(work / "sparse" / name, vectors, rows, vocab_size)


def _write_idf(work: Path, store: DocStore, encoder) -> dict:
    """Inference-free's corpus IDF over every stored passage (so a resumed build counts all shards), beside its postings."""
    encoder.fit(passage_text(p) for p in store.iter_rows())
    return {"file": IDF_STATE.as_posix()} | encoder.save_idf(work / IDF_STATE)


def _build_dense(work: Path, config: SprigConfig, n_shards: int, total: int) -> dict:
    vectors = np.concatenate([np.load(work / _SHARDS / f"{s:06d}.dense.npy") for s in range(n_shards)]) if n_shards else np.zeros((0, 0), np.float32)
    rows = np.arange(1, total + 1, dtype=np.int64)
    ic = config.index
    params = dict(hnsw_m=ic.hnsw_m, hnsw_ef_construction=ic.hnsw_ef_construction, hnsw_ef_search=ic.hnsw_ef_search,
                  ivf_nlist=ic.ivf_nlist, ivf_nprobe=ic.ivf_nprobe, pq_m=ic.pq_m)
    index = DenseIndex.build(vectors, rows, ic.faiss, **params)
    index.save(work / "dense")
    info = {"faiss": index.settings}
    if ic.faiss != "flat" and total:
        # Recall of the approximate index against exact search, with passages as queries.
        sample = np.random.default_rng(0).choice(total, size=min(RECALL_QUERIES, total), replace=False)
        exact, _ = DenseIndex.build(vectors, rows, "flat").search(vectors[sample], RECALL_K)
        approx, _ = index.search(vectors[sample], RECALL_K)
        info["recall_vs_flat"] = {f"recall@{RECALL_K}": round(recall_at_k(approx, exact), 4), "queries": int(len(sample))}
        log.info("FAISS %s recall@%d against Flat: %.4f (%d passages as queries)", ic.faiss, RECALL_K, info["recall_vs_flat"][f"recall@{RECALL_K}"], len(sample))
    return info


def _finished(out: Path, plan: dict) -> bool:
    """A complete index at ``out`` built from the same corpus and settings (so `--resume` has nothing to do),
    with no unfinished build beside it (a complete one there is the old index of a swap killed before removing it)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    work = _work_dir(out)
    return manifest.get("build") == plan and (not work.exists() or (work / MANIFEST).exists())


def _report(out: Path, start: float, resumed_shards: int) -> BuildReport:
    manifest = json.loads((out / MANIFEST).read_text())
    return BuildReport(out, manifest["passages"], time.perf_counter() - start, resumed_shards, manifest.get("dense", {}).get("recall_vs_flat", {}),
                       peak_memory_mib())


def _swap_into_place(work: Path, out: Path) -> None:
    """Drop the finished build's resume state and swap it in for ``out`` (the old index is removed last)."""
    shutil.rmtree(work / _SHARDS, ignore_errors=True)
    (work / _PLAN).unlink(missing_ok=True)
    replace_dir(work, out)


def _build_into_milvus(corpus: str | Path, out: str, config: SprigConfig, fmt: str, progress: bool) -> BuildReport:
    """Build a folder in a temporary place ($TMPDIR), then export it: flat FAISS (its vectors export exactly), and no
    sentence vectors (Milvus does not keep them)."""
    from sprig.indexer.export import export_index

    flat = config.model_copy(update={"index": config.index.model_copy(update={"faiss": "flat", "sentence_vectors": False})})
    with tempfile.TemporaryDirectory(prefix="sprig-build-") as tmp:
        report = build_index(corpus, Path(tmp) / "index", flat, fmt, progress=progress)
        export_index(report.index_dir, out, progress)
    return dataclasses.replace(report, index_dir=out)


def build_index(corpus: str | Path, out: str | Path, config: SprigConfig, fmt: str = "auto", resume: bool = False, progress: bool = True) -> BuildReport:
    """Build (or finish building, with ``resume``) the index for ``corpus`` at ``out``: a folder, or a Milvus
    location (sprig.index.backend), which is built as a folder and exported without re-encoding."""
    if is_milvus(out):
        if resume:
            raise SprigError("--resume needs a folder --out: a Milvus build runs in a temporary folder")
        return _build_into_milvus(corpus, str(out), config, fmt, progress)
    corpus, out = corpus_path(corpus), Path(out)
    if not corpus.exists():
        raise SprigError(f"{corpus}: no such corpus file or folder")
    sparse = config.sparse_encoders
    if not sparse and not config.index.dense:
        raise SprigError("nothing to index: --sparse none and --dense none")
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = _plan(corpus, fmt, config)
    if resume and _finished(out, plan | {"faiss": config.index.faiss}):
        log.info("%s is already built from this corpus with these settings; nothing to resume", out)
        shutil.rmtree(_work_dir(out), ignore_errors=True)
        return _report(out, start, 0)
    ray = None
    if config.ray.address:  # joined before anything is written: a cluster that does not answer leaves nothing behind
        from sprig.indexer.ray_encode import RayEncoding

        ray = RayEncoding(config)
    work, done = _open_work_dir(out, plan, resume)
    if (work / MANIFEST).exists():  # killed after writing everything: only the clean-up and the swap are left
        _swap_into_place(work, out)
        return _report(out, start, done)
    tokenizer = _chunk_tokenizer(config)
    total = _count(corpus, fmt, config, tokenizer)
    if done:
        log.info("resuming: %d of %d shards already done", done, -(-total // config.index.shard_size))
    bm25 = _fit_bm25(work, corpus, fmt, config, tokenizer) if "bm25" in sparse else None
    encoders = EncoderSet.build(config, sparse, config.index.dense, bm25, config.index.sentence_vectors, config.index.chunk_vectors)
    _log_paths(encoders)
    with DocStore(work / DOCSTORE) as store:
        _encode_shards(work, _passages(corpus, fmt, config, tokenizer), total, done, encoders, store, config.index.shard_size, progress, ray)
        manifest: dict = {"passages": len(store), "corpus": str(corpus.resolve()), "chunk": config.chunk.model_dump(), "encoders": encoders.settings(),
                          "build": plan | {"faiss": config.index.faiss}}
        manifest["sparse"] = {name: _write_sparse(work, store, name, encoders.sparse[name].vocab_size) for name in sparse}
        if "inference-free" in sparse and config.inference_free.query_weights == "corpus":
            manifest["idf"] = _write_idf(work, store, encoders.sparse["inference-free"])
        if encoders.sentences:  # in docs.sqlite (which SQLite guards), so no checksum entry
            manifest["sentence_vectors"] = {"encoder": "dense", "dtype": "float16", "splitter": "sprig.encoders.sentences.split_sentences"}
        if encoders.chunks is not None:  # likewise in docs.sqlite
            manifest["chunk_vectors"] = encoders.chunks.settings()
    n_shards = -(-total // config.index.shard_size)
    dense_info = _build_dense(work, config, n_shards, total) if config.index.dense else {}
    if dense_info:
        manifest["dense"] = dense_info
    write_manifest(work, manifest)
    _swap_into_place(work, out)
    report = _report(out, start, done)
    gpu = peak_gpu_memory_mib()
    log.info("indexed %d passages in %.1f s; peak memory %.0f MiB%s", report.passages, report.seconds, report.peak_memory_mib,
             "" if gpu is None else f", peak GPU memory {gpu:.0f} MiB")
    return report
