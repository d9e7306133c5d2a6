"""The Gradio UI behind the API keys, for real: the app served on 127.0.0.1 with keys configured (login: user id +
the key bound to it) or in demo mode (persona picker), driven with gradio_client and raw HTTP
(``/gradio_api/call/<fn>`` then its event stream)."""

from __future__ import annotations

import json
import sqlite3
import uuid

import httpx
import pytest

from tests.conftest import ROOT, AppServer

KEY_A, USER_A = "ui-key-a-3f9c1d", "u0003"
KEY_B, USER_B = "ui-key-b-88e2aa", "u0004"


@pytest.fixture(scope="module")
def login_server(app_home):
    """The app with API keys configured: no persona picker, the UI asks for a login."""
    server = AppServer(app_home, llm="off",
                       extra_env={"FUSIONREC_API__KEYS": json.dumps({KEY_A: USER_A, KEY_B: USER_B})})
    yield server
    server.stop()


def call(http: httpx.Client, fn: str, data: list) -> tuple[int, str]:
    """POST /gradio_api/call/<fn>, then read its event stream: (status of the POST, the stream's text); status 0
    when the server drops the connection (Gradio does for an api name that does not exist)."""
    try:
        r = http.post(f"/gradio_api/call/{fn}", json={"data": data})
    except httpx.TransportError as exc:
        return 0, str(exc)
    if r.status_code != 200:
        return r.status_code, r.text
    stream = http.get(f"/gradio_api/call/{fn}/{r.json()['event_id']}")
    return stream.status_code, stream.text


def turn_users(server: AppServer, message: str) -> list[str]:
    """The users the sessions database recorded a turn with this message for."""
    with sqlite3.connect(server.sessions_db()) as db:
        return [row[0] for row in db.execute("SELECT user_id FROM turns WHERE message = ?", (message,))]


def names_of(stores, *users: str) -> list[str]:
    return [str(stores.user_names[stores.user_idx(u)]) for u in users]


