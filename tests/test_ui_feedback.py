"""Feedback under the cards (👍 / 👎 / "Bought it") for real: gradio_client against `python app.py` in demo mode,
the events table of its sessions database, and one click in headless Chromium.

Each test acts as a demo persona no other test uses: the events it stores stay in the shared sessions database."""

from __future__ import annotations

import html
import re
import sqlite3

import pytest

from tests.test_ui import CHROMIUM, CHROMIUM_ARGS, _chromium, cards, connected, text_of


def events_of(server, item_id: str | None = None) -> list[tuple[str, str, str]]:
    """(user, item, kind) of the stored events, optionally of one item."""
    with sqlite3.connect(server.sessions_db()) as db:
        sql, args = "SELECT user_id, item_id, kind FROM events", ()
        if item_id is not None:
            sql, args = sql + " WHERE item_id = ?", (item_id,)
        return [tuple(row) for row in db.execute(sql + " ORDER BY seq", args)]


def ids(card_html: str) -> list[str]:
    return [item for item, _ in cards(card_html)]


def test_bought_it_on_the_first_card_records_it_and_the_next_cards_drop_it(app_server, demo_stores):
    persona = "u0031"
    with connected(app_server) as client:
        client.predict(persona, api_name="/select_persona")
        _chat, card_html, info, *_ = client.predict("camping gear under $100", persona, api_name="/chat")
        first = ids(card_html)[0]
        chat, card_html, info2, _context, _raw, notice = client.predict(first, persona, api_name="/feedback_bought")
    title = demo_stores.titles[demo_stores.item_idx(first)]
    assert f"Recorded: you bought {title}; it will not be offered again." in html.unescape(notice), notice
    refreshed = ids(card_html)
    assert refreshed and first not in refreshed, (first, refreshed)
    assert info2["session_id"] == info["session_id"] and info2["turn"] == 2  # the same conversation, one turn on
    assert text_of(chat[-1]).startswith("Here are")
    assert events_of(app_server, first) == [(persona, first, "purchase")]


def test_thumbs_down_records_a_dislike_and_the_next_cards_drop_it(app_server):
    persona = "u0032"
    with connected(app_server) as client:
        client.predict(persona, api_name="/select_persona")
        _chat, card_html, *_ = client.predict("a sci-fi novel", persona, api_name="/chat")
        second = ids(card_html)[1]
        _chat, card_html, *_, notice = client.predict(second, persona, api_name="/feedback_dislike")
        assert "Recorded: you don't like" in html.unescape(notice), notice
        assert ids(card_html) and second not in ids(card_html)
        _chat, card_html, *_ = client.predict("a sci-fi novel", persona, api_name="/chat")  # and it stays out
        assert ids(card_html) and second not in ids(card_html)
    assert events_of(app_server, second) == [(persona, second, "dislike")]


def test_feedback_without_a_list_or_on_an_item_not_in_it_is_refused(app_server, demo_stores):
    persona = "u0034"
    before = len(events_of(app_server))
    with connected(app_server) as client:
        client.predict(persona, api_name="/select_persona")
        notice = client.predict(str(demo_stores.item_ids[0]), persona, api_name="/feedback_like")[-1]
        assert "Ask for recommendations first" in notice, notice
        _chat, card_html, *_ = client.predict("camping gear under $100", persona, api_name="/chat")
        shown = ids(card_html)
        outside = next(str(i) for i in demo_stores.item_ids if str(i) not in shown)
        for item in (outside, "no-such-item", ""):
            notice = client.predict(item, persona, api_name="/feedback_bought")[-1]
            assert "not on the last list" in notice, (item, notice)
        # a persona the picker does not offer cannot give feedback either (Gradio refuses the value)
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict(shown[0], "u0250", api_name="/feedback_bought")
    assert len(events_of(app_server)) == before


@pytest.mark.slow
def test_browser_bought_it_changes_the_cards(app_server):
    with _chromium() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(app_server.url + "/", wait_until="domcontentloaded")
            page.wait_for_selector("#profile .fr-profile[data-user-id=u0001]", timeout=60_000)
            page.locator("#persona input").click()
            page.get_by_role("option", name=re.compile(r"^u0035 — ")).click()
            page.wait_for_selector("#profile .fr-profile[data-user-id=u0035]", timeout=30_000)

            box = page.locator("#message textarea")
            box.fill("camping gear under $100")
            box.press("Enter")
            page.wait_for_selector("#cards .fr-card", timeout=120_000)
            first = page.locator("#cards .fr-card").first.get_attribute("data-item-id")
            title = page.locator("#cards .fr-card .fr-title").first.inner_text().strip()
            # the picker lists the last list, the first item chosen
            page.wait_for_function("document.querySelector('#feedback-item input').value.startsWith('#1 ')",
                                   timeout=30_000)
            page.wait_for_function("!document.querySelector('#message textarea').disabled", timeout=60_000)
            page.locator("#feedback-bought").click()
            page.wait_for_function("document.querySelector('#feedback-notice').innerText.includes('Recorded')",
                                   timeout=60_000)
            assert f"you bought {title}" in page.locator("#feedback-notice").inner_text()
            page.wait_for_function(
                "(id) => document.querySelector('#cards .fr-card') && ![...document.querySelectorAll("
                "'#cards .fr-card')].some(c => c.dataset.itemId === id)", arg=first, timeout=120_000)
        finally:
            browser.close()
    assert ("u0035", first, "purchase") in events_of(app_server, first)
