"""Feedback under the recommendation cards (thumbs up / down, "bought it"): one behaviour event for the acting
user on an item of the conversation's last list, checked and stored as ``POST /v1/events`` does it, and the
message that asks for the list again so the answer shows the change."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.events import EventDatabaseError
from web.api import ApiError
from web.events_api import EventIn, EventsBody, check_batch, record_events
from web.services import Services

log = logging.getLogger("fusionrec.ui")
# A refinement that changes nothing: the same filters and words, ranked again (the planner reads it as a
# "refine" act, one of its own examples).
REFRESH_MESSAGE = "show me others"
# Intent fields that refer to the list before the turn, or act once ("cheaper" lowers the cap each time):
# a turn with any of them set is not asked again word for word.
ONE_SHOT_FIELDS = ("mentioned_items", "exclude_items", "positions", "refinements", "cheaper_than", "pricier_than",
                   "question_target", "price_band")
REPEATABLE_ACTS = ("recommend", "friends")


class FeedbackRefused(ValueError):
    """The feedback was not recorded; the message says why and what to do."""


@dataclass(frozen=True)
class FeedbackKind:
    name: str  # the button's api name: like | dislike | bought
    kind: str  # the event kind stored
    label: str  # the button's text


def feedback_kinds(positive_kind: str, verb: str) -> list[FeedbackKind]:
    return [FeedbackKind("like", "like", "👍"), FeedbackKind("dislike", "dislike", "👎"),
            FeedbackKind("bought", positive_kind, f"{verb[:1].upper()}{verb[1:]} it")]


def recorded_text(kind: str, title: str, positive_kind: str, verb: str) -> str:
    done = {"like": "you like", "dislike": "you don't like"}.get(kind, f"you {verb}" if kind == positive_kind else kind)
    return f"Recorded: {done} {title}; it will not be offered again."


def record_feedback(services: Services, user_id: str, last_list: Sequence[str], item_id: str | None,
                    kind: str) -> str:
    """Store one event of ``kind`` for ``user_id`` on ``item_id``, which must be on the last list; the notice
    to show. Raises FeedbackRefused (nothing stored)."""
    if not last_list:
        raise FeedbackRefused("Ask for recommendations first: feedback is given on the items of the last list.")
    if not item_id or item_id not in last_list:
        raise FeedbackRefused("That item is not on the last list; pick one of the items shown.")
    if services.events is None:
        raise FeedbackRefused("Feedback is not available: this server has no events store.")
    try:
        events = check_batch(services, EventsBody(events=[EventIn(user_id=user_id, item_id=item_id, kind=kind)]),
                             writer=user_id)
        record_events(services, events)
    except ApiError as exc:
        raise FeedbackRefused(f"Not recorded: {exc.message}") from None
    except (sqlite3.Error, EventDatabaseError, OSError) as exc:
        log.error("feedback not stored", exc_info=exc)
        raise FeedbackRefused("Not recorded: the events store is unavailable right now; please try again.") from None
    stores = services.recommender.stores
    title = str(stores.titles[stores.item_index[item_id]])
    return recorded_text(kind, title, stores.dataset.positive_kinds[0], stores.dataset.interaction_verb)


def refresh_message(history: Sequence[dict[str, Any]]) -> str:
    """What to ask so that the conversation's last request is answered again: the last message itself when it
    stands alone (same filters, count, sort and source; asking it again changes nothing in the session), else
    a refinement that changes nothing."""
    for turn in reversed(history):
        response = turn.get("response") or {}
        if response.get("kind") != "recommendations":
            continue
        intent = response.get("intent") or {}
        if intent.get("act") in REPEATABLE_ACTS and not any(intent.get(f) for f in ONE_SHOT_FIELDS):
            return str(turn["message"])
        break
    return REFRESH_MESSAGE
