"""OpenAI-compatible endpoints so any OpenAI SDK client (a support bot) can talk to the recommender.

The user is bound to the API key; the conversation to the ``X-Session-Id`` header or the ``user`` field.
Streaming answers are SSE chunks ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.chat import TurnResult
from web.api import ApiError, authorize, client_address, run_turn
from web.services import Services
from web.validation import CleanText

MODEL_ID = "fusionrec"


MAX_MESSAGES = 100  # a body under the byte cap must not be pathological either
MAX_CONTENT_PARTS = 20


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: CleanText = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: CleanText | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: CleanText = Field(MODEL_ID, max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    user: CleanText | None = Field(None, max_length=64, description="used as the session id when no header is sent")
    n: int = Field(1, ge=1, le=1)


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    if isinstance(message.content, list):
        return " ".join(part.text for part in message.content)
    return ""


def _session(x_session_id: str | None, user_field: str | None) -> str | None:
    value = x_session_id or user_field
    if value is None:
        return None
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", value)[:64]
    return cleaned or None


def _completion(turn: TurnResult, created: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{turn.request_id}", "object": "chat.completion", "created": created, "model": MODEL_ID,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": turn.tokens.get("prompt", 0), "completion_tokens": turn.tokens.get("completion", 0),
                  "total_tokens": turn.tokens.get("prompt", 0) + turn.tokens.get("completion", 0)},
        "fusionrec": {"session_id": turn.session_id, "kind": turn.kind, "items": [
            i.model_dump(include={"rank", "item_id", "title", "category", "price", "tags", "explanation"})
            for i in turn.items],
            "llm_used": turn.llm_used, "fallback_reason": turn.fallback_reason, "notes": turn.notes},
    }


def _chunks(turn: TurnResult, created: int) -> Iterator[str]:
    base = {"id": f"chatcmpl-{turn.request_id}", "object": "chat.completion.chunk", "created": created,
            "model": MODEL_ID}
    yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "finish_reason": None}]}) + "\n\n"
    for piece in re.findall(r"\S+\s*|\s+", turn.reply):
        yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                           "finish_reason": None}]}) + "\n\n"
    yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                                 "fusionrec": {"session_id": turn.session_id}}) + "\n\n"
    yield "data: [DONE]\n\n"


def openai_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/models")
    def models(request: Request, authorization: str | None = Header(None)) -> dict[str, Any]:
        authorize(services, authorization, client=client_address(request))
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fusionrec"}]}

    @router.post("/v1/chat/completions", response_model=None)
    def chat(body: ChatBody, request: Request, authorization: str | None = Header(None),
             x_session_id: str | None = Header(None), idempotency_key: str | None = Header(None)) -> Any:
        user = authorize(services, authorization, client=client_address(request))
        last = next((m for m in reversed(body.messages) if m.role == "user"), None)
        if last is None:
            raise ApiError(422, "messages: no user message")
        turn = run_turn(services, user, _text(last), _session(x_session_id, body.user), None, idempotency_key,
                        request_id=request.state.request_id)
        created = int(time.time())
        if body.stream:
            return StreamingResponse(_chunks(turn, created), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Session-Id": turn.session_id})
        return _completion(turn, created)

    return router
