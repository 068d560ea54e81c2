"""The models `sprig train sparse` trains, each seen as a SPLADE encoder with autograd on.

``siamese``: one masked-LM SPLADE encoder for queries and documents (SPLADE-tiny fine-tuned: the same-data control).
``inference-free``: the same document encoder; a query is its tokenizer ids weighted by a static IDF table (Geng et
al. 2024), computed over the training corpora and shipped with the model as ``idf.json``, so no model runs at query
time. ``decoder``: echo SPLADE over a causal LM (sprig.encoders.decoder_splade) with LoRA adapters on the
transformer's projections and the tied LM head frozen; only the adapter is saved.

Each student is also a sprig sparse encoder (``encode_documents`` / ``encode_queries`` / ``vocab_size``), so the
dev evaluation runs it through the same brute-force retriever as `sprig eval beir`. Masked students train in
float32 (TF32 matmuls on CUDA) because AdamW updates of 1e-4 vanish in bf16 weights; they are saved in bf16
(SPLADE-tiny: 4.4M parameters, 8.8 MB), which sprig loads into float32 on CPU. The decoder's frozen base stays in
the encoder's dtype (bf16 on CUDA); peft keeps the LoRA weights in float32.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import SpladeConfig, TrainConfig
from sprig.core.errors import SprigError
from sprig.core.types import SparseVec
from sprig.encoders.bm25 import lucene_idf
from sprig.encoders.decoder_splade import DecoderSpladeEncoder
from sprig.encoders.inference_free import document_frequencies, lookup
from sprig.encoders.lora_adapter import require_peft, write_base, write_head_bias
from sprig.encoders.splade import SpladeEncoder


def keep_top_k(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's ``k`` largest weights, the rest zero (``k`` 0 or at least the width: unchanged); the gradient
    reaches the kept weights only, as for the vectors the index stores (to_sparse_vecs' top-k)."""
    if not k or k >= weights.shape[1]:
        return weights
    kept = weights.topk(k, dim=1).indices
    return torch.zeros_like(weights).scatter(1, kept, weights.gather(1, kept))


def dense_rows(vecs: Sequence[SparseVec], vocab_size: int, device: str) -> torch.Tensor:
    """SparseVecs as a float32 [len(vecs), vocab_size] tensor (query sides that have no model)."""
    out = torch.zeros(len(vecs), vocab_size)
    for row, vec in enumerate(vecs):
        out[row, torch.from_numpy(vec.term_ids.astype(np.int64))] = torch.from_numpy(vec.weights)
    return out.to(device)


