"""The tools as plain functions, and the privacy contract of the user scope."""

from __future__ import annotations

import pytest

from catalog.constraints import Constraints
from catalog.scope import ScopeViolation, scope_for
from tools.catalog import item_attributes, search_catalog
from tools.history import user_history
from tools.popular import popular_items
from tools.search import semantic_search
from tools.similar import similar_items
from tools.social import friends_purchases


def test_history_recent_and_weighted(demo_stores):
    scope = scope_for(demo_stores, "u0001")
    recent = user_history(scope, limit=5)
    assert len(recent) == 5
    stamps = [h.last_seen for h in recent]
    assert stamps == sorted(stamps, reverse=True)
    strongest = user_history(scope, limit=3, order="weight")
    assert all("purchase" in h.kinds for h in strongest)


class _NoTableScans:
    """Stands in for the event table: any read of it fails (a request must use the per-user rows)."""

    def __getattr__(self, name):
        raise AssertionError(f"the request path read the whole event table (.{name})")

    def __getitem__(self, key):
        raise AssertionError("the request path read the whole event table")


@pytest.mark.parametrize("user", ["u0001", "u0002", "u0150", "u0300"])
def test_history_matches_the_events_without_reading_the_event_table(demo_stores, user):
    import copy

    stores = demo_stores
    u = stores.user_idx(user)
    events = stores.events[stores.events["u"] == u]
    expected_kinds = {str(stores.item_ids[i]): sorted(set(g["kind"])) for i, g in events.groupby("i")}
    expected_last = {str(stores.item_ids[i]): str(g["timestamp"].max())[:19] for i, g in events.groupby("i")}
    blind = copy.copy(stores)
    blind.events = _NoTableScans()
    history = user_history(scope_for(blind, user), limit=1000)
    assert {h.item_id for h in history} == set(expected_kinds)
    assert all(h.kinds == expected_kinds[h.item_id] and h.last_seen == expected_last[h.item_id] for h in history)
    assert [h.last_seen for h in history] == sorted((h.last_seen for h in history), reverse=True)
    strongest = user_history(scope_for(blind, user), limit=1000, order="weight")
    assert [h.strength for h in strongest] == sorted((h.strength for h in strongest), reverse=True)


def test_item_attributes_and_hard_search(demo_stores):
    rec = item_attributes(demo_stores, "p0001")
    assert rec["item_id"] == "p0001" and rec["price"] > 0
    found = search_catalog(demo_stores, Constraints(category="sports", price_max=40, tags=["running"]), limit=50)
    assert found
    assert all(r["category"] == "sports" and r["price"] <= 40 and "running" in r["tags"] for r in found)
    cheapest = search_catalog(demo_stores, Constraints(category="books"), limit=5, sort="price")
    assert [r["price"] for r in cheapest] == sorted(r["price"] for r in cheapest)


def test_semantic_search_with_filters(recommender):
    hits = semantic_search(recommender.stores, recommender.vector_store, recommender.collection,
                           "cozy blanket for the living room", Constraints(category="home"), limit=5)
    assert hits and all(h["category"] == "home" for h in hits)
    assert "decor" in hits[0]["tags"]


def test_similar_items_share_buyers(recommender):
    stores = recommender.stores
    item = "p0001"
    similar = similar_items(stores, recommender.models.knn, item, limit=5)
    assert similar and all(s["item_id"] != item for s in similar)
    i = stores.item_idx(item)
    buyers = set(stores.feedback[:, i].nonzero()[0])
    for s in similar:
        j = stores.item_idx(s["item_id"])
        assert buyers & set(stores.feedback[:, j].nonzero()[0])


def test_friends_purchases_only_friends(demo_stores):
    scope = scope_for(demo_stores, "u0002")
    signals = friends_purchases(scope, limit=20)
    friend_names = {str(demo_stores.user_names[f]) for f in scope.friends}
    assert signals
    for s in signals:
        assert set(s.friends) <= friend_names and s.friends_count == len(s.friends)
    counts_only = friends_purchases(scope, limit=5, show_names=False)
    assert all(s.friends == [] and s.friends_count > 0 for s in counts_only)
    # Every read of this turn stayed inside the user and their friends.
    allowed = {scope.user, *scope.friends.tolist()}
    assert {u for _, u in scope.audit} <= allowed


def test_scope_refuses_other_users(demo_stores):
    scope = scope_for(demo_stores, "u0002")
    stranger = next(u for u in range(demo_stores.n_users) if not scope.allowed(u))
    with pytest.raises(ScopeViolation):
        scope._record("feedback", [stranger])


def test_popular_recent_and_constrained(demo_stores):
    top = popular_items(demo_stores, limit=5)
    assert [t["popularity"] for t in top] == sorted((t["popularity"] for t in top), reverse=True)
    books = popular_items(demo_stores, limit=5, recent=True, constraints=Constraints(category="books"))
    assert all(b["category"] == "books" for b in books)


def test_langchain_tools_take_no_user_and_refuse_forged_arguments(recommender):
    import json

    from agent.toolkit import build_toolkit, run_tool

    scope = scope_for(recommender.stores, "u0001")
    tools = build_toolkit(scope, recommender, show_friend_names=True)
    assert set(tools) == {"user_history", "item_attributes", "search_catalog", "semantic_search", "similar_items",
                          "friends_purchases", "popular_items"}
    for tool in tools.values():
        assert "user" not in json.dumps(tool.args).lower()
    forged = run_tool(tools, "user_history", {"limit": 3, "user_id": "u0007"})
    assert forged.error and forged.result is None
    ok = run_tool(tools, "user_history", {"limit": 3})
    assert ok.error is None and len(ok.result) == 3
    assert {u for _, u in scope.audit} <= {scope.user, *scope.friends.tolist()}
