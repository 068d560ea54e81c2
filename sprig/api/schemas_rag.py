"""Request/response schemas of the answer endpoints: POST /answer and the OpenAI-compatible
POST /v1/chat/completions (the subset of the OpenAI chat API that a RAG answer needs)."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sprig.core.config import COMPRESS_MODES, CompressMode, RetrievalMode

# A compression mode with its ratio for one request, "MODE@R" (sprig.rag.answer.parse_compress checks R):
# the fraction of the retrieved tokens kept (recomp-extractive@0.25) or expanded back to tokens (refrag@0.1).
CompressWithRatio = Annotated[str, Field(pattern=rf"^(?:{'|'.join(map(re.escape, COMPRESS_MODES))})@[0-9.]+$")]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="at most server.max_query_chars characters")
    compress: CompressMode | CompressWithRatio | None = Field(
        None, description="context compression, optionally MODE@R with the mode's ratio R; default from config (compress.mode)")
    k: int | None = Field(None, ge=1, le=100, description="passages retrieved; default compress.k")
    retrieval_mode: RetrievalMode | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
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
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI fields we honour, plus sprig's own (`compress`, `k`, `retrieval_mode`, via `extra_body`).
    Unknown OpenAI fields are accepted and ignored, as OpenAI-compatible servers commonly do."""

    model_config = ConfigDict(extra="ignore")

    model: str = "sprig"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    compress: CompressMode | CompressWithRatio | None = None
    k: int | None = Field(None, ge=1, le=100)
    retrieval_mode: RetrievalMode | None = None

    @property
    def question(self) -> str | None:
        """The last user message's text (earlier turns are not used for retrieval); None without one."""
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            return None
        content = users[-1].content
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        return content or ""
