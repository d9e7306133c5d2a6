"""Live behaviour events (issue 17): exact per-user rows without a rebuild, and through the running app
(POST /v1/events): a purchase is never offered again, views steer the next list, bad batches are rejected
whole, retried batches are stored once, acknowledged events survive kill -9, refresh folds them in."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from catalog.stores import build_stores
from fusion.request import RecommendRequest
from indexing.build import load_recommender
from storage.events import EventStore
from tests.conftest import ROOT, AppServer
from tests.test_security import copy_home

USER_KEYS = {"sk-live-u1": "u0001", "sk-live-u2": "u0002", **{f"sk-live-{n}": f"u{n:04d}" for n in range(10, 22)}}
OPERATOR = "op-live-secret"


def post(url: str, path: str, key: str | None, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + path, json=body, headers=headers, timeout=120)


def items_of(url: str, key: str, **body: Any) -> list[dict[str, Any]]:
    r = post(url, "/v1/recommend", key, {"k": 10, "use_llm": False, **body})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def event(user: str, item: str, kind: str = "purchase", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "kind": kind, **extra}


def stored_events(home: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(home / "sessions" / "demo-s7.sqlite")) as db:
        return db.execute("SELECT event_id, user_id, item_id, kind FROM events ORDER BY seq").fetchall()


@pytest.fixture(scope="module")
def live_home(app_home, tmp_path_factory) -> Path:
    return copy_home(app_home, tmp_path_factory.mktemp("live-home"))


def env() -> dict[str, str]:
    return {"FUSIONREC_API__KEYS": json.dumps(USER_KEYS), "FUSIONREC_API__OPERATOR_KEYS": json.dumps([OPERATOR]),
            "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "10000"}


@pytest.fixture(scope="module")
def live_app(live_home):
    server = AppServer(live_home, "off", env())
    yield server
    server.stop()


# --- Exact rows, in process ---------------------------------------------------------------------------------
def test_live_rows_are_the_rows_a_rebuild_gives(demo_dataset):
    """A user's last events applied live give exactly the rows (history, exclusions, feedback strength, last
    seen) and the popularity a full rebuild over all events gives."""
    ev = demo_dataset.interactions
    for user in ("u0005", "u0033", "u0120"):
        tail = ev[ev["user_id"] == user].sort_values("timestamp").tail(3)
        assert len(tail) == 3
        snapshot = build_stores(replace(demo_dataset, interactions=ev.drop(tail.index)))
        full = build_stores(demo_dataset)
        u = full.user_idx(user)
        assert snapshot.live.get(u) is None
        snapshot.live.apply_stored(tail.assign(seq=1))
        rows = snapshot.live.get(u)
        assert rows is not None
        for name in ("feedback", "positive", "known", "last_seen"):
            np.testing.assert_allclose(getattr(rows, name).toarray(), getattr(full, name)[u].toarray(), err_msg=name)
        assert (rows.items.items.tolist(), rows.items.kinds.tolist()) == (
            full.user_items.items[full.user_items.rows(u)].tolist(), full.user_items.kinds[full.user_items.rows(u)].tolist())
        np.testing.assert_array_equal(snapshot.popularity, full.popularity)
        assert snapshot.now == full.now
        np.testing.assert_allclose(snapshot.trend, full.trend)


def test_als_fold_in_recovers_the_fitted_user_and_follows_new_purchases(recommender):
    stores, mf = recommender.stores, recommender.models.mf
    for user in ("u0001", "u0002", "u0042"):
        u = stores.user_idx(user)
        folded = mf.fold_in(stores.feedback[u], stores.feedback)
        fitted = mf.user_factors[u]
        assert float(folded @ fitted / np.linalg.norm(folded) / np.linalg.norm(fitted)) > 0.99
    # a purchase of an item raises the scores of the items whose factors are like it
    u = stores.user_idx("u0001")
    target = int(np.argmin(mf.score(u)))
    row = stores.feedback[u].tolil()
    row[0, target] = 3.0
    after = mf.score_factor(mf.fold_in(row.tocsr(), stores.feedback))
    assert after[target] > mf.score(u)[target]


# --- Through the running app --------------------------------------------------------------------------------
def test_a_purchase_is_never_offered_again_and_friends_see_it(live_app, recommender):
    url = live_app.url
    before = items_of(url, "sk-live-u1")
    bought = before[0]["item_id"]
    r = post(url, "/v1/events", "sk-live-u1", {"events": [event("u0001", bought)]})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    after = items_of(url, "sk-live-u1")
    assert bought not in [i["item_id"] for i in after]
    assert bought not in [i["item_id"] for i in items_of(url, "sk-live-u1", message="show me more like my favourites")]


def test_a_friends_live_purchase_counts_in_the_friends_signal_at_once(demo_dataset):
    from catalog.scope import scope_for

    stores = build_stores(demo_dataset)
    me = stores.user_idx("u0001")
    friend = int(stores.friends[me].indices[0])
    item = int(np.flatnonzero(np.asarray(stores.positive[stores.friends[me].indices].sum(axis=0)).ravel() == 0)[0])
    assert scope_for(stores, "u0001").friends_positive()[:, item].sum() == 0
    stores.live.apply_stored(pd.DataFrame({"user_id": [str(stores.user_ids[friend])], "item_id": [str(stores.item_ids[item])],
                                           "kind": ["purchase"], "weight": [1.0], "timestamp": [stores.now], "seq": [1]}))
    assert scope_for(stores, "u0001").friends_positive()[:, item].sum() == 1
    assert stores.popularity[item] == build_stores(demo_dataset).popularity[item] + 1


def test_views_on_a_category_move_the_next_lists_toward_it(live_app, recommender):
    """Three views on the user's least-shown category: summed over users, its share of the top 10 rises (and it
    falls for none)."""
    stores, url = recommender.stores, live_app.url
    cats = sorted(set(stores.categories.tolist()))
    before_total = after_total = 0
    for n in range(10, 22):
        user, key = f"u{n:04d}", f"sk-live-{n}"
        top = items_of(url, key)
        share = {c: sum(i["category"] == c for i in top) for c in cats}
        cat = min(cats, key=lambda c: (share[c], c))
        idx = np.flatnonzero(stores.categories == cat)
        seen = set(stores.known[stores.user_idx(user)].indices.tolist())
        picks = [str(stores.item_ids[i]) for i in idx[np.argsort(-stores.popularity[idx], kind="stable")] if i not in seen][:3]
        r = post(url, "/v1/events", key, {"events": [event(user, p, "view") for p in picks]})
        assert r.status_code == 200, r.text
        after = sum(i["category"] == cat for i in items_of(url, key))
        assert after >= share[cat], (user, cat)
        before_total += share[cat]
        after_total += after
    assert after_total > before_total + 3, (before_total, after_total)


@pytest.mark.parametrize(("bad", "status", "phrase"), [
    ({"item_id": "no-such-item"}, 422, "events[2].item_id: unknown item"),
    ({"kind": "teleport"}, 422, "events[2].kind: unknown kind"),
    ({"weight": -1}, 422, "events[2].weight"),
    ({"timestamp": "yesterday-ish"}, 422, "events[2].timestamp"),
    ({"timestamp": "2999-01-01T00:00:00"}, 422, "events[2].timestamp: in the future"),
    ({"user_id": "u0002"}, 403, "events[2].user_id"),  # a user's key writing another user's event
    ({"user_id": "u9999"}, 403, "events[2].user_id"),
])
def test_a_batch_with_one_bad_row_is_rejected_whole(live_app, live_home, bad, status, phrase):
    url = live_app.url
    good = [event("u0001", "p0010", "view", event_id=f"whole-{phrase}-{k}") for k in range(2)]
    row = {**event("u0001", "p0011", "view"), **bad}
    before = len(stored_events(live_home))
    r = post(url, "/v1/events", "sk-live-u1", {"events": [*good, row, good[0]]})
    assert r.status_code == status, r.text
    assert phrase in r.json()["error"]["message"]
    assert len(stored_events(live_home)) == before  # nothing of it


def test_auth_operator_key_and_malformed_bodies(live_app):
    url = live_app.url
    one = {"events": [event("u0002", "p0012", "view")]}
    assert post(url, "/v1/events", None, one).status_code == 401
    assert post(url, "/v1/events", "sk-nope", one).status_code == 401
    assert post(url, "/v1/events", "sk-live-u1", one).status_code == 403
    r = post(url, "/v1/events", OPERATOR, one)  # the operator writes anyone's events
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    assert post(url, "/v1/recommend", OPERATOR, {"message": "hi"}).status_code == 401  # not a user's key
    assert post(url, "/v1/events", OPERATOR, {"events": []}).status_code == 422
    assert post(url, "/v1/events", OPERATOR, {"events": [{**event("u0002", "p1", "view"), "extra": 1}]}).status_code == 422
    r = post(url, "/v1/events", OPERATOR, {"events": [event("u0002", "p0012", "view")] * 1001})
    assert r.status_code in (413, 422)


def test_a_retried_batch_is_stored_once(live_app, live_home):
    url = live_app.url
    batch = {"events": [event("u0002", "p0020", "click", event_id="retry-1"),
                        event("u0002", "p0021", "view", event_id="retry-2", timestamp=1_700_000_000)]}
    first = post(url, "/v1/events", "sk-live-u2", batch)
    again = post(url, "/v1/events", "sk-live-u2", batch)
    assert (first.json()["stored"], first.json()["duplicates"]) == (2, 0), first.text
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, 2), again.text
    assert [r[0] for r in stored_events(live_home)].count("retry-1") == 1


def test_acknowledged_events_survive_kill_9_and_refresh_folds_them_in(app_home, tmp_path_factory):
    home = copy_home(app_home, tmp_path_factory.mktemp("live-kill"))
    app = AppServer(home, "off", env())
    try:
        bought = items_of(app.url, "sk-live-u2")[0]["item_id"]
        r = post(app.url, "/v1/events", "sk-live-u2", {"events": [event("u0002", bought, event_id="kill-1")]})
        assert r.status_code == 200, r.text
        os.kill(app.proc.pid, signal.SIGKILL)
        app.proc.wait(timeout=30)
    finally:
        app.stop(kill=True)
    assert ("kill-1", "u0002", bought, "purchase") in stored_events(home)
    again = AppServer(home, "off", env())
    try:
        assert bought not in [i["item_id"] for i in items_of(again.url, "sk-live-u2")]  # applied live at start
    finally:
        again.stop()

    cli = [sys.executable, "-m", "cli.main", "--home", str(home)]
    run_env = {**os.environ, "FUSIONREC_LLM__BACKEND": "off"}
    out = home / "export" / "events.csv"
    done = subprocess.run([*cli, "events", "export", "--out", str(out)], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    exported = pd.read_csv(out)
    assert list(exported.columns) == ["user_id", "item_id", "kind", "weight", "timestamp"]
    assert exported.iloc[-1][["user_id", "item_id", "kind"]].tolist() == ["u0002", bought, "purchase"]

    done = subprocess.run([*cli, "index", "--refresh", "--quiet"], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    index = home / "index" / "demo-s7"
    assert index.is_symlink() and json.loads((index / "manifest.json").read_text())["events_through"] == 1
    from config.settings import Settings

    settings = Settings(home=home, data="demo")
    rec = load_recommender(settings, events=EventStore(home / "sessions" / "demo-s7.sqlite"))
    u = rec.stores.user_idx("u0002")
    assert rec.stores.live.get(u) is None  # folded into the snapshot, not applied twice
    assert rec.stores.positive[u, rec.stores.item_idx(bought)] == 1
    assert bought not in [r.item_id for r in rec.recommend(RecommendRequest("u0002", k=10)).items]


def test_saying_i_bought_one_records_an_event_and_no_session_offers_it_again(live_app, live_home):
    url = live_app.url
    first = post(url, "/v1/recommend", "sk-live-u1", {"message": "camping gear", "session_id": "owned-1", "use_llm": False})
    assert first.status_code == 200, first.text
    second_item = first.json()["items"][1]["item_id"]
    r = post(url, "/v1/recommend", "sk-live-u1", {"message": "I bought the second one", "session_id": "owned-1",
                                                   "use_llm": False})
    assert r.status_code == 200, r.text
    assert second_item not in [i["item_id"] for i in r.json()["items"]]
    assert ("u0001", second_item, "purchase") in [row[1:] for row in stored_events(live_home)]
    other = post(url, "/v1/recommend", "sk-live-u1", {"message": "camping gear", "session_id": "owned-2", "use_llm": False})
    assert second_item not in [i["item_id"] for i in other.json()["items"]]  # a new conversation: known, not offered


def test_catalog_edits_and_events_on_new_items_survive_a_restart(app_home, tmp_path_factory):
    """Items added and withdrawn through the API are replayed when the app starts again (after kill -9), and the
    events on an added item are applied to it again."""
    home = copy_home(app_home, tmp_path_factory.mktemp("live-edits"))
    kettle = {"title": "Quibbleforge Kettle", "category": "kitchen", "price": 31.5,
              "description": "A kettle that boils water with a titanium heat ring and a whistle."}
    app = AppServer(home, "off", env())
    try:
        put = httpx.put(app.url + "/v1/items/qf-kettle", json=kettle, headers={"Authorization": f"Bearer {OPERATOR}"},
                        timeout=120)
        assert put.status_code == 200, put.text
        popular = items_of(app.url, "sk-live-u2")[0]["item_id"]
        gone = httpx.delete(app.url + f"/v1/items/{popular}", headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=120)
        assert gone.status_code == 200, gone.text
        r = post(app.url, "/v1/events", "sk-live-u1", {"events": [event("u0001", "qf-kettle", "purchase")]})
        assert r.status_code == 200, r.text
        os.kill(app.proc.pid, signal.SIGKILL)
        app.proc.wait(timeout=30)
    finally:
        app.stop(kill=True)
    again = AppServer(home, "off", env())
    try:
        query = "a kettle that boils water with a titanium heat ring"
        assert items_of(again.url, "sk-live-u2", message=query)[0]["item_id"] == "qf-kettle"
        assert "qf-kettle" not in [i["item_id"] for i in items_of(again.url, "sk-live-u1", message=query)]  # bought
        assert popular not in [i["item_id"] for i in items_of(again.url, "sk-live-u2")]
        ready = httpx.get(again.url + "/readyz", timeout=60).json()
        assert ready["status"] == "ready", ready
    finally:
        again.stop()
