"""PromptReps: a dense and a sparse vector from one prompted forward pass of any causal LM, no training.

Zhuang et al., EMNLP 2024 ("PromptReps: Prompting Large Language Models to Generate Dense and Sparse
Representations for Zero-Shot Document Retrieval") ask the LM for one word that represents the text and read
the prompt's last token:
- dense: its final hidden state, L2-normalised (inner product = cosine), for the FAISS index;
- sparse: its next-token logits through log(1 + ReLU(.)), kept only on the ids of the text's own words
  (lowercased, English stopwords dropped, each word tokenised alone, at most ``max_terms`` of the heaviest),
  as the authors' encode.py does (with Lucene's stopwords for NLTK's), for the inverted index.
Hybrid search fuses the two retrievers' runs (sprig.retriever.fusion; the paper: min-max normalised, equal weights).

Only the head rows of the batch's words are multiplied, never the whole vocabulary. One encoder fills both
slots of an index through its ``sparse`` and ``dense`` views, and keeps its last batch: the second view asked
for the same texts (EncoderSet.encode at build time, Searcher.runs for a hybrid query) reuses the first one's
forward pass instead of running the model again.
"""
from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from sprig.core.config import Device, PromptRepsConfig, resolve_device
from sprig.core.types import SparseVec
from sprig.encoders.batching import length_sorted_batches
from sprig.encoders.bm25 import LUCENE_STOPWORDS
from sprig.encoders.causal_lm import load_causal_lm, soft_cap
from sprig.encoders.templates import PromptTemplate

Side = Literal["doc", "query"]
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Reps:
    sparse: list[SparseVec]
    dense: np.ndarray  # float32 [texts, hidden], unit rows


def word_ids(tokenizer, text: str, vocab_size: int) -> np.ndarray:
    """Sorted ids of the text's words: lowercased, stopwords dropped, each word tokenised on its own (the
    form the model would write after the prompt's opening quote)."""
    words = sorted({w for w in _WORD.findall(text.lower()) if w not in LUCENE_STOPWORDS})
    if not words:
        return np.zeros(0, np.int64)
    ids = np.unique(np.concatenate([np.asarray(t, np.int64) for t in tokenizer(words, add_special_tokens=False)["input_ids"]]))
    return ids[ids < vocab_size]


class PromptRepsEncoder:
    """PromptReps over any AutoModelForCausalLM (default: SmolLM2-135M-Instruct GGUF); see the module docstring."""

    def __init__(self, config: PromptRepsConfig = PromptRepsConfig(), device: Device = "auto"):
        self.templates = {"doc": PromptTemplate(config.doc_template, "promptreps.doc_template"),
                          "query": PromptTemplate(config.query_template, "promptreps.query_template")}
        self.device = resolve_device(device)
        self.config = config
        self.lm = load_causal_lm(config.model, config.gguf_file, self.device, "PromptReps")
        self.max_length = {"doc": config.doc_max_length, "query": config.query_max_length}
        self.vocab = self.lm.vocab()
        self.vocab_size, self.dim = len(self.vocab), int(self.lm.weight.shape[1])
        self.sparse, self.dense = PromptRepsHalf(self, "sparse"), PromptRepsHalf(self, "dense")
        self._last: tuple[tuple, Reps] | None = None
        self._lock = threading.Lock()

    def settings(self) -> dict:
        recorded = self.config.model_dump(include={"doc_template", "query_template", "doc_max_length", "query_max_length", "max_terms"})
        return self.lm.recorded() | recorded

    def encode(self, texts: Sequence[str], side: Side, progress: bool = False) -> Reps:
        """Both vectors of each text; the last call's result again when asked for the same texts and side."""
        key = (side, tuple(texts))
        with self._lock:
            if self._last is not None and self._last[0] == key:
                return self._last[1]
        sparse: list[SparseVec] = [SparseVec.empty()] * len(texts)
        dense = np.zeros((len(texts), self.dim), np.float32)
        for idx, batch in length_sorted_batches(texts, self.config.batch_size, progress, f"PromptReps {side}s"):
            vecs, dense[idx] = self.encode_batch(batch, side)
            for i, vec in zip(idx, vecs):
                sparse[i] = vec
        reps = Reps(sparse, dense)
        with self._lock:
            self._last = (key, reps)
        return reps

    @torch.inference_mode()
    def encode_batch(self, texts: Sequence[str], side: Side) -> tuple[list[SparseVec], np.ndarray]:
        prompts = self.templates[side].batch(self.lm.tokenizer, texts, self.max_length[side], self.device)
        hidden = self.lm.body(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, use_cache=False).last_hidden_state  # one pass: no KV cache
        last = hidden[torch.arange(len(texts), device=hidden.device), prompts.lengths - 1]  # [B, H]: predicts the word
        words = [word_ids(self.lm.tokenizer, t, self.vocab_size) for t in texts]
        union = np.unique(np.concatenate(words))
        weights = self.next_word_weights(last, torch.as_tensor(union, device=hidden.device)).cpu().numpy()  # [B, U]
        vecs = []
        for row, ids in zip(weights, words):
            w = row[np.searchsorted(union, ids)]
            keep = w > 0
            vecs.append(SparseVec(ids[keep].astype(np.int32), w[keep]).top(self.config.max_terms))
        return vecs, torch.nn.functional.normalize(last.float(), dim=-1).cpu().numpy()

    def next_word_weights(self, last: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """log(1 + ReLU(next-token logit)) of ``ids`` only: float32 [B, len(ids)]."""
        logits = (last @ self.lm.weight[ids].T).float()
        if self.lm.bias is not None:
            logits += self.lm.bias[ids].float()
        return torch.log1p(torch.relu(soft_cap(logits, self.lm.softcap)))


class PromptRepsHalf:
    """One half of a PromptRepsEncoder in the interface of the index slot it fills: "sparse" gives SparseVecs
    over the LM's vocabulary, "dense" float32 rows. The index records the encoder's settings with the sparse
    half; the dense half records only that it is PromptReps'."""

    def __init__(self, encoder: PromptRepsEncoder, half: Literal["sparse", "dense"]):
        self.encoder, self.half = encoder, half
        self.vocab, self.vocab_size, self.dim = encoder.vocab, encoder.vocab_size, encoder.dim

    def settings(self) -> dict:
        return self.encoder.settings() if self.half == "sparse" else {"model": "promptreps"}

    def encode_documents(self, texts: Sequence[str], progress: bool = False):
        return getattr(self.encoder.encode(texts, "doc", progress), self.half)

    def encode_queries(self, texts: Sequence[str], progress: bool = False):
        return getattr(self.encoder.encode(texts, "query", progress), self.half)


def promptreps_encoder(config: PromptRepsConfig, device: Device = "auto") -> PromptRepsEncoder:
    """One encoder per settings and device in a process, so an index's two halves share the model and each pass."""
    return _shared(config.model_dump_json(), device)


@functools.lru_cache(maxsize=2)
def _shared(config_json: str, device: Device) -> PromptRepsEncoder:
    return PromptRepsEncoder(PromptRepsConfig.model_validate_json(config_json), device)
