"""The answer path: retrieve -> compress -> selective augmentation -> generate -> cite.

Selective augmentation (RECOMP, Xu et al. 2023): when nothing was retrieved, the best retrieval score
is under the abstain threshold, or the compressor returns nothing, the question is answered
closed-book and the answer says so. Timings are taken per stage; ``ttft_ms`` is what a caller waits
for the first answer token (retrieval + compression + prefill). With REFRAG a compressed chunk is one
decoder position, so ``context_tokens`` and ``prompt_tokens`` count decoder input positions. Each stage also records its process CPU
time (``*_cpu_ms``): with one torch thread that is the work done, whatever else shares the machine.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from sprig.core.config import (
    COMPRESS_MODES,
    CompressConfig,
    GeneratorConfig,
    SprigConfig,
    resolve_device,
)
from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.rag.compress.base import Compressed, Compressor, ContextBlock
from sprig.rag.generator import GenerationStats, Generator
from sprig.rag.prompt import (
    CLOSED_BOOK_PREFIX,
    RAG_PREFIX,
    Citation,
    cite,
    closed_book_messages,
    rag_messages,
)

if TYPE_CHECKING:
    from sprig.rag.compress.refrag import StoredChunks

Retrieve = Callable[[str, int, str | None], list[Hit]]  # (question, k, retrieval mode or None) -> ranked passages


@dataclass
class Answer:
    question: str
    text: str
    mode: str  # compression mode asked for
    closed_book: bool
    note: str  # why the answer is closed-book ("" when it used the context)
    citations: list[Citation]
    blocks: list[ContextBlock]
    hits: list[Hit]
    stats: dict = field(default_factory=dict)  # token counts and stage timings (ms)

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.text, "mode": self.mode, "closed_book": self.closed_book,
            "note": self.note, "citations": [asdict(c) for c in self.citations],
            "context": [asdict(b) for b in self.blocks],
            "passages": [{"passage_id": h.passage_id, "score": h.score, "title": h.title} for h in self.hits],
            "stats": self.stats,
        }


class Answerer:
    """Holds the loaded generator, the retriever and the compressors (built on first use per mode)."""

    def __init__(
        self,
        generator: Generator,
        retrieve: Retrieve | None = None,
        compress: CompressConfig | None = None,
        generation: GeneratorConfig | None = None,
        dense_encoder: Callable[[], object] | None = None,
        sentence_vectors: Callable[[Sequence[str]], dict] | None = None,
        chunk_vectors: StoredChunks | None = None,
    ):
        self.generator = generator
        self.retrieve = retrieve
        self.compress_config = compress or CompressConfig()
        self.generation = generation or GeneratorConfig()
        self._dense_encoder = dense_encoder  # builds the sentence scorer for recomp-extractive, lazily
        self._sentence_vectors = sentence_vectors  # the index's stored sentence vectors, by passage id
        self._chunk_vectors = chunk_vectors  # the index's REFRAG chunk vectors (None without an index)
        self._compressors: dict[str, Compressor] = {}

    @classmethod
    def from_config(cls, config: SprigConfig, searcher=None, retrieval_mode: str | None = None) -> "Answerer":
        """The generator (loaded once per process), retrieval through an open ``Searcher``, and the
        index's own dense encoder as the sentence scorer when it has one, with the sentence vectors
        `sprig index` stored (used only when that encoder is the index's)."""
        from sprig.rag.generator import load_generator

        g = config.generator
        generator = load_generator(g.model, g.gguf_file, resolve_device(config.device), sparse_attention_settings(config))
        if searcher is None:
            return cls(generator, None, config.compress, g)
        from sprig.rag.compress.refrag import StoredChunks

        stored = searcher.store.sentence_vectors if searcher.encoders.dense is not None else None
        manifest = searcher.index.manifest
        chunks = StoredChunks(manifest.get("chunk_vectors"), searcher.store.chunk_vectors, str(searcher.dir), manifest.get("corpus", "CORPUS"))
        return cls(
            generator, lambda q, k, mode=None: searcher.search(q, k, mode or retrieval_mode), config.compress, g,
            lambda: searcher.encoders.dense or _default_dense(), stored, chunks,
        )

    def compressor(self, mode: str) -> Compressor:
        if mode not in COMPRESS_MODES:
            raise SprigError(f"unknown compression mode '{mode}' (expected one of {', '.join(COMPRESS_MODES)})")
        if mode not in self._compressors:
            if mode == "none":
                from sprig.rag.compress.none import NoCompression

                self._compressors[mode] = NoCompression(self.generator.count_tokens)
            elif mode == "recomp-extractive":
                from sprig.rag.compress.recomp_extractive import RecompExtractive

                encoder = self._dense_encoder() if self._dense_encoder else _default_dense()
                self._compressors[mode] = RecompExtractive(self.generator.count_tokens, encoder, self._sentence_vectors)
            elif mode == "refrag":
                from sprig.rag.compress.refrag import RefragCompressor

                self._compressors[mode] = RefragCompressor.from_config(self.compress_config.refrag, self.generator,
                                                                       self._dense_encoder or _default_dense, self._chunk_vectors, self.generation)
            else:
                from sprig.rag.compress.recomp_abstractive import RecompAbstractive

                self._compressors[mode] = RecompAbstractive(self.generator)
        return self._compressors[mode]

    def budget(self, input_tokens: int, ratio: float | None = None, mode: str | None = None) -> int:
        """Context tokens allowed: ``ratio`` (default: the config's budget_ratio, or REFRAG's expansion
        fraction p for ``mode`` refrag, where the budget is the tokens of the expanded chunks) of the
        retrieved tokens, capped by budget_tokens."""
        c = self.compress_config
        default = c.refrag.expand if mode == "refrag" else c.budget_ratio
        by_ratio = int((default if ratio is None else ratio) * input_tokens)
        return min(by_ratio, c.budget_tokens) if c.budget_tokens else by_ratio

    def stream(
        self,
        question: str,
        mode: str | None = None,
        passages: Sequence[Hit] | None = None,
        k: int | None = None,
        max_new_tokens: int | None = None,
        closed_book: bool = False,
        stop: Sequence[str] | None = None,
        temperature: float | None = None,
        retrieval_mode: str | None = None,
        budget_ratio: float | None = None,
    ) -> Iterator[str | Answer]:
        """Yield answer text pieces, then the finished ``Answer``.

        ``passages`` skips retrieval (eval: the same hits for every mode; oracle runs). ``closed_book``
        answers without context; ``stop`` / ``temperature`` / ``budget_ratio`` override the config for this call.
        ``mode`` may be ``MODE@R`` (``parse_compress``), R overriding ``budget_ratio``.
        Bad input raises SprigError before anything is yielded.
        """
        start = clock()
        question = question.strip()
        if not question:
            raise SprigError("the question is empty")
        mode, ratio = parse_compress(mode or self.compress_config.mode)
        budget_ratio = budget_ratio if ratio is None else ratio
        compressor = self.compressor(mode)
        max_new = max_new_tokens or self.generation.max_new_tokens
        self.generator.check_fits(self.generator.count_tokens(question), max_new)
        stats: dict = {"retrieve_ms": 0.0, "retrieve_cpu_ms": 0.0, "compress_ms": 0.0, "compress_cpu_ms": 0.0}
        hits: list[Hit] = []
        if not closed_book:
            if passages is None:
                if self.retrieve is None:
                    raise SprigError("no index is loaded; pass passages or open an index")
                t = clock()
                hits = list(self.retrieve(question, k or self.compress_config.k, retrieval_mode))
                stats["retrieve_ms"], stats["retrieve_cpu_ms"] = since(t)
            else:
                hits = list(passages)
        note = "closed-book run requested" if closed_book else self._abstain_reason(hits)
        compressed = Compressed([], 0, 0)
        if not note:
            t = clock()
            compressed = compressor.compress(question, hits, self.budget(compressor.input_tokens(hits), budget_ratio, mode))
            stats["compress_ms"], stats["compress_cpu_ms"] = since(t)
            if not compressed.blocks:
                note = f"{mode} found nothing in the retrieved passages that helps answer the question"
        blocks = compressed.blocks
        messages = rag_messages(question, blocks) if blocks else closed_book_messages(question)
        prompt = self.generator.encode_chat(messages) if compressed.decoder_input is None else compressed.decoder_input
        self.generator.check_fits(len(prompt), max_new)
        gen = GenerationStats()
        pieces = []
        stop = self.generation.stop if stop is None else stop
        temperature = self.generation.temperature if temperature is None else temperature
        prefix = (RAG_PREFIX if blocks else CLOSED_BOOK_PREFIX) if self.generation.prefix_cache else None
        for piece in self.generator.stream(prompt, max_new, stop, temperature, stats=gen, prefix=prefix):
            pieces.append(piece)
            yield piece
        text = "".join(pieces).strip()
        stats.update(
            retrieved_tokens=compressed.input_tokens, context_tokens=compressed.output_tokens,
            compression_rate=compressed.rate, prompt_tokens=gen.prompt_tokens, cached_prompt_tokens=gen.cached_tokens,
            new_tokens=gen.new_tokens,
            prefill_ms=gen.ttft_s * 1000, prefill_cpu_ms=gen.ttft_cpu_s * 1000,
            ttft_ms=stats["retrieve_ms"] + stats["compress_ms"] + gen.ttft_s * 1000,
            ttft_cpu_ms=stats["retrieve_cpu_ms"] + stats["compress_cpu_ms"] + gen.ttft_cpu_s * 1000,
            latency_ms=since(start)[0], finish_reason=gen.finish_reason, compress_info=compressed.info,
        )
        yield Answer(question, text, mode, bool(note), note, cite(text, blocks) if blocks else [], blocks, hits, stats)

    def answer(self, question: str, **kwargs) -> Answer:
        *_, result = self.stream(question, **kwargs)
        return result

    def _abstain_reason(self, hits: Sequence[Hit]) -> str:
        if not hits:
            return "retrieval returned no passages"
        threshold = self.compress_config.abstain_threshold
        best = max(h.score for h in hits)
        if threshold is not None and best < threshold:
            return f"best retrieval score {best:.3f} is under the abstain threshold {threshold}"
        return ""


def parse_compress(spec: str) -> tuple[str, float | None]:
    """``MODE`` or ``MODE@R`` (`--compress`, the API's ``compress`` and QA rows) -> (mode, R or None). R is the
    mode's ratio for one call, in (0, 1]: the fraction of the retrieved tokens kept (RECOMP), or expanded back
    to tokens (REFRAG's p, which may also be 0: every chunk stays compressed)."""
    mode, at, text = spec.partition("@")
    try:
        ratio = float(text) if at else None
    except ValueError:
        ratio = float("nan")
    if mode not in COMPRESS_MODES or (ratio is not None and not ((0 <= ratio if mode == "refrag" else 0 < ratio) and ratio <= 1)):
        raise SprigError(f"unknown compression mode '{spec}' (expected one of {', '.join(COMPRESS_MODES)}, optionally "
                         "@R with R in (0, 1], as in recomp-extractive@0.25 or refrag@0.1)")
    return mode, ratio


def sparse_attention_settings(config: SprigConfig) -> dict | None:
    """The ``apply_sparse_attention`` arguments when ``attention.mode == "sparse"``, else None (dense)."""
    if config.attention.mode != "sparse":
        return None
    return config.attention.model_dump(exclude={"mode"})


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall ms, process CPU ms) since ``start`` (a ``clock()``)."""
    wall, cpu = clock()
    return (wall - start[0]) * 1000, (cpu - start[1]) * 1000


def _default_dense():
    from sprig.encoders.dense import DenseEncoder

    return DenseEncoder(device="cpu")
