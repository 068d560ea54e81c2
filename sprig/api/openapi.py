"""The OpenAPI document of the served index and configuration.

The pydantic schemas state what no configuration would accept; a request can still be wrong for this server
(a mode the index lacks, a query over ``server.max_query_chars``). ``served_openapi`` narrows the schemas to
what this server accepts, so a client (or a fuzzer) that follows the document is never refused."""
from __future__ import annotations

import re

from fastapi import FastAPI

from sprig.api.schemas import NOT_BLANK
from sprig.core.config import COMPRESS_MODES, SprigConfig
from sprig.retriever.searcher import Searcher

RATIO = r"(?:1(?:\.0*)?|0*\.[0-9]*[1-9][0-9]*)"  # a number in (0, 1]: MODE@R (refrag also allows 0)


def served_openapi(app: FastAPI, searcher: Searcher | None, config: SprigConfig) -> dict:
    """FastAPI's document with modes, retrievers, compression modes and text limits of this server
    (FastAPI's own, uncached, before the lifespan has opened the index)."""
    if searcher is None:
        doc, app.openapi_schema = FastAPI.openapi(app), None  # not kept: the served one is narrowed
        return doc
    if app.openapi_schema is None:
        doc = FastAPI.openapi(app)
        schemas = doc["components"]["schemas"]
        compress = [m for m in COMPRESS_MODES if m != "refrag" or (config.compress.refrag.projector and searcher.index.manifest.get("chunk_vectors"))]
        text = {"maxLength": config.server.max_query_chars, "pattern": NOT_BLANK}  # what checked_text accepts
        search = schemas["SearchRequest"]["properties"]
        search["query"].update(text)
        search["k"]["maximum"] = min(search["k"]["maximum"], config.server.max_k)
        _narrow(search["mode"], searcher.modes)
        _narrow(search["weights"], searcher.retrievers)
        schemas["AnswerRequest"]["properties"]["question"].update(text)
        for name in ("AnswerRequest", "ChatCompletionRequest"):
            props = schemas[name]["properties"]
            _narrow(props["retrieval_mode"], searcher.modes)
            _narrow(props["compress"], compress)
            for field in ("max_new_tokens", "max_tokens", "max_completion_tokens"):
                if field in props:
                    props[field]["anyOf"][0]["maximum"] = config.server.max_new_tokens
            for option in props["compress"]["anyOf"]:
                if "pattern" in option:
                    option["pattern"] = rf"^(?:{'|'.join(map(re.escape, compress))})@{RATIO}$"
        user = {"properties": {"role": {"const": "user"}, "content": {"type": "string", **text}}, "required": ["role", "content"]}
        schemas["ChatCompletionRequest"]["properties"]["messages"]["contains"] = user  # the question: the last one with text
        app.openapi_schema = doc
    return app.openapi_schema


def _narrow(schema: dict, allowed: list[str]) -> None:
    """Keep only ``allowed`` in every enum (and enum of keys) under ``schema``."""
    for key, value in schema.items():
        if key == "enum":
            value[:] = [v for v in value if v in allowed]
        elif isinstance(value, dict):
            _narrow(value, allowed)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _narrow(item, allowed)
