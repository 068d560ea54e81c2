"""POST /answer: a cited answer from the index, as JSON or as Server-Sent Events.

The generator is loaded once, in the app's lifespan. Generation is serialised by one lock (one model,
one CPU budget); a failing generation answers 500 or an SSE ``error`` event and the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from sprig.api.deps import AnswerBody, AnswererDep
from sprig.api.schemas import errors
from sprig.api.schemas_rag import AnswerResponse
from sprig.core.errors import SprigError
from sprig.rag.answer import Answer, Answerer

log = logging.getLogger(__name__)
router = APIRouter(tags=["answer"])


def answer_events(request: Request, answerer: Answerer, question: str, **kwargs) -> Iterator[str | Answer]:
    """The answer stream, under the generation lock, with its first event already computed.

    Pulling the first event here runs validation, retrieval, compression and prefill before any
    response is sent, so bad input becomes a 4xx rather than a broken stream. Other failures are 500.
    """
    lock: threading.Lock = request.app.state.answer_lock
    lock.acquire()
    held = [True]

    def release() -> None:  # once, whichever comes first: the end of the stream or its garbage collection
        if held[0]:
            held[0] = False
            lock.release()

    events = answerer.stream(question, **kwargs)
    try:
        first = next(events)
    except SprigError:
        release()
        raise
    except Exception as exc:  # a generation failure must not take the server down
        release()
        log.exception("answer failed")
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"generation failed: {type(exc).__name__}: {exc}") from None

    def rest() -> Iterator[str | Answer]:
        try:
            yield first
            yield from events
        finally:
            events.close()
            release()

    stream = rest()
    weakref.finalize(stream, release)  # a response that is never iterated (client gone) must not keep the lock
    return stream


def final_answer(events: Iterator[str | Answer]) -> Answer:
    try:
        *_, result = events
    except Exception as exc:
        log.exception("answer failed")
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"generation failed: {type(exc).__name__}: {exc}") from None
    return result


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/answer", response_model=AnswerResponse,
             responses={200: {"content": {"text/event-stream": {}}}, **errors(400, 413, 422, 500)})
def answer(body: AnswerBody, request: Request, answerer: AnswererDep):
    events = answer_events(
        request, answerer, body.question, mode=body.compress, k=body.k, max_new_tokens=body.max_new_tokens,
        closed_book=body.closed_book, retrieval_mode=body.retrieval_mode,
    )
    if not body.stream:
        return final_answer(events).to_dict()

    def stream() -> Iterator[str]:
        try:
            for event in events:
                yield sse("answer", event.to_dict()) if isinstance(event, Answer) else sse("token", {"text": event})
        except Exception as exc:  # the status line is already sent: report in-band
            log.exception("answer stream failed")
            yield sse("error", {"detail": f"generation failed: {type(exc).__name__}: {exc}"})

    return StreamingResponse(stream(), media_type="text/event-stream")