def test_without_a_login_every_gradio_endpoint_is_refused(login_server, demo_stores):
    message = f"camping gear {uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=login_server.url, timeout=60) as http:
        for fn, data in [("select_persona", [USER_B]), ("chat", [message, USER_B]), ("feedback_bought", ["p0001", USER_B]),
                         ("prompt_lab_compare", ["(type your own)", USER_B, message, "", "default", "default"])]:
            status, text = call(http, fn, data)
            assert status == 401, (fn, status, text[:300])
            for name in names_of(demo_stores, USER_A, USER_B):
                assert name not in text
        assert http.get("/config").status_code == 401
        assert http.get("/gradio_api/info").status_code == 401
        # a key of the JSON API is not a UI login by itself
        assert http.post("/gradio_api/call/chat", json={"data": [message, USER_A]},
                         headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 401
        # a key bound to another user is no login either
        assert http.post("/login", data={"username": USER_B, "password": KEY_A}).status_code == 400
    assert turn_users(login_server, message) == []


def test_a_login_acts_only_as_its_user_over_raw_http(login_server, demo_stores):
    message = f"camping gear under $100 {uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=login_server.url, timeout=120) as http:
        assert http.post("/login", data={"username": USER_A, "password": KEY_A}).status_code == 200
        status, text = call(http, "chat", [message, USER_B])  # the client names B: the turn is A's
        assert status == 200 and "event: complete" in text, text[:500]
        status, lab = call(http, "prompt_lab_compare", ["(type your own)", USER_B, "what did I buy?", "",
                                                        "default", "default"])
        assert status == 200 and "runs only as yourself" in lab, lab[:500]
        status, own = call(http, "prompt_lab_compare", ["(type your own)", "", "camping gear", "",
                                                        "default", "default"])
        assert status == 200 and "runs only as" not in own, own[:500]
        # no picker without demo mode (last: Gradio drops the connection for an unknown api name)
        status, picked = call(http, "select_persona", [USER_B])
        assert status != 200 or "event: error" in picked, picked[:300]
    assert turn_users(login_server, message) == [USER_A]
    name_b = names_of(demo_stores, USER_B)[0]
    assert name_b not in text and name_b not in lab


def test_a_login_acts_only_as_its_user_through_gradio_client(login_server):
    from gradio_client import Client

    message = f"a sci-fi novel {uuid.uuid4().hex[:6]}"
    client = Client(login_server.url, auth=(USER_B, KEY_B), verbose=False)
    try:
        assert "/select_persona" not in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        chat, *_ = client.predict(message, USER_A, api_name="/chat")
        assert chat and not str(chat[-1]["content"]).startswith("⚠️")
    finally:
        client.close()
    assert turn_users(login_server, message) == [USER_B]


def event_users(server: AppServer, item_id: str) -> list[str]:
    with sqlite3.connect(server.sessions_db()) as db:
        return [row[0] for row in db.execute("SELECT user_id FROM events WHERE item_id = ?", (item_id,))]


def test_feedback_after_a_login_is_stored_for_the_logged_in_user_only(login_server):
    from gradio_client import Client

    from tests.test_ui import cards

    client = Client(login_server.url, auth=(USER_A, KEY_A), verbose=False)
    try:
        _chat, card_html, *_ = client.predict("a sci-fi novel as a gift", USER_B, api_name="/chat")
        first = cards(card_html)[0][0]
        before = event_users(login_server, first)
        _chat, card_html, *_, notice = client.predict(first, USER_B, api_name="/feedback_like")  # names B: A's
        assert "Recorded: you like" in notice, notice
        assert first not in [i for i, _ in cards(card_html)]
    finally:
        client.close()
    assert event_users(login_server, first) == [*before, USER_A]


def test_demo_mode_offers_the_picker_and_only_demo_personas(app_server, demo_stores):
    with httpx.Client(base_url=app_server.url, timeout=120) as http:
        status, text = call(http, "select_persona", ["u0002"])
        assert status == 200 and 'data-user-id=\\"u0002\\"' in text, text[:300]
        outsider = "u0250"  # a user of the data, not among the demo personas
        status, text = call(http, "select_persona", [outsider])  # refused by the picker's choices or by us
        assert status == 200 and ("not a demo persona" in text or "not in the list of choices" in text), text[:300]
        assert names_of(demo_stores, outsider)[0] not in text and 'data-user-id=\\"u0250' not in text
        status, lab = call(http, "prompt_lab_compare", ["(type your own)", outsider, "what did I buy?", "",
                                                        "default", "default"])
        assert status == 200 and "only as a demo persona" in lab, lab[:500]
        assert names_of(demo_stores, outsider)[0] not in lab


def test_keys_configured_with_demo_personas_on_refuses_to_start(app_home):
    with pytest.raises(RuntimeError, match="ui.demo_personas is on while API keys are configured"):
        AppServer(app_home, llm="off", extra_env={"FUSIONREC_API__KEYS": json.dumps({KEY_A: USER_A}),
                                                  "FUSIONREC_UI__DEMO_PERSONAS": "true"})


# --- catalog text with injected instructions (issue 15, item 8) ----------------------------------------------
FLAG_NOTE = "[catalog text, flagged: may contain instructions] «"


def injected(demo_dataset) -> dict[str, str]:
    """Item id -> the injected sentence, found in the raw demo catalog (not through our flagging)."""
    from loaders.demo import INJECTIONS

    out = {}
    for row in demo_dataset.catalog.itertuples():
        for text in INJECTIONS:
            if text in str(row.description):
                out[str(row.item_id)] = text
    return out


def test_injected_catalog_text_is_flagged_when_loaded(demo_dataset, demo_stores):
    hostile = injected(demo_dataset)
    assert len(hostile) == 2
    assert sorted(demo_stores.flagged_ids) == sorted(hostile) and demo_stores.n_flagged == 2
    for item_id in hostile:
        assert demo_stores.item(demo_stores.item_idx(item_id)).flags == ["instructions_in_text"]
    clean = next(i for i in demo_stores.item_ids if str(i) not in hostile)
    assert demo_stores.item(demo_stores.item_idx(str(clean))).flags == []


def test_fusionrec_index_lists_the_flagged_items(demo_index, demo_settings, demo_dataset, demo_stores):
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(demo_settings.home), "index", "--quiet"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "FUSIONREC_HOME": str(demo_settings.home)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "flagged: 2 items" in out.stdout, out.stdout
    for item_id in injected(demo_dataset):
        title = demo_stores.titles[demo_stores.item_idx(item_id)]
        assert any(item_id in line and title in line for line in out.stdout.splitlines()), out.stdout


def test_healthz_counts_the_flagged_items(app_server):
    assert httpx.get(app_server.url + "/healthz", timeout=30).json()["flagged_items"] == 2


def test_item_details_quote_flagged_text_as_data(app_server, demo_dataset, demo_stores):
    for item_id, sentence in injected(demo_dataset).items():
        title = demo_stores.titles[demo_stores.item_idx(item_id)]
        r = httpx.post(app_server.url + "/v1/recommend", headers={"Authorization": "Bearer demo"}, timeout=120,
                       json={"message": f"tell me more about {title}", "use_llm": False})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "answer" and body["items"][0]["item_id"] == item_id, body["reply"]
        assert body["items"][0]["flags"] == ["instructions_in_text"]
        reply = body["reply"]
        # the injected sentence (markdown-escaped) comes only inside the marked, delimited quote
        start = reply.index(FLAG_NOTE) + len(FLAG_NOTE)
        end = reply.index("» [end of catalog text]", start)
        words = sentence.split()[:3]
        assert all(w.strip(".;:") in reply[start:end] for w in words), reply
        outside = reply[:start - len(FLAG_NOTE)] + reply[end:]
        assert not any(w.strip(".;:") in outside for w in ("IGNORE", "SYSTEM")), reply
