"""``POST /v1/events``: behaviour events (a purchase, a view, a thumbs down) that change the next answer at once.

A batch is checked whole before anything is stored: every row's user, item, kind, weight and time, and that a
user's key writes only its own user's events (an operator key may write anyone's). One bad row rejects the
batch with a 422 (403 for another user's row) naming the row and the field; nothing of it is stored. A
stored batch is durable (one fsynced SQLite transaction) before the 200, and an event id makes a retried
batch count once.
"""

from __future__ import annotations

import math
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from storage.events import Event, record
from web.api import ApiError, authorize_writer, client_address
from web.services import Services
from web.validation import CleanText

MAX_EVENTS = 1000
Id = Annotated[CleanText, Field(min_length=1, max_length=128)]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Id
    item_id: Id
    kind: Annotated[CleanText, Field(min_length=1, max_length=32)]
    weight: float | None = Field(None, description="default 1; a rating's value for kind 'rating'")
    timestamp: str | float | None = Field(None, description="ISO 8601 or Unix seconds; default: when received")
    event_id: Annotated[CleanText, Field(min_length=1, max_length=128)] | None = Field(
        None, description="makes the event idempotent: an id stored before is not stored again")


class EventsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsOut(BaseModel):
    stored: int
    duplicates: int
    last_seq: int
    users_changed: int


def parse_time(value: str | float | None, received: pd.Timestamp) -> pd.Timestamp:
    """An event time as UTC without a time zone; ValueError with the reason."""
    if value is None:
        return received
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 string or Unix seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 1e11:
            raise ValueError("Unix seconds out of range")
        return pd.Timestamp(float(value), unit="s")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"not a date and time: {value[:40]!r}") from None
    if pd.isna(stamp):
        raise ValueError("not a date and time")
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def check_batch(services: Services, body: EventsBody, writer: str | None) -> list[Event]:
    """The batch as events, or the first problem as an ApiError naming ``events[k].field``."""
    stores = services.recommender.stores
    kinds = set(stores.dataset.event_kinds)
    received = pd.Timestamp.now(tz="UTC").tz_localize(None)
    out: list[Event] = []
    for k, e in enumerate(body.events):
        where = f"events[{k}]"
        if writer is not None and e.user_id != writer:
            raise ApiError(403, f"{where}.user_id: this API key may only write its own user's events")
        if e.user_id not in stores.user_index:
            raise ApiError(422, f"{where}.user_id: unknown user")
        if e.item_id not in stores.item_index or stores.withdrawn[stores.item_index[e.item_id]]:
            raise ApiError(422, f"{where}.item_id: unknown item {e.item_id[:64]!r}")
        kind = e.kind.strip().lower()
        if kind not in kinds:
            raise ApiError(422, f"{where}.kind: unknown kind {kind[:32]!r}; expected one of {', '.join(sorted(kinds))}")
        weight = 1.0 if e.weight is None else float(e.weight)
        if not math.isfinite(weight) or weight <= 0 or weight > 1e6:
            raise ApiError(422, f"{where}.weight: must be a number > 0 and <= 1e6")
        try:
            stamp = parse_time(e.timestamp, received)
        except ValueError as exc:
            raise ApiError(422, f"{where}.timestamp: {exc}") from None
        if stamp > received + pd.Timedelta(days=1):
            raise ApiError(422, f"{where}.timestamp: in the future")
        out.append(Event(e.user_id, e.item_id, kind, weight, stamp, e.event_id))
    return out


def record_events(services: Services, events: list[Event]) -> EventsOut:
    """Store the events durably, then apply the new ones to the live stores."""
    if services.events is None:
        raise ApiError(503, "live events are not available in this process")
    batch, changed = record(services.events, services.recommender.stores, events)
    return EventsOut(stored=len(batch.stored), duplicates=len(batch.duplicates), last_seq=batch.last_seq,
                     users_changed=len(changed))


def events_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/events", response_model=EventsOut)
    def post_events(body: EventsBody, request: Request, authorization: str | None = Header(None)) -> EventsOut:
        """Store a batch of behaviour events (all or none); the next request of each user reflects them."""
        writer = authorize_writer(services, authorization, client_address(request))
        return record_events(services, check_batch(services, body, writer))

    return router
