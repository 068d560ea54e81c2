"""The one compression interface: query + retrieved passages + token budget -> context blocks + counts.

Every mode (none, RECOMP extractive / abstractive; REFRAG later) returns ``Compressed``, so the answer
pipeline, the prompt and the QA eval never look at which mode ran. A compressor may return no blocks:
that is RECOMP's selective augmentation (Xu et al. 2023, "RECOMP: Improving Retrieval-Augmented LMs
with Compression and Selective Augmentation"), and the pipeline then answers closed-book.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sprig.types import Hit

CompressMode = Literal["none", "recomp-extractive", "recomp-abstractive"]
COMPRESS_MODES: tuple[str, ...] = ("none", "recomp-extractive", "recomp-abstractive")

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
    output_tokens: int  # generator tokens of the blocks' text
    info: dict = field(default_factory=dict)  # mode-specific details (e.g. sentence scores, summary stats)

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
