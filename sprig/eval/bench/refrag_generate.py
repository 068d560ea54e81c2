"""Batched greedy generation for the REFRAG benchmark: thousands of prompts (token ids, or REFRAG's
``EmbeddedPrompt``) answered on a GPU in minutes.

The answer path (sprig.rag.generator) decodes one sequence at a time, which is what a served request does
and what TTFT is measured on; an evaluation of 13 rows x ~1,400 questions needs batches. transformers'
``generate`` takes ``inputs_embeds`` with a left-padded attention mask (it derives the positions from the
mask), so token prompts and embedded prompts go through the same call. Answers end at the first line
break, as `sprig eval qa`'s stop string ends them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from sprig.rag.generator import EmbeddedPrompt

Prompt = list[int] | EmbeddedPrompt


def prompt_embeddings(generator, prompt: Prompt) -> torch.Tensor:
    """[positions, hidden]: the decoder input of one prompt, as the answer path feeds it."""
    ids, embeds = (prompt.ids, prompt.embeds) if isinstance(prompt, EmbeddedPrompt) else (prompt, None)
    inputs = generator.prompt_inputs(ids, embeds)
    if "inputs_embeds" in inputs:
        return inputs["inputs_embeds"][0]
    return generator.model.get_input_embeddings()(inputs["input_ids"])[0]


def generate_batch(generator, prompts: Sequence[Prompt], max_new_tokens: int = 24, batch_size: int = 64,
                   desc: str = "generate") -> list[str]:
    """Greedy answers to ``prompts``, in order, cut at the first line break; prompts of similar length share a batch."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    eos = sorted(generator.eos_ids)
    answers: list[str] = [""] * len(prompts)
    with torch.inference_mode():
        for at in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", mininterval=5):
            chunk = order[at : at + batch_size]
            rows = [prompt_embeddings(generator, prompts[i]) for i in chunk]
            width = max(len(r) for r in rows)
            x = torch.stack([torch.nn.functional.pad(r, (0, 0, width - len(r), 0)) for r in rows])  # left-padded [B, N, H]
            mask = torch.stack([torch.arange(width, device=x.device) >= width - len(r) for r in rows]).long()
            out = generator.model.generate(inputs_embeds=x, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                           eos_token_id=eos, pad_token_id=eos[0])
            for i, ids in zip(chunk, out):
                answers[i] = generator.tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0].strip()
    return answers
