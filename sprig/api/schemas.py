"""Public request/response schemas of the HTTP API, kept apart from internal types (sprig.core.types, docstore rows).

Limits that users can change (query length, k) are checked against ``ServerConfig`` in sprig.api.deps;
the static bounds here only reject what no configuration would accept. Choices come from sprig.core.config.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sprig.core.config import EncoderKind, FusionMethod, RetrievalMode

Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    query: str = Field(min_length=1, description="free text; at most server.max_query_chars characters")
    k: int = Field(10, ge=1, le=1000, description="number of passages to return (at most server.max_k)")
    mode: RetrievalMode | None = Field(None, description="default: hybrid when the index has two or more retrievers")
    fusion: FusionMethod | None = Field(None, description="hybrid fusion method; default from config")
    weights: dict[EncoderKind, Weight] | None = Field(None, description="hybrid weights per retriever, e.g. {\"bm25\": 0.3}")
    explain: bool = True


class TermContribution(BaseModel):
    term: str
    query_weight: float
    doc_weight: float
    contribution: float


class RetrieverScore(BaseModel):
    score: float | None = Field(description="the retriever's own score; null when it did not return this passage")
    rank: int | None


class Explanation(BaseModel):
    mode: str
    fusion: str | None = None
    retrievers: dict[str, RetrieverScore]
    terms: dict[str, list[TermContribution]] = Field(description="top contributing terms per sparse retriever")


class SearchHit(BaseModel):
    id: str
    doc_id: str
    rank: int
    score: float
    title: str
    snippet: str
    explanation: Explanation | None = None


class SearchResponse(BaseModel):
    query: str
    mode: str
    data: list[SearchHit]
    count: int
    took_ms: float


class DocumentCreate(_Strict):
    id: str = Field(min_length=1, max_length=512, description="passage id; must be new")
    title: str = Field("", max_length=10_000)
    text: str = Field(min_length=1)
    doc_id: str | None = Field(None, max_length=512, description="source document id; defaults to id")
    metadata: dict = Field(default_factory=dict)


class DocumentsCreate(_Strict):
    documents: list[DocumentCreate] = Field(min_length=1, max_length=256)


class DocumentPublic(BaseModel):
    id: str
    doc_id: str
    title: str
    text: str
    metadata: dict


class DocumentsCreated(BaseModel):
    ids: list[str]
    count: int


class Health(BaseModel):
    status: Literal["ok"]
    passages: int
    modes: list[str]
    version: str


class ErrorBody(BaseModel):
    detail: str | list
