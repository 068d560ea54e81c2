"""No compression: every retrieved passage goes into the prompt as its own block (the baseline)."""
from __future__ import annotations

from collections.abc import Sequence

from sprig.core.types import Hit
from sprig.rag.compress.base import Compressed, Compressor, ContextBlock


class NoCompression(Compressor):
    mode = "none"

    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        """The budget does not apply; the generator's context length is checked when the prompt is built."""
        tokens = self.input_tokens(passages)
        blocks = [ContextBlock(p.text, [p.passage_id], p.title) for p in passages if p.text.strip()]
        return Compressed(blocks, tokens, tokens)
