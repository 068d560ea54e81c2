"""REFRAG training (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding", §3): what every stage shares.

Every stage trains the projector alone, with the decoder and the chunk encoder frozen (the paper trains the
encoder too; ours stays frozen so the chunk vectors stored in an index stay valid for any trained projector).
Every stage's example is one decoder input, token ids with ``EMBEDDED`` where a projected chunk vector goes,
and a target token per position: reconstruction reads a passage's chunks and reproduces their tokens,
continual pre-training reads a paragraph's chunks and predicts the next paragraph, QA fine-tuning reads the
answer path's prompt and predicts the gold answer (sprig.rag.refrag_stages builds them).
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from sprig.encoders.causal_lm import soft_cap
from sprig.encoders.chunk_vectors import (
    ChunkVectorizer,
    decoder_chunks,
    encoder_label,
    passage_tokens,
)
from sprig.rag.generator import EMBEDDED
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec

log = logging.getLogger(__name__)

IGNORE = -100  # a position without a target (cross_entropy's ignore_index)


@dataclass(frozen=True)
class Example:
    """One training sequence: decoder input positions, the chunk vectors of its ``EMBEDDED`` positions (in
    order), and the token each position must predict next (``IGNORE``: none)."""

    ids: list[int]
    vectors: np.ndarray  # float32 [ids.count(EMBEDDED), encoder dim]
    labels: list[int]


def continuation(prefix: Sequence[int], vectors: np.ndarray, target: Sequence[int]) -> Example:
    """The decoder reads ``prefix`` (with ``vectors`` at its EMBEDDED positions), then ``target`` teacher-forced:
    the last prefix position predicts target[0], and target[t] predicts target[t + 1]."""
    return Example([*prefix, *target[:-1]], vectors, [IGNORE] * (len(prefix) - 1) + list(target))


@dataclass(frozen=True)
class TrainingPassage:
    """One text cut into chunks: its decoder tokens, tokens per chunk, and frozen chunk vectors."""

    ids: list[int]
    tokens: np.ndarray  # int32 [chunks]
    vectors: np.ndarray  # float32 [chunks, dim]

    def first(self, chunks: int) -> tuple[np.ndarray, list[int]]:
        """The vectors of the first ``chunks`` chunks and the tokens they tile."""
        return self.vectors[:chunks], self.ids[: int(self.tokens[:chunks].sum())]


def training_passages(generator, encoder, texts: Sequence[str], k: int) -> list[TrainingPassage]:
    """One TrainingPassage per text (empty texts give none), each chunked and encoded once: the encoder is frozen."""
    texts = [t for t in texts if t.strip()]
    tokenizer = generator.tokenizer
    vectors = ChunkVectorizer(tokenizer, encoder, [k], generator.label).encode(texts)[k]
    return [TrainingPassage(passage_tokens(tokenizer, t)[0], decoder_chunks(tokenizer, t, k)[1], v.astype(np.float32))
            for t, (_, v) in zip(texts, vectors)]


def new_projector(generator, encoder, k: int, seed: int = 0) -> ChunkProjector:
    """An untrained projector from ``encoder``'s chunk vectors into ``generator``'s input space, for chunks of k tokens."""
    torch.manual_seed(seed)
    hidden = int(generator.model.get_input_embeddings().weight.shape[1])
    spec = ProjectorSpec(generator.label, hidden, encoder_label(encoder.name), int(encoder.dim), k)
    return ChunkProjector(spec).to(generator.device)


def predictions(model, projector: ChunkProjector, batch: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [targets, vocab], targets [targets]) at the labelled positions of a right-padded batch; only
    those positions go through the LM head."""
    device = next(projector.parameters()).device
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)], labels[row, : len(e.labels)] = torch.tensor(e.ids), torch.tensor(e.labels)
    mask = torch.arange(width)[None, :] < torch.tensor([len(e.ids) for e in batch])[:, None]
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    x = model.get_input_embeddings()(ids.clamp(min=0))  # [B, N, H]; padding is id 0, never EMBEDDED
    vectors = torch.from_numpy(np.concatenate([e.vectors for e in batch]).astype(np.float32)).to(device)
    x[ids == EMBEDDED] = projector(vectors).to(x.dtype)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        states = model.get_decoder()(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state
        keep = labels != IGNORE
        logits = model.get_output_embeddings()(states[keep])
    return soft_cap(logits.float(), getattr(model.config, "final_logit_softcapping", None)), labels[keep]


def token_accuracy(model, projector: ChunkProjector, examples: Sequence[Example], batch_size: int = 32) -> float:
    """Fraction of the labelled positions whose greedy (argmax) token is the target, teacher-forced."""
    right = total = 0
    with torch.no_grad():
        for at in range(0, len(examples), batch_size):
            logits, targets = predictions(model, projector, examples[at : at + batch_size])
            right += int((logits.argmax(-1) == targets).sum())
            total += len(targets)
    return right / max(total, 1)


def fit(model, projector: ChunkProjector, next_batch: Callable[[float], list[Example]], steps: int, lr: float,
        max_seconds: float | None = None, stage: str = "") -> list[float]:
    """Train ``projector`` (the decoder frozen) for ``steps`` steps or ``max_seconds``, whichever ends first; the
    loss of every step (NaN for a step skipped as non-finite). ``next_batch(progress)`` gives a step's examples, progress in [0, 1) (curricula)."""
    model.eval().requires_grad_(False)
    projector.train()
    optimizer = torch.optim.AdamW(projector.parameters(), lr=lr)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    start, losses = time.perf_counter(), []
    bar = tqdm(total=steps, desc=f"REFRAG {stage}", unit="step", mininterval=5)
    for step in range(steps):
        elapsed = time.perf_counter() - start
        if max_seconds is not None and elapsed >= max_seconds:
            log.info("%s: time budget of %.0f s reached after %d of %d steps", stage, max_seconds, step, steps)
            break
        logits, targets = predictions(model, projector, next_batch(max(step / steps, elapsed / (max_seconds or float("inf")))))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        # A non-finite loss or gradient (seen with Gemma 3 in bf16 on long QA prompts) would turn every weight into
        # NaN for good: skip that step, and record it as NaN so the stage report counts it.
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)):
            optimizer.step()
            losses.append(loss.item())
        else:
            losses.append(float("nan"))
        schedule.step()
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    projector.eval()
    return losses


def sampler(examples: Sequence[Example], batch_size: int, seed: int) -> Callable[[float], list[Example]]:
    """``next_batch`` for ``fit``: batches drawn at random from a fixed list of examples."""
    rng = random.Random(seed)
    return lambda _progress: rng.choices(examples, k=batch_size)
