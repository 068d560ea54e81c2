"""Prometheus metrics for the API: request counts and latencies by route template, and the index size.

Each app gets its own registry, so several apps in one process (tests) never share counters.
"""
from __future__ import annotations

import time

from fastapi.responses import PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Search latencies on CPU run from ~1 ms (BM25) to seconds (long SPLADE queries under load).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sprig_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("sprig_http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.passages = Gauge("sprig_index_passages", "passages in the served index", registry=self.registry)

    def exposition(self, passages: int) -> PlainTextResponse:
        self.passages.set(passages)
        return PlainTextResponse(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and labels it with its route template (not the raw
    path, so /documents/{passage_id} stays one series)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
