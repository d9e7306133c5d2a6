"""The running app over HTTP: the JSON API with httpx and the OpenAI-compatible API with the official SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

DEMO = {"Authorization": "Bearer demo"}


@pytest.fixture(scope="module")
def http(app_server):
    with httpx.Client(base_url=app_server.url, timeout=60) as client:
        yield client


def test_healthz_and_openapi(http):
    assert http.get("/healthz").json()["status"] == "ok"
    spec = http.get("/openapi.json").json()
    assert "/v1/recommend" in spec["paths"] and "/v1/chat/completions" in spec["paths"]


def test_recommend_with_message_and_session(http):
    r = http.post("/v1/recommend", headers=DEMO, json={"message": "camping gear under $100", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "recommendations" and len(body["items"]) == 4
    for item in body["items"]:
        assert item["price"] <= 100 and "camping" in item["tags"] and item["explanation"]
        assert set(item["evidence"]) >= {"friends_count", "similar_history", "fusion_score"}
    r2 = http.post("/v1/recommend", headers=DEMO, json={"message": "cheaper", "session_id": body["session_id"]})
    assert max(i["price"] for i in r2.json()["items"]) < max(i["price"] for i in body["items"])


def test_recommend_with_constraints_only(http):
    r = http.post("/v1/recommend", headers=DEMO,
                  json={"constraints": {"category": "books", "price_max": 20}, "k": 3, "use_llm": False})
    assert r.status_code == 200
    assert all(i["category"] == "books" and i["price"] <= 20 for i in r.json()["items"])


@pytest.mark.parametrize(
    ("headers", "body", "status", "phrase"),
    [
        ({}, {"message": "hi"}, 401, "missing API key"),
        ({"Authorization": "Bearer nope"}, {"message": "hi"}, 401, "invalid API key"),
        (DEMO, {"message": "hi", "user": "u0002"}, 403, "another user"),
        (DEMO, {"message": "   "}, 422, "empty"),
        (DEMO, {"message": "x" * 5000}, 413, "limit"),
        (DEMO, {"message": "hi", "k": 0}, 422, "k"),
        (DEMO, {"message": "hi", "surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_requests_get_clear_4xx(http, headers, body, status, phrase):
    r = http.post("/v1/recommend", headers=headers, json=body)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert phrase in message
    assert "u0001" not in message and "demo" not in message.replace("demo ", "")  # no enumeration


def test_malformed_json_and_huge_body(http):
    r = http.post("/v1/recommend", headers={**DEMO, "content-type": "application/json"}, content=b'{"message": ')
    assert r.status_code == 422 and "malformed JSON" in r.json()["error"]["message"]
    r = http.post("/v1/recommend", headers=DEMO, json={"message": "y" * 300_000})
    assert r.status_code == 413
    assert http.get("/healthz").status_code == 200  # still healthy


def test_idempotency_key(http):
    headers = {**DEMO, "Idempotency-Key": "same-request-1"}
    body = {"message": "yoga mat", "session_id": "idem-session-1"}
    a = http.post("/v1/recommend", headers=headers, json=body).json()
    b = http.post("/v1/recommend", headers=headers, json=body).json()
    assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
    assert b["replayed"] is True and a["request_id"] == b["request_id"]


def test_openai_sdk_chat_and_stream(app_server):
    client = openai.OpenAI(base_url=app_server.url + "/v1", api_key="demo", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fusionrec"]
    out = client.chat.completions.create(model="fusionrec", user="sdk-session-1",
                                         messages=[{"role": "user", "content": "board games for a party"}])
    text = out.choices[0].message.content
    assert "picks for you" in text and out.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="fusionrec", user="sdk-session-1", stream=True,
                                            messages=[{"role": "user", "content": "cheaper"}])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    streamed = "".join(pieces)
    assert len(pieces) > 5 and "picks for you" in streamed
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=app_server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_sse_ends_with_done(http):
    with http.stream("POST", "/v1/chat/completions", headers=DEMO,
                     json={"model": "fusionrec", "stream": True, "messages": [{"role": "user", "content": "tents"}]}) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
