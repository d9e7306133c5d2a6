"""The live catalog API (operator keys only): PUT /v1/items/{item_id} adds or replaces an item, DELETE
withdraws it; the next request sees the change, without a restart or an index build (indexing/live_items.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from catalog.item_edits import clean_fields
from catalog.items import Item
from indexing.live_items import ItemEditor, VectorStoreUnavailable
from loaders.schema import DataFormatError, UnknownItem
from storage.catalog_edits import CatalogEditStore
from web.api import ApiError, authorize_operator, client_address
from web.services import Services
from web.validation import CleanText

ITEM_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
Tag = Annotated[CleanText, Field(max_length=60)]
ItemId = Annotated[str, Path(pattern=ITEM_ID, description="letters, digits and _ . : - (at most 64)")]


class ItemBody(BaseModel):
    """The columns of ``catalog.csv`` (loaders/schema.py ``CATALOG_COLUMNS``) but the id, which is in the path."""

    model_config = ConfigDict(extra="forbid")
    title: CleanText = Field(min_length=1, max_length=200)
    category: CleanText | None = Field(None, max_length=60)
    tags: list[Tag] | Annotated[CleanText, Field(max_length=1000)] | None = Field(
        None, description="a list, or one '|'-separated string as in catalog.csv")
    description: CleanText | None = Field(None, max_length=4000)
    price: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    brand: CleanText | None = Field(None, max_length=100)


class ItemOut(BaseModel):
    request_id: str
    item: Item  # as it is stored (and shown): cleaned like a loaded catalog row, flagged when it holds instructions
    created: bool
    timings_ms: dict[str, float]


class WithdrawnOut(BaseModel):
    request_id: str
    item_id: str
    withdrawn: bool = True
    timings_ms: dict[str, float]


def items_router(services: Services) -> APIRouter:
    router = APIRouter()
    editor = ItemEditor(services.recommender)

    def saved(write: Callable[[CatalogEditStore], object]) -> None:
        """Store an applied edit, so a restart replays it; a 503 says when it could not be stored."""
        if services.catalog_edits is None:
            return
        try:
            seq = write(services.catalog_edits)
        except sqlite3.Error as exc:
            raise ApiError(503, f"the edit is live in this process but could not be stored ({exc}); "
                                "send it again") from None
        if services.sync is not None and isinstance(seq, int):
            services.sync.stored_own(seq)

    def editing() -> AbstractContextManager[None]:
        """Other processes' edits first, then this one, serialised; refused where another process on this machine
        would not see the vector written (several workers on one embedded Chroma folder)."""
        if services.settings.worker_count > 1 and services.settings.vectorstore.mode == "embedded":
            raise ApiError(409, f"catalog edits need one worker process or Chroma in server mode: {services.settings.worker_count} "
                                "workers share an embedded Chroma folder (see README, Several worker processes)")
        return services.sync.editing() if services.sync is not None else nullcontext()

    @router.put("/v1/items/{item_id}", response_model=ItemOut)
    def put_item(item_id: ItemId, body: ItemBody, request: Request,
                 authorization: str | None = Header(None)) -> ItemOut:
        """Add the item, or replace its attributes (its behaviour stays; a withdrawn item comes back)."""
        authorize_operator(services, authorization, client_address(request))
        tags = body.tags if body.tags is None or isinstance(body.tags, str) else list(body.tags)
        try:
            fields = clean_fields(item_id, body.title, body.category, tags, body.description, body.price, body.brand)
        except DataFormatError as exc:
            raise ApiError(422, f"{exc.column}: {exc.reason}" if exc.column else exc.reason) from None
        with editing():
            try:
                result = editor.put(item_id, fields)
            except VectorStoreUnavailable as exc:
                raise ApiError(503, f"{exc}; the catalog is unchanged") from None
            saved(lambda edits: edits.append(item_id, "put", asdict(fields)))
        return ItemOut(request_id=request.state.request_id, item=result.item, created=result.created,
                       timings_ms=result.timings_ms)

    @router.delete("/v1/items/{item_id}", response_model=WithdrawnOut)
    def delete_item(item_id: ItemId, request: Request, authorization: str | None = Header(None)) -> WithdrawnOut:
        """Withdraw the item: no source, tool or answer offers it again; its vector leaves the store."""
        authorize_operator(services, authorization, client_address(request))
        with editing():
            try:
                result = editor.withdraw(item_id)
            except UnknownItem as exc:
                raise ApiError(404, str(exc)) from None
            except VectorStoreUnavailable as exc:
                raise ApiError(503, f"{exc}; the catalog is unchanged") from None
            saved(lambda edits: edits.append(item_id, "withdraw"))
        return WithdrawnOut(request_id=request.state.request_id, item_id=result.item.item_id,
                            timings_ms=result.timings_ms)

    return router
