"""The Gradio UI for real: its API driven with gradio_client against `python app.py`, the page in headless
Chromium, and the card renderer fed hostile catalog text."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLM_TIMEOUT_S
from web.ui_render import cards_html, intent_message, profile_html, step_message

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
CARD = re.compile(r'<article class="fr-card" data-item-id="([^"]+)"(?: data-price="([0-9.]+)")?')
HOSTILE = '<img src=x onerror=alert(1)>'


def cards(html_text: str) -> list[tuple[str, float | None]]:
    """(item id, price) of every card, in order."""
    return [(item, float(price) if price else None) for item, price in CARD.findall(html_text)]


def text_of(message: dict) -> str:
    content = message["content"]
    return "".join(part.get("text", "") for part in content) if isinstance(content, list) else str(content)


@contextmanager
def connected(server) -> Iterator[Any]:
    """A gradio_client session; closed after use, since its open heartbeat stream would otherwise keep the
    server from shutting down at the end of the test session."""
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(app_server):
    with connected(app_server) as c:
        yield c


def test_camping_under_100_then_cheaper_streams_steps_and_keeps_the_session(client, demo_stores):
    profile, chat, *_ = client.predict("u0001", api_name="/select_persona")
    assert 'data-user-id="u0001"' in profile and "Recently" in profile and chat == []

    job = client.submit("camping gear under $100", "u0001", api_name="/chat")
    chat, card_html, info, _context, raw = job.result(timeout=LLM_TIMEOUT_S)
    assert len(job.outputs()) > 5, "the answer should arrive as a stream of updates, not in one piece"
    titles = [m["metadata"]["title"] for m in chat if m.get("metadata") and m["metadata"].get("title")]
    assert any(t.startswith("🔧 ") for t in titles), titles
    assert all(m["metadata"].get("status") == "done" for m in chat if m.get("metadata"))
    assert text_of(chat[0]) == "camping gear under $100" and text_of(chat[-1]).startswith("Here are")
    assert isinstance(raw, list) and info["fallback_reason"] == "llm_off"

    first = cards(card_html)
    assert first, card_html[:500]
    for item_id, price in first:  # checked against the data, not against what the card claims
        i = demo_stores.item_idx(item_id)
        assert "camping" in demo_stores.tag_lists[i], (item_id, demo_stores.titles[i])
        assert price is not None and price == pytest.approx(float(demo_stores.prices[i])) and price <= 100
        assert html.escape(demo_stores.titles[i]) in card_html

    chat, card_html, info2, _context, _raw = client.predict("cheaper", "u0001", api_name="/chat")
    assert info2["session_id"] == info["session_id"] and info2["turn"] == 2
    reply = text_of(chat[-1])
    cap = re.search(r"under \$([0-9.]+)", reply)
    assert cap, reply
    cheaper = cards(card_html)
    assert cheaper
    new_prices = [float(demo_stores.prices[demo_stores.item_idx(i)]) for i, _ in cheaper]
    assert all(p <= float(cap.group(1)) for p in new_prices), (cap.group(1), new_prices)
    assert max(new_prices) < max(p for _, p in first if p is not None)


def test_errors_are_shown_in_the_chat_and_a_persona_switch_starts_a_new_session(client):
    *_, info, _context, _raw = client.predict("camping gear under $100", "u0001", api_name="/chat")
    chat = client.predict("", "u0001", api_name="/chat")[0]
    assert text_of(chat[-1]) == "⚠️ the message is empty"
    chat = client.predict("x" * 5000, "u0001", api_name="/chat")[0]
    assert "limit is 4000" in text_of(chat[-1])

    profile, chat, card_html, *_ = client.predict("u0002", api_name="/select_persona")
    assert 'data-user-id="u0002"' in profile and chat == [] and cards(card_html) == []
    *_, info2, _context, _raw = client.predict("a sci-fi novel", "u0002", api_name="/chat")
    assert info2["session_id"] != info["session_id"] and info2["turn"] == 1


def test_run_history_is_off_and_the_prompt_lab_tab_exists(app_server):
    import httpx

    config = httpx.get(app_server.url + "/config", timeout=10).json()
    assert config["run_history"] is False and "runs" not in config["footer_links"]
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert "Prompt lab" in labels


def test_hostile_catalog_text_is_escaped_in_cards_profile_and_chat():
    from fusion.items import Evidence, Recommendation

    evidence = Evidence(fusion_score=0.5, cf_score=0, cooccurrence=0, content_similarity=0, friends_count=3,
                        friends=["<svg onload=alert(1)>"], similar_history=["<a href=javascript:alert(1)>x</a>"],
                        bought_together=["<style>"])
    item = Recommendation(rank=1, item_id='p1" onmouseover="alert(1)', title=HOSTILE, category="<script>x()</script>",
                          price=9.5, tags=["<b>bold</b>"], explanation="![img](http://evil.example/x.png) <iframe>",
                          score=1.0, evidence=evidence)
    out = cards_html([item], "$")
    for raw in ("<img", "<script", "<b>", "<iframe", "<svg", "<a ", "<style", '" onmouseover'):
        assert raw not in out, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in out and "$9.50" in out
    assert "Bought by 3 of your friends: &lt;svg onload=alert(1)&gt;" in out

    profile = profile_html("u1", HOSTILE, [{"title": HOSTILE, "category": "c", "price": None, "kinds": []}],
                           [HOSTILE], "$")
    assert "<img" not in profile and profile.count("&lt;img") == 3

    from agent.toolkit import ToolStep

    step = step_message(ToolStep("search_catalog", {"query": HOSTILE}, [{"title": "![x](http://e/x.png)"}], 1.0))
    assert step["metadata"]["title"] == "🔧 search_catalog" and step["metadata"]["status"] == "done"
    assert "<img" not in step["content"] and "![" not in step["content"]
    assert "<img" not in intent_message({"preferences": HOSTILE})["content"]


def _chromium():
    if not CHROMIUM.exists():
        if os.environ.get("FUSIONREC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FUSIONREC_REQUIRE_BROWSER=1 but there is no browser at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) to run the browser test")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


@pytest.mark.slow
def test_browser_persona_profile_chat_and_cards(app_server):
    with _chromium() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(app_server.url + "/", wait_until="domcontentloaded")
            page.wait_for_selector("#profile .fr-profile[data-user-id=u0001]", timeout=60_000)

            page.locator("#persona input").click()
            page.get_by_role("option", name=re.compile(r"^u0002 — ")).click()
            page.wait_for_selector("#profile .fr-profile[data-user-id=u0002]", timeout=30_000)
            profile = page.locator("#profile").inner_text()
            assert "Recently" in profile and "Friends" in profile

            box = page.locator("#message textarea")
            box.fill("camping gear under $100")
            box.press("Enter")
            page.wait_for_selector("#cards .fr-card", timeout=120_000)
            page.wait_for_function("document.querySelector('#chat').innerText.includes('Here are')", timeout=60_000)
            cards_ = page.locator("#cards .fr-card")
            assert cards_.count() >= 1
            for n in range(cards_.count()):
                assert cards_.nth(n).locator(".fr-title").inner_text().strip()
                assert re.fullmatch(r"\$\d+\.\d\d", cards_.nth(n).locator(".fr-price").inner_text().strip())
            assert "🔧 search_catalog" in page.locator("#chat").inner_text()

            page.wait_for_function("!document.querySelector('#message textarea').disabled", timeout=60_000)
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "artifacts" / "ui-chat.png"), full_page=True)

            # the user's own markup is shown as text and never runs
            box.fill('<img src=x onerror="document.title=\'pwned\'"> tents')
            box.press("Enter")
            page.wait_for_function("document.querySelector('#chat').innerText.includes('<img src=x')",
                                   timeout=60_000)
            page.wait_for_function("!document.querySelector('#message textarea').disabled", timeout=60_000)
            assert page.locator("#chat img[src=x]").count() == 0 and page.title() != "pwned"
        finally:
            browser.close()


@pytest.mark.slow
def test_llm_turn_shows_the_rerank_prompt_and_raw_output(app_server_llm):
    with connected(app_server_llm) as client:
        chat, card_html, info, context, raw = client.predict("camping gear under $100", "u0001",
                                                                   api_name="/chat")
    assert cards(card_html), text_of(chat[-1])
    assert raw and {"purpose", "ok", "latency_ms", "raw"} <= set(raw[0])
    if info["llm_used"]:
        assert "camping" in context.lower()
    else:  # a degraded turn must say why
        assert info["fallback_reason"]
