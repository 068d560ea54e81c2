"""SPLADE over a causal LM's head (Llama / SmolLM2, Gemma 3, Mistral, Qwen, ...), with echo input.

A causal LM's token t has attended only to tokens up to t, so pooling over one copy of a text gives its
early tokens weights that know nothing of the rest. Echo embeddings (Springer et al. 2024, "Repetition
Improves Language Model Embeddings") feed the text twice and read only the second copy, each token of
which has attended to the whole text; Mistral-SPLADE (Doshi et al. 2024, "Mistral-SPLADE: LLMs for better
Learned Sparse Retrieval") pools SPLADE weights that way:

    w_j = max over the second copy's real tokens t of log(1 + ReLU(logit_{t,j}))

with the LM head's logits. The head is projected in vocabulary chunks by ``splade_pool``, the function the
masked-LM encoder uses, so no [batch, tokens, vocab] tensor exists (Gemma 3's head is 262,144 wide).

Why the ``splade`` encoder kind and not a retrieval mode of its own: the output is a SPLADE vector over the
model's vocabulary, indexed, searched, fused and explained exactly like a masked LM's; only the encoder
differs. ``splade.backbone`` picks it (auto: any GGUF, or a config naming a causal architecture) and an
index records it with the template, so its queries are encoded as its documents were.

A LoRA adapter from `sprig train sparse --student decoder` (``splade.adapter``; sprig/encoders/lora_adapter.py) is
merged into the base at load time; the base is ``splade.model``, or the one the adapter records when that is "default".
An adapter trained with a centred head (``train.head_centring_docs``, ``centring_bias``) carries that bias too.

An untrained head (no Mistral-SPLADE fine-tuning) weighs nearly every id, so unless ``doc_top_k`` /
``query_top_k`` are set a document keeps its 512 largest weights and a query its 64 (SpladeConfig.top_k).
With ``splade.expansion`` false a text weighs only its own token ids (a lexical model: no expansion terms, no prune).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from sprig.core.config import Device, SpladeConfig, resolve_device
from sprig.core.models import is_default
from sprig.encoders.causal_lm import is_causal, load_causal_lm
from sprig.encoders.lora_adapter import load_with_adapter, read_base
from sprig.encoders.splade import SpladeEncoder, activate, max_logits, splade_pool
from sprig.encoders.templates import Prompts, PromptTemplate


class DecoderSpladeEncoder(SpladeEncoder):
    """SPLADE over any AutoModelForCausalLM (GGUF or safetensors; "default" = SmolLM2-135M-Instruct GGUF)."""

    backbone = "causal"

    def __init__(self, config: SpladeConfig = SpladeConfig(backbone="causal"), device: Device = "auto"):
        self.template = PromptTemplate(config.causal_template, "splade.causal_template", slots=(1, 2))
        self.device = resolve_device(device)
        self.adapter = config.adapter
        self.lm = (load_with_adapter(config.model, config.gguf_file, config.adapter, self.device, "decoder SPLADE") if config.adapter
                   else load_causal_lm(config.model, config.gguf_file, self.device, "decoder SPLADE"))
        self.name, self.tokenizer, self.model = self.lm.name, self.lm.tokenizer, self.lm.model
        self.recorded_model = self.lm.recorded()["model"]
        self.weight, self.bias = self.lm.weight, self.lm.bias
        if config.expansion is None:  # the adapter's own setting, so that its index encodes as it was trained
            config = config.model_copy(update={"expansion": read_base(config.adapter).get("expansion", True) if config.adapter else True})
        self.expansion = config.expansion
        self._configure(config, self.lm.vocab())

    def settings(self) -> dict:
        return super().settings() | {"gguf_file": self.lm.recorded()["gguf_file"], "causal_template": self.template.template,
                                    "adapter": self.adapter, "expansion": self.expansion}

    def weights_with_grad(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """SPLADE weights [len(texts), vocab] for one batch, pooled over each text's last copy."""
        prompts, states, lengths = self._last_copies(texts, max_length)
        if self.expansion:
            return splade_pool(states, lengths, self.weight, self.bias, self.vocab_chunk, self.lm.softcap)
        return self._own_id_weights(prompts.input_ids[prompts.last_copy].split(lengths), states.split(lengths))

    def _own_id_weights(self, ids: Sequence[torch.Tensor], states: Sequence[torch.Tensor]) -> torch.Tensor:
        """``splade_pool``'s weights on each text's own ids, 0 elsewhere [texts, vocab]: only those rows of the head are
        projected (a passage's ~130 of SmolLM2's 49,152), so its cost is that of the body alone."""
        rows, cols, values = [], [], []
        for row, (text_ids, tokens) in enumerate(zip(ids, states)):
            own = text_ids.unique()
            pooled = max_logits(tokens, [len(tokens)], self.weight[own], self.vocab_chunk)[0]
            rows.append(torch.full_like(own, row))
            cols.append(own)
            values.append(activate(pooled, None if self.bias is None else self.bias[own], self.lm.softcap))
        out = torch.zeros(len(ids), self.weight.shape[0], device=self.weight.device)
        return out.index_put((torch.cat(rows), torch.cat(cols)), torch.cat(values))

    @torch.no_grad()
    def centring_bias(self, texts: Sequence[str], max_length: int, batch_size: int = 16) -> torch.Tensor:
        """A head bias [vocab] that centres each id (in place of the head's own bias): minus its largest logit over a
        text's last copy, averaged over ``texts``. An untrained causal head ranks every text's ids by a shared prior
        (SmolLM2: every logit positive, each text's logits correlating 0.78 with the per-id mean), so its top-k is
        much the same set for every text; centred, the top-k is what sets a text apart from the average one
        (docs/benchmarks/decoder-sparse.md)."""
        total = torch.zeros(self.weight.shape[0], device=self.weight.device)
        for start in range(0, len(texts), batch_size):
            _, states, lengths = self._last_copies(texts[start : start + batch_size], max_length)
            total += max_logits(states, lengths, self.weight, self.vocab_chunk).sum(0)
        return -total / len(texts)

    def _last_copies(self, texts: Sequence[str], max_length: int) -> tuple[Prompts, torch.Tensor, list[int]]:
        """The prompts, the final token states of each text's last copy, packed [tokens, H], and their counts."""
        prompts = self.template.batch(self.tokenizer, texts, max_length, self.device)
        # use_cache=False: a single pass needs no KV cache, which would otherwise hold every layer's keys and values
        hidden = self.lm.body(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, use_cache=False).last_hidden_state
        return prompts, hidden[prompts.last_copy], prompts.last_copy.sum(1).tolist()


def splade_encoder(config: SpladeConfig, device: Device = "auto") -> SpladeEncoder:
    """The ``splade`` kind's encoder for ``config.backbone``; auto reads the checkpoint ("default" is SPLADE-tiny)."""
    causal = config.backbone == "causal" or (config.backbone == "auto" and (config.adapter is not None or not is_default(config.model)
                                                                        and is_causal(config.model, config.gguf_file)))
    return DecoderSpladeEncoder(config, device) if causal else SpladeEncoder(config, device)
