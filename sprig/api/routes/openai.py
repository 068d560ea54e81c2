"""POST /v1/chat/completions: the answer path behind the OpenAI chat API, streaming and not, so any
OpenAI client can talk to sprig. The last user message is the question; earlier turns are not used
for retrieval. Sources (or the closed-book note) follow the answer in the message content and, in
full, under the extra ``sprig`` field of the response."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sprig.api.deps import AnswererDep, ChatQuestion
from sprig.api.routes.answer import answer_events, final_answer
from sprig.api.schemas import errors
from sprig.api.schemas_rag import ChatCompletionRequest
from sprig.rag.answer import Answer

router = APIRouter(prefix="/v1", tags=["openai"])


def _footer(answer: Answer) -> str:
    if answer.closed_book:
        return f"\n\n(Answered without retrieved context: {answer.note}.)"
    if answer.citations:
        return "\n\nSources: " + "; ".join(f"[{c.number}] {', '.join(c.passage_ids)}" for c in answer.citations)
    return ""


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n"


@router.post("/chat/completions", responses={200: {"content": {"text/event-stream": {}}}, **errors(400, 413, 422, 500)})
def chat_completions(body: ChatCompletionRequest, question: ChatQuestion, request: Request, answerer: AnswererDep):
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    events = answer_events(
        request, answerer, question, mode=body.compress, k=body.k, retrieval_mode=body.retrieval_mode,
        max_new_tokens=body.max_completion_tokens or body.max_tokens, stop=stop, temperature=body.temperature,
    )
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.model
    if not body.stream:
        answer = final_answer(events)
        s = answer.stats
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text + _footer(answer)},
                         "finish_reason": s["finish_reason"]}],
            "usage": {"prompt_tokens": s["prompt_tokens"], "completion_tokens": s["new_tokens"],
                      "total_tokens": s["prompt_tokens"] + s["new_tokens"]},
            "sprig": answer.to_dict(),
        }

    def stream() -> Iterator[str]:
        yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
        try:
            for event in events:
                if isinstance(event, Answer):
                    yield _chunk(cid, created, model, {"content": _footer(event)}, event.stats["finish_reason"], sprig=event.to_dict())
                else:
                    yield _chunk(cid, created, model, {"content": event})
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            yield f"data: {json.dumps({'error': {'message': f'generation failed: {type(exc).__name__}: {exc}', 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")