class SiameseStudent:
    """A masked-LM SPLADE encoder (all weights trained, the tied MLM head included) for both sides."""

    encodes_queries = True
    score_scale: float | str = 1.0  # TrainConfig.score_scale's default for this student: SPLADE-tiny's raw scores are O(10)

    idf: np.ndarray  # float32 [vocab]: corpus IDF of the training corpora (fit_idf), for IDF-aware FLOPS and inference-free queries

    def __init__(self, config: TrainConfig, device: str):
        splade = SpladeConfig(model=config.init, backbone="masked", doc_max_length=config.doc_max_length,
                              query_max_length=config.query_max_length)
        self.encoder, self.device = SpladeEncoder(splade, "cpu"), device  # float32 master weights, moved below
        named = {p.data_ptr(): n for n, p in self.encoder.model.named_parameters()}
        head = [named[t.data_ptr()] if t is not None else None for t in (self.encoder.weight, self.encoder.bias)]
        self.encoder.model.to(device).train()
        self.encoder.device = device
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 weights, TF32 matmuls on CUDA
        # The encoder holds detached views of the head; train the Parameters themselves (tied to the input embeddings).
        self.encoder.weight, self.encoder.bias = (self.encoder.model.get_parameter(n) if n else None for n in head)

    @property
    def vocab_size(self) -> int:
        return self.encoder.vocab_size

    def fit_idf(self, corpus_texts: Iterable[str]) -> None:
        """idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) over the student's tokenizer ids, as sprig.encoders.inference_free."""
        df, n_docs = document_frequencies(self.encoder.tokenizer, corpus_texts, self.vocab_size)
        self.idf = lucene_idf(df, n_docs).astype(np.float32)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.encoder.model.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        self.encoder.model.train(mode)

    def doc_weights(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encoder.weights_with_grad(texts, self.encoder.doc_max_length)

    def query_weights(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encoder.weights_with_grad(texts, self.encoder.query_max_length)

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        return self.encoder.encode_documents(texts, progress)

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        return self.encoder.encode_queries(texts, progress)

    def state(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the trained weights (the best dev checkpoint is kept this way)."""
        return {k: v.detach().cpu().clone() for k, v in self.encoder.model.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.encoder.model.load_state_dict(state)

    def save(self, folder: Path) -> None:
        """A masked-LM folder (bf16 safetensors + tokenizer) that `--splade-model FOLDER` loads. The output projection
        is the identity while training; its weight is tied to the input embeddings and its bias is the prediction
        head's own parameter, so the saved state is the whole MLM."""
        folder.mkdir(parents=True, exist_ok=True)
        bf16 = {k: v.detach().to(torch.bfloat16) for k, v in self.encoder.model.state_dict().items()}
        self.encoder.model.save_pretrained(folder, state_dict=bf16)
        self.encoder.tokenizer.save_pretrained(folder)


class InferenceFreeStudent(SiameseStudent):
    """Documents through the trained SPLADE encoder; queries through a static IDF table (``fit_idf``), never a model."""

    encodes_queries = False

    def query_weights(self, texts: Sequence[str]) -> torch.Tensor:
        return dense_rows(self.encode_queries(texts), self.vocab_size, self.device)

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        ids = self.encoder.tokenizer(list(texts), add_special_tokens=False, truncation=True)["input_ids"]
        return [lookup(row, self.idf) for row in ids]

    def save(self, folder: Path) -> None:
        """The MLM folder plus ``idf.json`` ({token: weight}, OpenSearch's format), which sprig's inference-free mode
        reads with ``inference_free.query_weights=model``."""
        super().save(folder)
        tokens = self.encoder.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        (folder / "idf.json").write_text(json.dumps({t: round(float(w), 5) for t, w in zip(tokens, self.idf) if w > 0}))


class DecoderStudent(SiameseStudent):
    """Echo SPLADE over a causal LM; LoRA adapters on ``config.lora_targets`` are the only trained weights.

    An untrained causal head gives every id a positive logit, so its echo vectors are dense (SmolLM2: all 49,152 ids,
    weights ~2.9) and its raw scores ~4e5, ~8e3 apart within a query: over raw scores InfoNCE and KL start near 10^4
    and their gradients saturate clipping. Its scores are therefore scaled ("auto", sprig.train.loop.score_scale)."""

    score_scale = "auto"

    def __init__(self, config: TrainConfig, device: str):
        peft = require_peft("--student decoder")
        LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model

        splade = SpladeConfig(model=config.init, gguf_file=config.gguf_file, backbone="causal", doc_max_length=config.doc_max_length,
                              query_max_length=config.query_max_length, expansion=config.expansion)
        self.encoder, self.device = DecoderSpladeEncoder(splade, device), device
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_targets))
        # get_peft_model injects the LoRA layers into encoder.model in place, so the encoder's body runs them; the
        # head weight the encoder projects with is a detached tensor, frozen whatever peft does.
        self.peft = get_peft_model(self.encoder.model, lora)
        self.peft.train()
        self.prune = config.prune_in_training

    def centre_head(self, texts: Sequence[str], count: int) -> None:
        """Give the head ``centring_bias`` of ``count`` of ``texts`` spread evenly, kept frozen through training and
        saved with the adapter (so the index and its queries use the bias the adapter was trained with)."""
        sample = list(texts[:: max(1, len(texts) // count)][:count])
        self.encoder.bias = self.encoder.centring_bias(sample, self.encoder.doc_max_length)

    def doc_weights(self, texts: Sequence[str]) -> torch.Tensor:
        weights = super().doc_weights(texts)
        return keep_top_k(weights, self.encoder.doc_top_k) if self.prune else weights

    def query_weights(self, texts: Sequence[str]) -> torch.Tensor:
        weights = super().query_weights(texts)
        return keep_top_k(weights, self.encoder.query_top_k) if self.prune else weights

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.peft.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        self.peft.train(mode)

    def state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict  # present: the constructor required it

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.peft).items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.peft, state)

    def save(self, folder: Path) -> None:
        """A LoRA adapter folder (sprig.encoders.lora_adapter) that `--adapter FOLDER` loads over its recorded base."""
        self.peft.save_pretrained(folder)
        write_base(folder, self.encoder.lm, self.encoder.expansion)
        if self.encoder.bias is not self.encoder.lm.bias:  # centred (centre_head)
            write_head_bias(folder, self.encoder.bias)


def make_student(config: TrainConfig, device: str, corpus_texts: Iterable[str]) -> SiameseStudent:
    """The student ``config.student`` names, with the IDF of ``corpus_texts`` (the training corpora)."""
    kinds = {"inference-free": InferenceFreeStudent, "siamese": SiameseStudent, "decoder": DecoderStudent}
    if config.student != "decoder" and (config.head_centring_docs or not config.expansion):
        option = "head_centring_docs centres" if config.head_centring_docs else "expansion=false restricts"
        raise SprigError(f"train.{option} a causal LM's head: it needs --student decoder, not {config.student}")
    student = kinds[config.student](config, device)
    texts = list(corpus_texts)
    student.fit_idf(texts)
    if config.head_centring_docs:
        student.centre_head(texts, config.head_centring_docs)
    return student
