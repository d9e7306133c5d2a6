"""HTML and chat-message rendering for the Gradio UI: pure functions over turn results and store records.

Every catalog or user string is escaped here (``html.escape`` for HTML, ``agent.reply.safe`` for chat
markdown): a listing titled ``<script>`` or ``![x](http://...)`` must show up as text, never as markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

from agent.evidence import reasons
from agent.reply import money, safe
from agent.toolkit import ToolStep
from fusion.items import Recommendation

# Scoped to the gr.HTML component by Gradio (css_template); Blocks-level css is owned by the mounting app.
CARDS_CSS = """
.fr-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
.fr-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 12px 14px;
  background: var(--background-fill-secondary); display: flex; flex-direction: column; gap: 6px; }
.fr-card h3 { margin: 0; font-size: 1.02em; line-height: 1.3; }
.fr-rank { color: var(--body-text-color-subdued); font-size: 0.8em; }
.fr-meta { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; }
.fr-category { color: var(--body-text-color-subdued); text-transform: capitalize; }
.fr-price { font-weight: 700; font-size: 1.05em; }
.fr-tags { display: flex; flex-wrap: wrap; gap: 4px; }
.fr-tag { border-radius: 999px; padding: 1px 8px; font-size: 0.78em; background: var(--background-fill-primary);
  border: 1px solid var(--border-color-primary); }
.fr-why { margin: 2px 0 0; font-size: 0.9em; }
.fr-evidence { margin: 0; padding-left: 18px; font-size: 0.82em; color: var(--body-text-color-subdued); }
.fr-empty, .fr-profile-empty { color: var(--body-text-color-subdued); font-style: italic; }
.fr-profile h3 { margin: 0 0 4px; }
.fr-profile ul { margin: 4px 0 8px; padding-left: 18px; }
.fr-profile .fr-muted { color: var(--body-text-color-subdued); font-size: 0.85em; }
"""

NO_CARDS = '<div class="fr-cards"><p class="fr-empty">Recommendations will appear here.</p></div>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _names(values: Iterable[Any], limit: int) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(_e(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def evidence_lines(item: Recommendation, show_names: bool = True, verb: str = "bought") -> list[str]:
    """The stored facts behind a pick (agent/evidence.py, the same words as the explanation), escaped for
    HTML; empty when the item was asked about rather than ranked."""
    return [_e(r[:1].upper() + r[1:]) for r in reasons(item, show_names, fallback=False, verb=verb)]


def card_html(item: Recommendation, currency: str, verb: str = "bought") -> str:
    price = item.price
    price_attr = f' data-price="{float(price):.2f}"' if price is not None else ""
    tags = "".join(f'<span class="fr-tag">{_e(t)}</span>' for t in item.tags[:6])
    evidence = "".join(f"<li>{line}</li>" for line in evidence_lines(item, verb=verb))
    why = item.explanation
    return (
        f'<article class="fr-card" data-item-id="{_e(item.item_id)}"{price_attr}>'
        f'<div class="fr-rank">#{_e(item.rank)}</div>'
        f'<h3 class="fr-title">{_e(item.title)}</h3>'
        f'<div class="fr-meta"><span class="fr-category">{_e(item.category)}</span>'
        f'<span class="fr-price">{_e(money(price, currency)) if price is not None else "no price"}</span></div>'
        + (f'<div class="fr-tags">{tags}</div>' if tags else "")
        + (f'<p class="fr-why"><strong>Why:</strong> {_e(why)}</p>' if why else "")
        + (f'<ul class="fr-evidence">{evidence}</ul>' if evidence else "")
        + "</article>"
    )


def notice_html(text: str) -> str:
    return f'<p class="fr-profile-empty">{_e(text)}</p>'


def cards_html(items: list[Recommendation], currency: str, verb: str = "bought") -> str:
    """Recommendation cards; every catalog string is HTML-escaped."""
    if not items:
        return '<div class="fr-cards"><p class="fr-empty">No items for this turn.</p></div>'
    return '<div class="fr-cards">' + "".join(card_html(i, currency, verb) for i in items) + "</div>"


def profile_html(user_id: str, name: str, history: list[dict[str, Any]], friends: list[str],
                 currency: str) -> str:
    """A short persona profile: who, recent items, friends."""
    recent = "".join(
        f"<li>{_e(h['title'])} <span class='fr-muted'>· {_e(h.get('category', ''))}"
        + (f" · {_e(money(h['price'], currency))}" if h.get("price") is not None else "")
        + (f" · {_e(', '.join(h.get('kinds') or []))}" if h.get("kinds") else "") + "</span></li>"
        for h in history)
    return (
        f'<div class="fr-profile" data-user-id="{_e(user_id)}"><h3>{_e(name)} '
        f'<span class="fr-muted">({_e(user_id)})</span></h3>'
        f"<strong>Recently</strong>" + (f"<ul>{recent}</ul>" if recent else
                                        "<p class='fr-profile-empty'>no history yet</p>")
        + f"<strong>Friends</strong> <span class='fr-muted'>({len(friends)})</span>"
        + (f"<p>{_names(friends, 10)}</p>" if friends else "<p class='fr-profile-empty'>no friends listed</p>")
        + "</div>"
    )


def intent_message(intent: dict[str, Any]) -> dict[str, Any]:
    """The parsed request as a collapsed chat 'thought' (only the fields that are set)."""
    lines = []
    for key, value in intent.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v not in (None, [], "", {})}
        if value in (None, [], "", {}):
            continue
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
        lines.append(f"- {safe(key)}: {safe(shown)}")
    return {"role": "assistant", "content": "\n".join(lines) or "nothing specific",
            "metadata": {"title": f"🧭 understood: {safe(intent.get('act', 'request'))}", "status": "done"}}


def step_message(step: ToolStep) -> dict[str, Any]:
    """One tool call as a collapsed chat 'thought': the tool name in the title, its summary as content."""
    args = json.dumps(step.args, ensure_ascii=False, default=str)
    return {"role": "assistant", "content": f"{safe(step.summary())}\n\n`args` {safe(args)}",
            "metadata": {"title": f"🔧 {step.name}", "status": "done", "duration": round(step.ms / 1000, 3)}}


def status_message(text: str, done: bool = False) -> dict[str, Any]:
    """What the agent is doing right now: a spinner while it lasts, a check mark once something follows."""
    return {"role": "assistant", "content": "",
            "metadata": {"title": f"{'✅' if done else '⏳'} {safe(text)}", "status": "done" if done else "pending"}}


def error_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": f"⚠️ {safe(text)}"}


def turn_info(result: Any) -> dict[str, Any]:
    """What someone iterating on prompts wants to see next to the context: the LLM path and its cost."""
    return {
        "session_id": result.session_id, "turn": result.turn, "kind": result.kind, "request_id": result.request_id,
        "llm_used": result.llm_used, "fallback_reason": result.fallback_reason, "blend_weight": result.blend_weight,
        "tokens": result.tokens, "timings_ms": result.timings_ms, "notes": result.notes, "intent": result.intent,
        "items": [i.model_dump(include={"rank", "item_id", "title", "category", "price", "tags"})
                  for i in result.items],
    }
