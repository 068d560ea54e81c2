"""RECOMP extractive compression (Xu et al. 2023, §2.2): keep the retrieved sentences most similar to
the query, in their original order, up to a token budget.

RECOMP trains a contriever-style dual encoder for this; we score with the index's dense encoder
(all-MiniLM-L6-v2 by default), so no extra model ships. Sentences are taken best-first while they fit
the budget, then put back in passage and sentence order so each passage's kept sentences read as one
block and citations still point at real passages.

Sentence vectors come from the index when `sprig index` stored them (``stored``: passage id -> float16
[sentences, dim]), else they are encoded here; both sources go through ``sentence_vectors``, so scoring
is one code path and only the query is encoded per request on an index that has them. A stored entry
whose sentence count does not match the splitter's (an index built by another splitter) is re-encoded.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sprig.core.types import Hit
from sprig.encoders.sentences import sentence_vectors, split_sentences
from sprig.rag.compress.base import Compressed, Compressor, ContextBlock, TokenCounter

StoredVectors = Callable[[Sequence[str]], dict[str, np.ndarray]]  # passage ids -> float16 [sentences, dim]


class RecompExtractive(Compressor):
    mode = "recomp-extractive"

    def __init__(self, count_tokens: TokenCounter, encoder, stored: StoredVectors | None = None):
        """``encoder`` has ``encode_queries`` / ``encode_documents`` -> float32 [n, dim] (DenseEncoder);
        ``stored`` looks up the index's sentence vectors (the same encoder's) by passage id."""
        super().__init__(count_tokens)
        self.encoder = encoder
        self.stored = stored

    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        split = [split_sentences(p.text) for p in passages]
        units = [(p, n, s) for p, sentences in zip(passages, split) for n, s in enumerate(sentences)]
        input_tokens = self.input_tokens(passages)
        if not units or budget <= 0:
            return Compressed([], input_tokens, 0)
        vectors, from_index = self.vectors(passages, split)
        scores = vectors.astype(np.float32) @ self.encoder.encode_queries([query])[0]  # [sentences]
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
        info = {"sentences": len(units), "kept": len(kept), "best_sentence_score": float(scores.max()),
                "passages_with_stored_vectors": from_index}
        return Compressed(blocks, input_tokens, output_tokens, info)

    def vectors(self, passages: Sequence[Hit], split: list[list[str]]) -> tuple[np.ndarray, int]:
        """float16 [sentences, dim] for all passages in order, and how many passages the index supplied."""
        stored = self.stored([p.passage_id for p in passages]) if self.stored else {}
        per_passage = [stored.get(p.passage_id) for p in passages]
        per_passage = [v if v is not None and len(v) == len(s) else None for v, s in zip(per_passage, split)]
        missing = [i for i, v in enumerate(per_passage) if v is None]
        for i, v in zip(missing, sentence_vectors(self.encoder, [passages[i].text for i in missing])):
            per_passage[i] = v
        return np.concatenate(per_passage), len(passages) - len(missing)
