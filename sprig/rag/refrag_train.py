"""REFRAG training, stage (a): reconstruction (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding", §3.1).

With the decoder frozen, the projector learns to turn the chunk vectors of a passage's first chunks into
decoder input embeddings from which the decoder reproduces exactly those chunks' tokens, teacher-forced:
the input is [e_1 .. e_c, x_1 .. x_{s-1}] and position c-1+t predicts x_{t+1}. The number of chunks grows
from 1 to ``max_chunks`` over the steps (the paper's curriculum). The paper trains the encoder too; ours
stays frozen, so the chunk vectors stored in an index stay valid for the trained projector. Continual
pre-training (stage b), fine-tuning and the RL expansion policy are not here.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sprig.encoders.chunk_vectors import ChunkVectorizer, decoder_chunks, encoder_label, passage_tokens
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPassage:
    """One training text cut into chunks: its decoder tokens, tokens per chunk, and frozen chunk vectors."""

    ids: list[int]
    tokens: np.ndarray  # int32 [chunks]
    vectors: np.ndarray  # float32 [chunks, dim]

    def first(self, chunks: int) -> tuple[np.ndarray, list[int]]:
        """The vectors of the first ``chunks`` chunks and the tokens they tile."""
        return self.vectors[:chunks], self.ids[: int(self.tokens[:chunks].sum())]


def training_passages(generator, encoder, texts: Sequence[str], k: int) -> list[TrainingPassage]:
    """Training passages from ``texts`` (each chunked and encoded once: the encoder is frozen)."""
    tokenizer = generator.tokenizer
    vectors = ChunkVectorizer(tokenizer, encoder, [k], generator.label).encode(list(texts))[k]
    return [TrainingPassage(passage_tokens(tokenizer, t)[0], decoder_chunks(tokenizer, t, k)[1], v.astype(np.float32))
            for t, (_, v) in zip(texts, vectors) if t.strip()]


def reconstruction_loss(model, projector: ChunkProjector, batch: Sequence[tuple[np.ndarray, list[int]]]) -> torch.Tensor:
    """Mean cross-entropy of the decoder reproducing each example's tokens from its projected chunk vectors."""
    device = next(projector.parameters()).device
    embed = model.get_input_embeddings()
    rows, targets = [], []
    for vectors, ids in batch:
        ids_t = torch.tensor(ids, device=device)
        rows.append(torch.cat([projector(torch.from_numpy(vectors).to(device)), embed(ids_t[:-1])]))
        target = torch.full((len(rows[-1]),), -100, device=device)
        target[len(vectors) - 1:] = ids_t  # position c-1+t predicts x_{t+1}
        targets.append(target)
    width = max(len(r) for r in rows)
    inputs = torch.stack([torch.nn.functional.pad(r, (0, 0, 0, width - len(r))) for r in rows])  # right-padded [B, N, H]
    mask = torch.stack([torch.arange(width, device=device) < len(r) for r in rows]).long()
    labels = torch.stack([torch.nn.functional.pad(t, (0, width - len(t)), value=-100) for t in targets])
    logits = model(inputs_embeds=inputs, attention_mask=mask).logits  # [B, N, vocab]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def train_reconstruction(generator, encoder, texts: Sequence[str], k: int, steps: int = 1000, batch_size: int = 8,
                         lr: float = 1e-4, max_chunks: int = 8, seed: int = 0) -> tuple[ChunkProjector, list[float]]:
    """A projector for ``generator`` and ``encoder`` at chunk size ``k``, trained by reconstruction on ``texts``;
    and the loss of every step."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = generator.model.eval()
    model.requires_grad_(False)  # the decoder is frozen: only the projector learns
    hidden = int(model.get_input_embeddings().weight.shape[1])
    train = training_passages(generator, encoder, texts, k)
    spec = ProjectorSpec(generator.label, hidden, encoder_label(encoder.name), int(encoder.dim), k)
    projector = ChunkProjector(spec).to(generator.device)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        chunks = 1 + (max_chunks - 1) * step // max(steps, 1)  # curriculum: 1 chunk first, max_chunks by the end
        loss = reconstruction_loss(model, projector, [p.first(chunks) for p in rng.choices(train, k=batch_size)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        log.info("step %d/%d: %d chunk(s), reconstruction loss %.4f", step + 1, steps, chunks, losses[-1])
    projector.trained = {"stage": "reconstruction (decoder and encoder frozen)", "steps": steps, "batch_size": batch_size,
                         "lr": lr, "max_chunks": max_chunks, "passages": len(train), "seed": seed, "final_loss": losses[-1] if losses else None}
    return projector.eval(), losses
