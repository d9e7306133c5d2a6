"""JSON API for support bots: POST /v1/recommend, GET /healthz (liveness), GET /readyz (readiness); errors as 4xx with a clear message."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.chat import BadRequest, TooLarge, TurnResult
from catalog.constraints import Constraints
from fusion.items import Recommendation
from fusion.request import RecommendRequest
from loaders.schema import UnknownUser
from storage.sessions import SessionError
from web.auth import AuthError, RateLimiter
from web.body_limit import BodyLimit
from web.services import Services
from web.validation import CleanText

log = logging.getLogger("fusionrec.api")
__all__ = ["BodyLimit", "api_router", "install_error_handlers", "authorize", "authorize_writer", "authorize_operator", "run_turn",
           "ApiError"]


class ConstraintsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: CleanText | None = Field(None, max_length=60)
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    tags: list[Annotated[CleanText, Field(max_length=60)]] = Field(default_factory=list, max_length=10)
    exclude_tags: list[Annotated[CleanText, Field(max_length=60)]] = Field(default_factory=list, max_length=10)


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: CleanText | None = Field(None, max_length=64, description="must be the user bound to the API key (or omitted)")
    message: CleanText | None = Field(None, description="what the user asked, in words")
    constraints: ConstraintsBody | None = None
    k: int = Field(5, ge=1, le=50)
    session_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    use_llm: bool = True


class RecommendOut(BaseModel):
    request_id: str
    session_id: str | None
    kind: str
    reply: str
    items: list[Recommendation]
    notes: list[str]
    llm_used: bool
    fallback_reason: str | None
    timings_ms: dict[str, float]
    tokens: dict[str, int]
    replayed: bool = False


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.headers = status, message, headers or {}


def error(status: int, message: str, request_id: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "status": status, "request_id": request_id}},
                        status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    def rid(request: Request) -> str:
        return getattr(request.state, "request_id", "")

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message, rid(request), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        # pydantic names union branches in the location ("function-after[...]", "list[...]"): leave them out
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body" and not re.search(r"[\[(]", str(p)))
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":
            return error(422, "malformed JSON body", rid(request))
        return error(422, f"{where}: {msg}" if where else msg, rid(request))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authorize(services: Services, authorization: str | None, claimed_user: str | None = None,
              client: str = "unknown") -> str:
    """The user bound to the key. Failed authentications are limited per client address (key guessing);
    requests are limited per resolved key, however its header is spelt."""
    key, user = _authenticate(services, client, lambda: services.keys.resolve(authorization))
    if claimed_user is not None and claimed_user != user:
        raise ApiError(403, "this API key cannot act for another user")
    _limit(services.limiter, key)
    return user


def _authenticate(services: Services, client: str, resolve: Callable[[], tuple[str, Any]]) -> tuple[str, Any]:
    """(key, what it is bound to); failed authentications are counted and limited per client address."""
    blocked, wait = services.auth_failures.exhausted(client)
    if blocked:
        raise ApiError(429, "too many failed authentications; retry later", _retry_after(wait))
    try:
        return resolve()
    except AuthError as exc:
        services.auth_failures.allow(client)
        raise ApiError(401, str(exc)) from None


def _limit(limiter: RateLimiter, key: str) -> None:
    allowed, wait = limiter.allow(key)
    if not allowed:
        raise ApiError(429, "rate limit exceeded; retry later", _retry_after(wait))


def authorize_writer(services: Services, authorization: str | None, client: str = "unknown") -> str | None:
    """The user a key may write events for, or None for an operator key (any user's events, the catalog).
    Limited like ``authorize``."""
    key, user = _authenticate(services, client, lambda: services.keys.resolve_writer(authorization))
    _limit(services.limiter if user is not None else services.operator_limiter, key)
    return user


def authorize_operator(services: Services, authorization: str | None, client: str = "unknown") -> None:
    """Only an operator key passes (401 for no or an unknown key, 403 for a user's key)."""
    if authorize_writer(services, authorization, client) is not None:
        raise ApiError(403, "this API key cannot change the catalog; an operator key is needed")


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(wait + 0.999)))}


def run_turn(services: Services, user: str, message: str, session_id: str | None, k: int | None,
             idempotency_key: str | None, use_llm: bool = True, request_id: str | None = None) -> TurnResult:
    try:
        return services.agent.turn(user, message, session_id=session_id, k=k, idempotency_key=idempotency_key,
                                   use_llm=use_llm, request_id=request_id)
    except TooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except BadRequest as exc:
        raise ApiError(422, str(exc)) from None
    except UnknownUser:
        raise ApiError(403, "the user bound to this key is not in the data") from None
    except SessionError as exc:
        raise ApiError(403, str(exc)) from None


def structured(services: Services, user: str, body: RecommendBody, request_id: str) -> RecommendOut:
    """No words, just constraints: the fused (and reranked) list without a conversation."""
    c = body.constraints or ConstraintsBody()
    request = RecommendRequest(user_id=user, k=body.k, constraints=Constraints(
        c.category, c.price_min, c.price_max, list(c.tags), list(c.exclude_tags)))
    stage = services.agent.stage if body.use_llm else services.agent.fusion_only
    try:
        with services.recommender.stores.lock.reading():  # one state of the catalog (catalog/catalog_lock.py)
            result = stage.run(request, "")
    except UnknownUser:
        raise ApiError(403, "the user bound to this key is not in the data") from None
    explanations = {e.item_id: e for e in result.explanations}
    items = [r.model_copy(update={"explanation": explanations[r.item_id].text,
                                  "explanation_source": explanations[r.item_id].source})
             if r.item_id in explanations else r for r in result.items]
    prompt, completion = result.tokens
    return RecommendOut(request_id=request_id, session_id=None, kind="recommendations", reply="", items=items,
                        notes=result.fused.notes, llm_used=result.llm_used, fallback_reason=result.fallback_reason,
                        timings_ms={k: round(v, 1) for k, v in result.timings_ms.items()},
                        tokens={"prompt": prompt, "completion": completion})


def api_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: answered on the event loop with no I/O, so it stays quick while every worker thread
        is stuck in a turn (a hung model)."""
        return {"status": "ok", "data": services.settings.data, "items": services.recommender.stores.n_items,
                "flagged_items": services.recommender.stores.n_flagged}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the sessions database takes a write and passes quick_check, the vector store holds
        every catalog item; 503 with the reasons otherwise. Short checks, on the loop (no worker thread)."""
        reasons = services.readiness_problems()
        body = {"status": "ready" if not reasons else "not ready", "reasons": reasons,
                "llm": services.llm.identity() if services.llm else None, "llm_error": services.llm_error}
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @router.post("/v1/recommend", response_model=RecommendOut)
    def recommend(body: RecommendBody, request: Request, authorization: str | None = Header(None),
                  idempotency_key: str | None = Header(None)) -> RecommendOut:
        user = authorize(services, authorization, body.user, client_address(request))
        rid = request.state.request_id
        if body.message is None:
            return structured(services, user, body, rid)
        turn = run_turn(services, user, body.message, body.session_id, body.k, idempotency_key, body.use_llm, rid)
        return RecommendOut(request_id=turn.request_id or rid, session_id=turn.session_id, kind=turn.kind,
                            reply=turn.reply, items=turn.items, notes=turn.notes, llm_used=turn.llm_used,
                            fallback_reason=turn.fallback_reason, timings_ms=turn.timings_ms, tokens=turn.tokens,
                            replayed=turn.replayed)

    return router

