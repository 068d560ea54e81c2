"""The three REFRAG training stages (Lin et al. 2025, §3), each as examples for sprig.rag.refrag_train.fit.

(a) Reconstruction: the decoder reads the first c chunks of a passage as projected embeddings and reproduces
    their tokens; c grows from 1 to ``max_chunks`` over the stage (the paper's curriculum).
(b) Continual pre-training by next-paragraph prediction: the decoder reads a paragraph's chunks and predicts
    the first tokens of the paragraph that follows it in its article (squad-a); a scifact / nfcorpus abstract
    has no next paragraph, so its first half is read as chunks and its second half predicted (the paper's
    s-tokens-in, o-tokens-out task at our scale).
(c) QA fine-tuning: the decoder reads the prompt the answer path builds (retrieved passages compressed by
    refrag at an expansion fraction p) and predicts the gold answer, cited as the prompt's example is.
Which texts and questions may be used at all is sprig.rag.refrag_split's rule; callers filter with it.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sprig.core.types import Hit
from sprig.rag.generator import EMBEDDED
from sprig.rag.refrag_train import Example, TrainingPassage, continuation

NEXT_TOKENS = 64  # tokens of the next paragraph predicted in stage (b)


def reconstruction_example(passage: TrainingPassage, chunks: int) -> Example:
    """Stage (a): the first ``chunks`` chunks in, exactly their tokens out."""
    vectors, ids = passage.first(chunks)
    return continuation([EMBEDDED] * len(vectors), vectors, ids)


def reconstruction_batches(passages: Sequence[TrainingPassage], batch_size: int, max_chunks: int, seed: int):
    """``next_batch`` for stage (a): random passages, 1 chunk at the start of the stage and ``max_chunks`` at its end."""
    rng = random.Random(seed)
    return lambda progress: [reconstruction_example(p, 1 + int((max_chunks - 1) * progress))
                             for p in rng.choices(passages, k=batch_size)]


def next_paragraph_examples(passages: Sequence[TrainingPassage], follows: Sequence[int | None],
                            next_tokens: int = NEXT_TOKENS) -> list[Example]:
    """Stage (b): passage i's chunks in, the first ``next_tokens`` tokens of passage ``follows[i]`` out; where
    nothing follows (None), the passage's first half in and the tokens after it out (passages of one chunk
    give no example)."""
    examples = []
    for passage, after in zip(passages, follows):
        if after is not None:
            examples.append(continuation([EMBEDDED] * len(passage.vectors), passage.vectors, passages[after].ids[:next_tokens]))
        elif len(passage.tokens) > 1:
            half = len(passage.tokens) // 2
            vectors, read = passage.first(half)
            examples.append(continuation([EMBEDDED] * half, vectors, passage.ids[len(read) : len(read) + next_tokens]))
    return examples


def following_paragraphs(passage_ids: Sequence[str]) -> list[int | None]:
    """For ids "<article>-<paragraph>" (squad-a), the index of the next paragraph of the same article, else None;
    ids of any other form have no next paragraph."""
    at = {pid: i for i, pid in enumerate(passage_ids)}

    def after(pid: str) -> str | None:
        article, dash, paragraph = pid.partition("-")
        return f"{article}-{int(paragraph) + 1}" if dash and article.isdigit() and paragraph.isdigit() else None

    return [at.get(after(pid) or "") for pid in passage_ids]


@dataclass(frozen=True)
class QAExample:
    """One stage (c) question with its retrieved passages and its gold answer and paragraph."""

    question: str
    answer: str
    hits: list[Hit]
    gold_passage: str


def answer_target(qa: QAExample) -> str:
    """The gold answer as the prompt's worked example answers ("Warsaw [1]"): cited when its paragraph was retrieved."""
    cited = [n for n, h in enumerate(qa.hits, 1) if h.passage_id == qa.gold_passage]
    return f"{qa.answer} [{cited[0]}]" if cited else qa.answer


def qa_examples(compressor, questions: Sequence[QAExample], expand: Sequence[float], seed: int = 0) -> list[Example]:
    """Stage (c): per question, the refrag prompt at an expansion fraction p drawn from ``expand`` in, its answer
    and the end of the turn out. ``compressor`` is a RefragCompressor; its ``plan`` gives the raw chunk vectors,
    which the projector being trained turns into embeddings."""
    rng = random.Random(seed)
    tokenizer = compressor.generator.tokenizer
    end = [tokenizer.eos_token_id]
    examples = []
    for qa in questions:
        budget = int(rng.choice(list(expand)) * compressor.input_tokens(qa.hits))
        prompt = compressor.plan(qa.question, qa.hits, budget).decoder_input
        if prompt is not None:
            answer = tokenizer(answer_target(qa), add_special_tokens=False)["input_ids"] + end
            examples.append(continuation(prompt.ids, np.asarray(prompt.embeds, np.float32), answer))
    return examples
