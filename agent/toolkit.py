"""The tools wrapped for LangChain in one place. The acting user is bound from the session's scope when
the toolkit is built; no tool takes a user id, so neither a model nor message text can choose one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from catalog.constraints import Constraints
from catalog.scope import UserScope
from fusion.recommender import Recommender
from tools.catalog import item_attributes, search_catalog
from tools.history import user_history
from tools.popular import popular_items
from tools.search import semantic_search
from tools.similar import similar_items
from tools.social import friends_purchases


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a forged argument (say, a user id) is refused, not ignored


class HistoryArgs(_Args):
    limit: int = Field(8, ge=1, le=50, description="how many items")
    order: str = Field("recent", pattern="^(recent|weight)$", description="'recent' or 'weight'")


class ItemArgs(_Args):
    item_id: str = Field(..., max_length=64, description="a catalog item id")


class SearchArgs(_Args):
    category: str | None = Field(None, max_length=60)
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    tags: list[str] = Field(default_factory=list, max_length=6)
    limit: int = Field(10, ge=1, le=50)


class SemanticArgs(SearchArgs):
    query: str = Field(..., min_length=1, max_length=300, description="what the shopper wants, in words")


class SimilarArgs(_Args):
    item_id: str = Field(..., max_length=64)
    limit: int = Field(8, ge=1, le=30)


class LimitArgs(_Args):
    limit: int = Field(10, ge=1, le=50)


class PopularArgs(SearchArgs):
    recent: bool = Field(False, description="recently popular instead of all-time")


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class ToolStep:
    """One executed tool call, as shown in the UI and recorded in the turn."""

    name: str
    args: dict[str, Any]
    result: Any
    ms: float
    error: str | None = None

    def summary(self, limit: int = 5) -> str:
        if self.error:
            return f"error: {self.error}"
        res = self.result
        if isinstance(res, list):
            titles = [str(r.get("title", r.get("item_id", ""))) for r in res[:limit] if isinstance(r, dict)]
            more = f" (+{len(res) - limit} more)" if len(res) > limit else ""
            return f"{len(res)} result(s): " + "; ".join(titles) + more if res else "nothing found"
        if isinstance(res, dict):
            return ", ".join(f"{k}: {v}" for k, v in list(res.items())[:6])
        return str(res)[:300]


def build_toolkit(scope: UserScope, recommender: Recommender, show_friend_names: bool) -> dict[str, StructuredTool]:
    stores = recommender.stores

    def history(limit: int = 8, order: str = "recent") -> list[dict[str, Any]]:
        """The acting user's own recent (or strongest) items with attributes."""
        return _plain(user_history(scope, limit, order))

    def attributes(item_id: str) -> dict[str, Any]:
        """All stored attributes of one catalog item (title, category, price, tags, description)."""
        return item_attributes(stores, item_id)

    def hard_search(category: str | None = None, price_min: float | None = None, price_max: float | None = None,
                    tags: list[str] | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """Catalog items meeting every hard condition (category, price range, tags), most popular first."""
        return search_catalog(stores, Constraints(category, price_min, price_max, list(tags or [])), limit)

    def semantic(query: str, category: str | None = None, price_min: float | None = None,
                 price_max: float | None = None, tags: list[str] | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """Items whose text is closest in meaning to the query (vector search), with hard filters."""
        if recommender.vector_store is None or recommender.collection is None:
            return []
        return semantic_search(stores, recommender.vector_store, recommender.collection, query,
                               Constraints(category, price_min, price_max, list(tags or [])), limit)

    def similar(item_id: str, limit: int = 8) -> list[dict[str, Any]]:
        """Items often bought or used by the same people as the given item (co-occurrence)."""
        return similar_items(stores, recommender.models.knn, item_id, limit)

    def friends(limit: int = 10) -> list[dict[str, Any]]:
        """What the acting user's friends bought or liked, with how many friends (names if allowed)."""
        return _plain(friends_purchases(scope, limit, show_names=show_friend_names))

    def popular(recent: bool = False, category: str | None = None, price_min: float | None = None,
                price_max: float | None = None, tags: list[str] | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The most popular items overall or recently, optionally under hard conditions."""
        return popular_items(stores, limit, recent, Constraints(category, price_min, price_max, list(tags or [])))

    specs: list[tuple[str, Callable[..., Any], type[BaseModel]]] = [
        ("user_history", history, HistoryArgs), ("item_attributes", attributes, ItemArgs),
        ("search_catalog", hard_search, SearchArgs), ("semantic_search", semantic, SemanticArgs),
        ("similar_items", similar, SimilarArgs), ("friends_purchases", friends, LimitArgs),
        ("popular_items", popular, PopularArgs),
    ]
    return {name: StructuredTool.from_function(func=fn, name=name, description=fn.__doc__ or name,
                                               args_schema=schema)
            for name, fn, schema in specs}


def run_tool(tools: dict[str, StructuredTool], name: str, args: dict[str, Any]) -> ToolStep:
    """Execute one call through its LangChain tool (validated arguments); errors are recorded, not raised."""
    started = time.perf_counter()
    if name not in tools:
        return ToolStep(name, args, None, 0.0, error=f"unknown tool '{name}'")
    try:
        result = tools[name].invoke(args)
        return ToolStep(name, args, result, (time.perf_counter() - started) * 1000)
    except Exception as exc:  # validation errors and unknown ids surface to the user as a failed step
        return ToolStep(name, args, None, (time.perf_counter() - started) * 1000, error=str(exc).splitlines()[0][:200])
