"""Dense sentence embeddings from any sentence-transformers folder or HF id, without sentence-transformers.

Pooling (cls / mean / max / last token), max length, query/document prompts and L2 normalisation are
read from the model's own sentence-transformers files (modules.json, 1_Pooling/config.json,
sentence_bert_config.json, config_sentence_transformers.json), so the vectors equal
SentenceTransformer.encode while we keep control of batching, dtype and device. On CPU documents run in
``dense.cpu_dtype`` (auto: bfloat16 where the CPU has bf16 units), in batches sorted by token count.
"""
from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import DenseConfig, Device
from sprig.core.errors import SprigError
from sprig.core.models import default_dense, local_folder, recorded, resolve
from sprig.encoders.batching import map_batches, token_lengths
from sprig.encoders.device_paths import cpu_precision, encoding_device


@dataclass
class DenseSpec:
    """How a sentence-transformers model turns token states into one vector."""

    pooling: str = "mean"  # cls | mean | max | lasttoken
    normalize: bool = False
    query_prompt: str = ""
    document_prompt: str = ""


def _read_json(path: Path) -> dict | list:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_spec(model_dir: Path) -> DenseSpec:
    spec = DenseSpec()
    modules = _read_json(model_dir / "modules.json") or []
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            cfg = _read_json(model_dir / module.get("path", "") / "config.json")
            for mode in ("cls_token", "mean_tokens", "max_tokens", "lasttoken"):
                if cfg.get(f"pooling_mode_{mode}"):
                    spec.pooling = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
                    break
        elif kind.endswith("Normalize"):
            spec.normalize = True
    prompts = _read_json(model_dir / "config_sentence_transformers.json").get("prompts", {}) or {}
    spec.query_prompt, spec.document_prompt = prompts.get("query", ""), prompts.get("document", prompts.get("passage", ""))
    return spec


def pool(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Token states [B, T, H] + attention mask [B, T] -> [B, H]."""
    m = mask.unsqueeze(-1).to(states.dtype)
    if how == "cls":
        return states[:, 0]
    if how == "mean":
        return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "max":
        return states.masked_fill(m == 0, float("-inf")).max(1).values
    if how == "lasttoken":  # right padding: the last real token of each row
        return states[torch.arange(states.shape[0]), mask.sum(1) - 1]
    raise SprigError(f"unknown pooling '{how}' (expected cls, mean, max or lasttoken)")


class DenseEncoder:
    def __init__(self, config: DenseConfig = DenseConfig(), device: Device = "auto"):
        from transformers import AutoModel, AutoTokenizer

        self.name, self.recorded_model = resolve(config.model, default_dense), recorded(config.model)
        self.device = encoding_device(device)
        model_dir = local_folder(self.name, "dense model")
        self.spec = read_spec(model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModel.from_pretrained(model_dir)
        except (OSError, ValueError) as exc:
            raise SprigError(f"cannot load '{self.name}' as a transformer encoder: {str(exc).splitlines()[0]}") from None
        # bfloat16: documents and queries; auto: documents only (a bf16 copy), where the CPU has bf16 units. Queries
        # stay float32 under auto: a lone query gains little, and float32 keeps a served query's vector independent
        # of the queries it is micro-batched with.
        self.cpu_dtype, self.doc_dtype = config.cpu_dtype, cpu_precision(config.cpu_dtype, self.device)
        dtype = torch.bfloat16 if self.device == "cuda" or self.cpu_dtype == "bfloat16" else torch.float32
        self.model = self.model.to(device=self.device, dtype=dtype).eval()
        self.max_length = config.max_length
        self.batch_size, self.query_batch_size = config.batch_size, config.query_batch_size
        self.dim = int(self.model.config.hidden_size)

    def settings(self) -> dict:
        return {"model": self.recorded_model, "max_length": self.max_length, "pooling": self.spec.pooling, "normalize": self.spec.normalize,
                "cpu_dtype": self.cpu_dtype, "doc_dtype": self.doc_dtype}  # doc_dtype: what "auto" resolved to for the documents

    def path(self) -> str:
        """The encoding path documents take here, for `sprig index`'s log."""
        return f"{self.device}, bfloat16" if self.device != "cpu" else f"cpu, {self.doc_dtype}, {torch.get_num_threads()} torch thread(s)"

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.encode([self.spec.query_prompt + t for t in texts], progress, "dense queries", batch_size=self.query_batch_size)

    @functools.cached_property
    def doc_model(self):
        """The model documents go through: a bf16 copy under auto on a bf16 CPU, made at the first document batch so
        a server that only encodes queries never holds it; else the query model itself."""
        if self.device == "cpu" and self.doc_dtype == "bfloat16" and self.model.dtype != torch.bfloat16:
            return copy.deepcopy(self.model).to(torch.bfloat16)
        return self.model

    def encode_documents(self, texts: Sequence[str], progress: bool = False, workers: int = 1) -> np.ndarray:
        """``workers``: threads for the batches. One by default: MiniLM's products are large enough for torch's own
        threads (on an idle 2-core box two one-thread workers ran at 0.56x of one two-thread loop; encoding.md)."""
        return self.encode([self.spec.document_prompt + t for t in texts], progress, "dense docs", workers, self.doc_model)

    def encode(self, texts: Sequence[str], progress: bool = False, label: str = "dense", workers: int = 1, model=None,
               batch_size: int | None = None) -> np.ndarray:
        """float32 [len(texts), dim] through ``model`` (default: the query model), ``batch_size`` texts per forward
        pass (default: the documents' ``batch_size``); with ``workers`` > 1, batches run on that many threads
        (sprig.encoders.batching)."""
        model = self.model if model is None else model
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths = token_lengths(self.tokenizer, texts, self.max_length)
        for idx, vecs in map_batches(self._tokens, lambda batch: self._vectors(model, batch), texts, batch_size or self.batch_size, workers,
                                     progress, label, lengths):
            out[idx] = vecs
        return out

    def _tokens(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)

    @torch.inference_mode()  # grad mode is per thread: set here, where the worker runs
    def _vectors(self, model, batch) -> np.ndarray:
        vecs = pool(model(**batch).last_hidden_state, batch["attention_mask"], self.spec.pooling).float()
        if self.spec.normalize:
            vecs = torch.nn.functional.normalize(vecs, dim=-1)
        return vecs.cpu().numpy()
