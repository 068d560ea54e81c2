"""Request/response schemas of the answer endpoints: POST /answer and the OpenAI-compatible
POST /v1/chat/completions (the subset of the OpenAI chat API that a RAG answer needs)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sprig.api.schemas import BLANK, count
from sprig.core.config import COMPRESS_MODES, CompressMode, RetrievalMode

# A compression mode with its ratio for one request, "MODE@R" (sprig.rag.answer.parse_compress checks R):
# the fraction of the retrieved tokens kept (recomp-extractive@0.25) or expanded back to tokens (refrag@0.1).
Tokens = count(1, 4096)  # new tokens to generate
CompressWithRatio = Annotated[str, Field(pattern=rf"^(?:{'|'.join(map(re.escape, COMPRESS_MODES))})@[0-9.]+$")]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "stream": 0 is an error, as the schema says

    question: str = Field(min_length=1, description="at most server.max_query_chars characters (default 2048)")
    compress: CompressMode | CompressWithRatio | None = Field(
        None, description="context compression, optionally MODE@R with the mode's ratio R; default from config (compress.mode)")
    k: count(1, 100) | None = Field(None, description="passages retrieved; default compress.k")
    retrieval_mode: RetrievalMode | None = None
    max_new_tokens: Tokens | None = None
    closed_book: bool = Field(False, description="answer without retrieval")
    stream: bool = Field(False, description="Server-Sent Events: `token` events, then one `answer` event")


class CitationOut(BaseModel):
    number: int
    passage_ids: list[str]
    found_by: Literal["marker", "overlap"]


class ContextOut(BaseModel):
    text: str
    passage_ids: list[str]
    title: str


class PassageOut(BaseModel):
    passage_id: str
    score: float
    title: str


class AnswerResponse(BaseModel):
    question: str
    answer: str
    mode: str
    closed_book: bool
    note: str = Field(description="why the answer is closed-book; empty when it used retrieved context")
    citations: list[CitationOut]
    context: list[ContextOut]
    passages: list[PassageOut]
    stats: dict


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI fields we honour, plus sprig's own (`compress`, `k`, `retrieval_mode`, via `extra_body`).
    Unknown OpenAI fields are accepted and ignored, as OpenAI-compatible servers commonly do."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field("sprig", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256, description=(
        "the last user message with text is the question: at most server.max_query_chars characters (default 2048); "
        "the whole request body is at most server.max_body_bytes (default 1,000,000 bytes)"))
    stream: bool = False
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    compress: CompressMode | CompressWithRatio | None = None
    k: count(1, 100) | None = None
    retrieval_mode: RetrievalMode | None = None

    @property
    def question(self) -> str | None:
        """The last user message with text (earlier turns are not used for retrieval); None without one."""
        texts = [_text(m.content) for m in self.messages if m.role == "user"]
        texts = [t for t in texts if t.strip(BLANK)]
        return texts[-1] if texts else None


def _text(content: str | list[dict] | None) -> str:
    """A message's text; of OpenAI content parts, the text ones."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return content or ""
