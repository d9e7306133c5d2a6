"""Request ids and a streaming body limit, as pure ASGI middleware (it sees the bytes as they arrive).

The body is read before the app sees it: at most ``max_bytes`` (counted as chunks arrive, so a chunked
body without Content-Length is bounded too) within ``read_timeout_s`` for the whole body. Over the cap is
a 413 (at once when Content-Length says so), a body still incomplete at the deadline is a 408; either way
the app is never called and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("fusionrec.api")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_BODY_BYTES = 256 * 1024
BODY_READ_TIMEOUT_S = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class BodyLimit:
    """Give every HTTP request an id (the caller's ``X-Request-Id`` if it is a plain token), bound its body
    in size and read time, and log one line per response."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES,
                 read_timeout_s: float = BODY_READ_TIMEOUT_S):
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            body_receive = await self._buffer(scope, receive)
        except _Refused as refused:
            await self._refuse(send_with_id, refused, request_id)
        else:
            if body_receive is not None:
                await self.app(scope, body_receive, send_with_id)
        log.info("http %s %s %s", scope.get("method", ""), scope.get("path", ""), status[0],
                 extra={"request_id": request_id, "ms": round((time.perf_counter() - started) * 1000, 1)})

    async def _buffer(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the whole (bounded) body, then hands on to the client's receive; None
        when the client went away while sending."""
        length = _header(scope, b"content-length")
        chunked = "chunked" in _header(scope, b"transfer-encoding").lower()
        if not chunked and (not length or length == "0"):
            return receive  # no body to bound (GET, HEAD, SSE streams)
        if length.isdigit() and int(length) > self.max_bytes:
            raise _Refused(413, f"request body over {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _Refused(413, f"request body over {self.max_bytes} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise _Refused(408, f"request body not received within {self.read_timeout_s:g} s") from None
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as streaming responses expect

        return replay

    @staticmethod
    async def _refuse(send: Send, refused: _Refused, request_id: str) -> None:
        payload = json.dumps({"error": {"message": refused.message, "status": refused.status,
                                        "request_id": request_id}}).encode()
        await send({"type": "http.response.start", "status": refused.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
