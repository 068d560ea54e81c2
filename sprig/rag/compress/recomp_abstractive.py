"""RECOMP abstractive compression (Xu et al. 2023, §2.3): an LM writes a query-focused summary of the
retrieved passages, or nothing when they do not help (selective augmentation).

RECOMP distils a T5 summariser from GPT-3.5; we prompt the answer generator itself, so no extra model
ships. The summary is capped at the token budget (and ``max_summary_tokens``, since every summary token
is a decode step paid before the answer's first token). A summary of "NONE" or nothing is empty.
"""
from __future__ import annotations

from collections.abc import Sequence

from sprig.core.types import Hit
from sprig.rag.compress.base import Compressed, Compressor, ContextBlock
from sprig.rag.prompt import format_passages

SUMMARY_SYSTEM = (
    "You compress documents for a question answering system. Copy the one or two sentences from the "
    "documents that answer the question. If no document helps, reply with exactly: NONE"
)


class RecompAbstractive(Compressor):
    mode = "recomp-abstractive"

    def __init__(self, generator, max_summary_tokens: int = 64):
        super().__init__(generator.count_tokens)
        self.generator = generator
        self.max_summary_tokens = max_summary_tokens

    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        input_tokens = self.input_tokens(passages)
        limit = min(budget, self.max_summary_tokens)
        if not passages or limit <= 0:
            return Compressed([], input_tokens, 0)
        messages = [
            {"role": "system", "content": SUMMARY_SYSTEM},
            {"role": "user", "content": f"Documents:\n{format_passages(passages)}\n\nQuestion: {query}"},
        ]
        summary, stats = self.generator.generate(messages, max_new_tokens=limit, stop=["\n\n"])
        summary = summary.strip()
        info = {"summary_tokens": stats.new_tokens, "summary_prompt_tokens": stats.prompt_tokens, "summary_s": stats.total_s}
        if not summary or summary.upper().rstrip(".").startswith("NONE"):
            return Compressed([], input_tokens, 0, info)
        block = ContextBlock(summary, [p.passage_id for p in passages], "Summary")
        return Compressed([block], input_tokens, self.count_tokens(summary), info)
