"""The one compression interface: query + retrieved passages + token budget -> context blocks + counts.

Every mode (none, RECOMP extractive / abstractive, REFRAG) returns ``Compressed``, so the answer
pipeline, the prompt and the QA eval never look at which mode ran (REFRAG also hands over the decoder
input it built, since part of its context is embeddings rather than text). A compressor may return no blocks:
that is RECOMP's selective augmentation (Xu et al. 2023, "RECOMP: Improving Retrieval-Augmented LMs
with Compression and Selective Augmentation"), and the pipeline then answers closed-book.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sprig.core.types import Hit
from sprig.rag.generator import EmbeddedPrompt

TokenCounter = Callable[[str], int]


@dataclass
class ContextBlock:
    """One numbered entry of the prompt; citation [n] points at block n's passages."""

    text: str
    passage_ids: list[str]
    title: str = ""


@dataclass
class Compressed:
    blocks: list[ContextBlock]
    input_tokens: int  # generator tokens of the retrieved passages' text
    output_tokens: int  # generator tokens of the blocks' text (REFRAG: decoder positions, one per compressed chunk)
    info: dict = field(default_factory=dict)  # mode-specific details (e.g. sentence scores, summary stats)
    decoder_input: EmbeddedPrompt | None = None  # REFRAG: the prompt with chunk embeddings; None: the answer path tokenises the prompt

    @property
    def rate(self) -> float:
        """Fraction of the retrieved tokens that reach the prompt (RECOMP reports this as "% tokens")."""
        return self.output_tokens / self.input_tokens if self.input_tokens else 0.0


class Compressor(ABC):
    mode: str

    def __init__(self, count_tokens: TokenCounter):
        self.count_tokens = count_tokens

    @abstractmethod
    def compress(self, query: str, passages: Sequence[Hit], budget: int) -> Compressed:
        """Keep at most ``budget`` generator tokens of context that help answer ``query``."""

    def input_tokens(self, passages: Sequence[Hit]) -> int:
        return sum(self.count_tokens(p.text) for p in passages)
