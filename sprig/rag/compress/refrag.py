"""REFRAG compression (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding"): the decoder reads each
k-token chunk of the retrieved passages as one projected embedding, except the chunks a policy expands
back to their tokens.

Chunks, their character spans and their frozen encoder vectors come from the index (`sprig index
--chunk-vectors K`, sprig.encoders.chunk_vectors), so a request encodes only the question; a passage the
index lacks (added later, or passed in) is chunked and encoded here by the same code. The policy is
query-chunk similarity, the cosine between the question's and each chunk's vector from that encoder, where
the paper trains an RL policy (§2.2): chunks are expanded best-first while their tokens fit the budget, a
fraction p of the retrieved tokens, so about p of the chunks (all but a passage's last chunk hold k tokens).

The decoder input is `none`'s prompt (same blocks, text and citations) with the tokens of each compressed
chunk replaced by one position holding its projected embedding, in passage order. With every chunk
expanded it is exactly `none`'s prompt, and the scaffold before the first passage keeps its cached KV
(prefix caching stops at the first embedded position, which no cached prefix contains).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sprig.core.config import GeneratorConfig, RefragConfig
from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.encoders.chunk_vectors import ChunkVectorizer, PassageChunks, decoder_chunks, encoder_label, tokenizer_fingerprint
from sprig.rag.compress.base import Compressed, Compressor, ContextBlock
from sprig.rag.generator import EMBEDDED, EmbeddedPrompt, Message, render_prompt
from sprig.rag.prompt import entry, rag_messages
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec, shipped_projector


@dataclass(frozen=True)
class StoredChunks:
    """An index's chunk vectors: its manifest entry (None: built without them) and their lookup by k and passage ids."""

    info: dict | None
    lookup: Callable[[int, Sequence[str]], dict[str, PassageChunks]]
    index_dir: str
    corpus: str

    def rebuild(self, k: int, generation: GeneratorConfig) -> str:
        """The command that rebuilds this index with k-token chunk vectors (beside the sizes it has) cut by the
        configured generator's tokenizer."""
        env = "" if generation.model == "default" else f"SPRIG_GENERATOR__MODEL={generation.model} "
        env += f"SPRIG_GENERATOR__GGUF_FILE={generation.gguf_file} " if generation.gguf_file else ""
        sizes = sorted({k, *(self.info or {}).get("sizes", [])})
        return f"`{env}sprig index {self.corpus} --out {self.index_dir} --chunk-vectors {','.join(map(str, sizes))}`"


def expand_by_similarity(scores: np.ndarray, tokens: np.ndarray, budget: int) -> np.ndarray:
    """bool [chunks]: the chunks to expand, best score first while their tokens fit ``budget`` (ties: earlier chunk)."""
    expanded, used = np.zeros(len(scores), bool), 0
    for i in np.argsort(-scores, kind="stable"):
        if used + tokens[i] <= budget:
            expanded[i], used = True, used + int(tokens[i])
    return expanded


def block_offsets(prompt: str, messages: Sequence[Message], blocks: Sequence[ContextBlock]) -> list[int]:
    """Where each block's text starts in the rendered prompt, found in order in its last (user) turn."""
    at = prompt.rfind(messages[-1]["content"])
    offsets = []
    for n, block in enumerate(blocks, 1):
        text = entry(n, block.title, block.text)
        at = prompt.find(text, at) if at >= 0 else -1
        if at < 0:
            raise SprigError("the generator's chat template rewrites the passages, so refrag cannot find their chunks in the prompt")
        offsets.append(at + len(text) - len(block.text))
        at += len(text)
    return offsets


def embedded_prompt(tokenizer, messages: Sequence[Message], blocks: Sequence[ContextBlock], spans: Sequence[np.ndarray],
                    expanded: np.ndarray, embeds) -> EmbeddedPrompt:
    """The prompt of ``messages`` (``render_prompt``: what ``none`` feeds) as decoder input positions: its tokens,
    except that the tokens of each compressed chunk (``expanded`` False; chunks of all blocks in order, ``spans``
    per block) become one position fed that chunk's row of ``embeds`` (rows in the order of the compressed
    chunks). A prompt token belongs to the chunk that holds its last character; tokens outside every chunk are
    the scaffold."""
    rendered = render_prompt(tokenizer, messages)
    tokens, offsets = np.asarray(rendered.ids), np.asarray(rendered.offsets).reshape(-1, 2)
    bounds = np.concatenate([o + s for o, s in zip(block_offsets(rendered.text, messages, blocks), spans)])  # [chunks, 2] in the prompt
    last = offsets[:, 1] - 1
    chunk = np.searchsorted(bounds[:, 0], last, side="right") - 1
    inside = (offsets[:, 1] > offsets[:, 0]) & (chunk >= 0) & (last < bounds[np.maximum(chunk, 0), 1])
    chunk = np.where(inside, chunk, -1)
    compressed = inside & ~expanded[np.maximum(chunk, 0)]
    first = compressed & np.r_[True, chunk[1:] != chunk[:-1]]  # one position per compressed chunk, at its first token
    keep = ~compressed | first
    rows = (np.cumsum(~expanded) - 1)[chunk[first]]
    return EmbeddedPrompt(np.where(first, EMBEDDED, tokens)[keep].tolist(), embeds[rows.tolist()])


