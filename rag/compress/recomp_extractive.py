"""RECOMP extractive compression (Xu et al. 2023, §2.2): keep the retrieved sentences most similar to
the query, in their original order, up to a token budget.

RECOMP trains a contriever-style dual encoder for this; we score with the index's dense encoder
(all-MiniLM-L6-v2 by default), so no extra model ships. Sentences are taken best-first while they fit
the budget, then put back in passage and sentence order so each passage's kept sentences read as one
block and citations still point at real passages.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.compress.base import Compressed, Compressor, ContextBlock, TokenCounter
from rag.compress.sentences import split_sentences
from sprig.types import Hit


class RecompExtractive(Compressor):
    mode = "recomp-extractive"

    def __init__(self, count_tokens: TokenCounter, encoder):
        """``encoder`` has ``encode_queries`` / ``encode_documents`` -> float32 [n, dim] (DenseEncoder)."""
        super().__init__(count_tokens)
        self.encoder = encoder

    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        units = [(p, n, s) for p in passages for n, s in enumerate(split_sentences(p.text))]
        input_tokens = self.input_tokens(passages)
        if not units or budget <= 0:
            return Compressed([], input_tokens, 0)
        scores = self.encoder.encode_documents([s for _, _, s in units]) @ self.encoder.encode_queries([query])[0]  # [sentences]
        lengths = [self.count_tokens(s) for _, _, s in units]
        kept, used = [], 0
        for i in np.argsort(-scores, kind="stable"):
            if used + lengths[i] <= budget:
                kept.append(int(i))
                used += lengths[i]
        blocks: list[ContextBlock] = []
        for i in sorted(kept):  # units are already in passage order, then sentence order
            passage, _, sentence = units[i]
            if blocks and blocks[-1].passage_ids == [passage.passage_id]:
                blocks[-1].text += " " + sentence
            else:
                blocks.append(ContextBlock(sentence, [passage.passage_id], passage.title))
        output_tokens = sum(self.count_tokens(b.text) for b in blocks)
        info = {"sentences": len(units), "kept": len(kept), "best_sentence_score": float(scores.max())}
        return Compressed(blocks, input_tokens, output_tokens, info)
