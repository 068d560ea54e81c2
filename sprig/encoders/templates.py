"""Prompt templates with ``{text}`` slots, for the encoders that prompt a causal LM.

The template is tokenised piece by piece and each text once; a prompt is the pieces' ids with the text's
ids in every slot. So every copy of a text is exactly the text's own tokens, at positions known
without searching (tokenising the filled-in string could merge tokens across a slot's edge), and a text is
truncated to ``max_length`` tokens per copy. PromptReps' own collator builds its inputs the same way
(prefix ids + text ids + suffix ids).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sprig.core.errors import SprigError

SLOT = "{text}"


@dataclass(frozen=True)
class Prompts:
    """A right-padded batch: ``last_copy`` marks the positions of each text's last copy."""

    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64
    last_copy: torch.Tensor  # [B, T] bool

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)


class PromptTemplate:
    """``template`` with ``slots`` allowed counts of ``{text}`` (checked before any model loads); ``field``
    names the setting in the error."""

    def __init__(self, template: str, field: str, slots: Sequence[int] = (1,)):
        count = template.count(SLOT)
        if count not in slots:
            raise SprigError(f"{field} {template!r} has {count} {SLOT} slot(s); expected {' or '.join(map(str, slots))}")
        self.template, self.parts = template, template.split(SLOT)

    def batch(self, tokenizer, texts: Sequence[str], max_length: int, device: str | torch.device = "cpu") -> Prompts:
        # The first piece gets the tokenizer's special prefix (BOS for Llama, Gemma, Mistral; none for Qwen, SmolLM2).
        pieces = [tokenizer(part, add_special_tokens=i == 0)["input_ids"] for i, part in enumerate(self.parts)]
        text_ids = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        rows, spans = [], []
        for ids in text_ids:
            row = list(pieces[0])
            for piece in pieces[1:]:
                start = len(row)
                row += ids + piece
            rows.append(row)
            spans.append((start, start + len(ids)))
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        last_copy = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (row, (start, stop)) in enumerate(zip(rows, spans)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
            last_copy[i, start:stop] = True
        return Prompts(input_ids.to(device), attention_mask.to(device), last_copy.to(device))