class RefragCompressor(Compressor):
    mode = "refrag"

    def __init__(self, generator, encoder, projector: ChunkProjector, k: int, stored: StoredChunks | None = None):
        """``encoder`` (a DenseEncoder) encodes the question, and the chunks of passages without stored
        vectors; ``stored``: the index's chunk vectors (None without an index: every passage is encoded)."""
        super().__init__(generator.count_tokens)
        self.generator, self.encoder, self.projector, self.k, self.stored = generator, encoder, projector, k, stored
        self.vectorizer = ChunkVectorizer(generator.tokenizer, encoder, [k], generator.label)
        self.cut = functools.lru_cache(maxsize=1024)(lambda text: decoder_chunks(generator.tokenizer, text, k))

    @classmethod
    def from_config(cls, config: RefragConfig, generator, encoder: Callable[[], object], stored: StoredChunks | None,
                    generation: GeneratorConfig) -> "RefragCompressor":
        """Checked in the order a user fixes them: the index has chunk vectors for k, cut by this generator's
        tokenizer; a projector is given, or one ships for this generator, encoder and k; a given one was trained
        for them. ``encoder`` builds the chunk encoder (the index's dense encoder), once the index checks pass."""
        k = config.chunk_tokens
        if stored is not None:
            info, rebuild = stored.info, stored.rebuild(k, generation)
            if info is None:
                raise SprigError(f"index {stored.index_dir} has no chunk embeddings: rebuild it with {rebuild}")
            if k not in info["sizes"]:
                raise SprigError(f"index {stored.index_dir} has chunk embeddings for k = {', '.join(map(str, info['sizes']))}, not {k}: "
                                 f"use --chunk-size {info['sizes'][0]} (compress.refrag.chunk_tokens) or rebuild it with {rebuild}")
            if info["tokenizer"]["vocab_sha256"] != tokenizer_fingerprint(generator.tokenizer):
                raise SprigError(f"index {stored.index_dir} cut its chunks with the tokenizer of '{info['tokenizer']['decoder']}', "
                                 f"not this generator's ('{generator.label}'): rebuild it with {rebuild}")
        chunk_encoder = encoder()
        hidden = int(generator.model.get_input_embeddings().weight.shape[1])
        wanted = ProjectorSpec(generator.label, hidden, encoder_label(chunk_encoder.name), int(chunk_encoder.dim), k)
        folder = config.projector or shipped_projector(wanted)
        if folder is None:
            raise SprigError(f"no REFRAG projector ships for decoder '{wanted.decoder}', encoder '{wanted.encoder}' and k = {k}: "
                             f"train one (`sprig train projector --chunk-size {k}`) and pass it with --projector DIR "
                             "(compress.refrag.projector)")
        projector = ChunkProjector.load(folder)
        projector.check(wanted, folder)
        return cls(generator, chunk_encoder, projector.to(generator.device), k, stored)

    def input_tokens(self, passages: Sequence[Hit]) -> int:
        """Decoder tokens of the passages as the prompt holds them (what the chunks tile)."""
        return sum(int(self.cut(p.text)[1].sum()) for p in passages)

    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        import torch

        out = self.plan(query, passages, budget)
        if out.decoder_input is None:
            return out
        with torch.inference_mode():
            embeds = self.projector(torch.from_numpy(out.decoder_input.embeds).to(self.generator.device))
        return replace(out, decoder_input=EmbeddedPrompt(out.decoder_input.ids, embeds))

    def plan(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        """``compress``'s result with the compressed chunks' own vectors (float32 [chunks, dim]) in place of their
        projections: what QA fine-tuning feeds through the projector it trains."""
        input_tokens = self.input_tokens(passages)
        passages = [p for p in passages if p.text.strip()]
        if not passages:
            return Compressed([], input_tokens, 0)
        cut = [self.cut(p.text) for p in passages]
        per_passage, from_index = self.vectors(passages, cut)
        vectors = np.concatenate(per_passage).astype(np.float32)  # [chunks, dim]
        tokens = np.concatenate([t for _, t in cut])
        question = self.encoder.encode_queries([query])[0]
        scores = _unit(vectors) @ (question / max(float(np.linalg.norm(question)), 1e-12))
        expanded = expand_by_similarity(scores, tokens, budget)
        blocks = [ContextBlock(p.text, [p.passage_id], p.title) for p in passages]
        prompt = embedded_prompt(self.generator.tokenizer, rag_messages(query, blocks), blocks, [s for s, _ in cut], expanded,
                                 vectors[~expanded])
        positions = int((~expanded).sum() + tokens[expanded].sum())
        info = {"chunk_tokens": self.k, "chunks": len(tokens), "expanded_chunks": int(expanded.sum()), "expanded_tokens": int(tokens[expanded].sum()),
                "best_chunk_score": float(scores.max()), "passages_with_stored_chunks": from_index}
        return Compressed(blocks, input_tokens, positions, info, prompt)

    def vectors(self, passages: Sequence[Hit], cut: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[np.ndarray], int]:
        """float16 [chunks, dim] per passage: the index's when its spans are this chunker's, else encoded here;
        and how many passages the index supplied."""
        stored = self.stored.lookup(self.k, [p.passage_id for p in passages]) if self.stored else {}
        found = [stored.get(p.passage_id) for p in passages]
        out = [s[1] if s is not None and np.array_equal(s[0], spans) else None for s, (spans, _) in zip(found, cut)]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            for i, (_, v) in zip(missing, self.vectorizer.encode([passages[i].text for i in missing])[self.k]):
                out[i] = v
        return out, len(passages) - len(missing)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
