"""Passes the UI's requests from an API worker to the UI process (web/workers.py), streamed both ways
(Gradio's event stream included). The client's address travels in ``X-Forwarded-For``, which the UI
process's uvicorn trusts from loopback only, so login limits still see the real client."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from web.api import client_address, error

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
FORWARDED = {"x-forwarded-for", "x-forwarded-proto", "forwarded"}  # a client's own claims are dropped, ours sent
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


def mount_ui_proxy(app: FastAPI, upstream: str) -> None:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(None, connect=5.0),
                               limits=httpx.Limits(max_connections=None, max_keepalive_connections=50))
    app.router.on_shutdown.append(client.aclose)

    @app.api_route("/{path:path}", methods=METHODS, include_in_schema=False)
    async def ui(path: str, request: Request) -> Any:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | FORWARDED]
        headers.append(("x-forwarded-for", client_address(request)))
        headers.append(("x-forwarded-proto", request.url.scheme))
        upstream_request = client.build_request(request.method, request.url.path, params=request.query_params,
                                                headers=headers, content=request.stream())
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return error(502, f"the UI process did not answer ({exc.__class__.__name__}); the APIs under /v1 still work",
                         getattr(request.state, "request_id", ""))
        passed = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        if "content-length" in response.headers and "content-encoding" not in response.headers:
            passed.append(("content-length", response.headers["content-length"]))
        out = StreamingResponse(response.aiter_raw(), status_code=response.status_code,
                                background=BackgroundTask(response.aclose))
        out.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in passed]
        return out
