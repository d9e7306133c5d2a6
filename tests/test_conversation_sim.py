"""The simulated-listener benchmark (evals/conversation_sim.py) on the demo shop: who is asked for what,
how they say it, and that every reported metric moves when the system's behaviour does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from catalog.stores import Stores, build_stores
from evals.conversation_sim import (
    EASE_LAMBDAS,
    FIRST,
    Conversation,
    HttpDriver,
    Reply,
    TagReference,
    build_conversations,
    popularity_scores,
    simulate,
    summarise,
    tune_ease,
    usable_words,
)
from indexing.training import Split, holdout
from loaders.schema import Dataset

World = tuple[Split, list[Conversation], Stores]


@pytest.fixture(scope="module")
def world(demo_dataset: Dataset) -> World:
    split = holdout(demo_dataset, fraction=0.2, seed=7)
    conversations, sampled = build_conversations(split, users=300, seed=7)
    assert sampled == split.held["user_id"].nunique() and len(conversations) >= 30
    return split, conversations, build_stores(split.train)


def others(stores: Stores, conversation: Conversation, n: int = 5, offset: int = 0) -> list[str]:
    """``n`` items that are not the target (a system that never finds it)."""
    ids = [str(i) for i in stores.item_ids if str(i) != conversation.item_id]
    return ids[offset:offset + n]


def test_an_oracle_finds_every_target_in_the_first_turn(world: World) -> None:
    _, conversations, stores = world
    target = {c.conversation_id: c.item_id for c in conversations}
    row = summarise("oracle", simulate(conversations, lambda cid, user, message: [target[cid], *others(stores, conversations[0], 4)]), stores)
    assert (row["hit@1"], row["hit@3"], row["hit@5"], row["mean_turns"]) == (1.0, 1.0, 1.0, 1.0)
    assert row["turns_played"] == len(conversations) and row["users"] == len(conversations)


def test_a_system_that_never_shows_the_target_scores_zero_and_five_turns(world: World) -> None:
    _, conversations, stores = world
    script = {c.conversation_id: c for c in conversations}
    runs = simulate(conversations, lambda cid, user, message: others(stores, script[cid], 5, 7 * len(message)))
    row = summarise("never", runs, stores)
    assert (row["hit@1"], row["hit@3"], row["hit@5"]) == (0.0, 0.0, 0.0)
    assert row["mean_turns"] == 5.0  # never shown counts as the 5 turns the listener spent
    assert row["turns_played"] == 5 * len(conversations)


def test_a_late_hit_counts_for_the_later_cutoffs_only(world: World) -> None:
    _, conversations, stores = world
    script = {c.conversation_id: c for c in conversations}
    turn: dict[str, int] = {}

    def third_turn(cid: str, user: str, message: str) -> list[str]:
        turn[cid] = turn.get(cid, 0) + 1
        return [script[cid].item_id] if turn[cid] == 3 else others(stores, script[cid], 5, 10 * turn[cid])

    row = summarise("late", simulate(conversations, third_turn), stores)
    assert (row["hit@1"], row["hit@3"], row["hit@5"], row["mean_turns"]) == (0.0, 1.0, 1.0, 3.0)
    assert row["hit_by_turn"] == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_re_showing_the_same_list_is_counted_on_every_later_turn(world: World) -> None:
    _, conversations, stores = world
    script = {c.conversation_id: c for c in conversations}
    same = summarise("same", simulate(conversations, lambda cid, user, message: others(stores, script[cid])), stores)
    assert same["reshown_share"] == 1.0
    fresh = summarise("fresh", simulate(conversations, lambda cid, user, message: others(
        stores, script[cid], 5, 5 * next(t for t, m in enumerate(script[cid].messages) if m == message))), stores)
    assert fresh["reshown_share"] == 0.0


def test_all_words_share_and_nothing_matches_replies(world: World) -> None:
    _, conversations, stores = world
    script = {c.conversation_id: c for c in conversations}
    carries_none = {cid: [str(stores.item_ids[i]) for i in np.flatnonzero(
        ~np.any([stores.has_tag(w) for w in c.words], axis=0))[:5]] for cid, c in script.items()}
    row = summarise("off-topic", simulate(conversations, lambda cid, user, message: Reply(
        carries_none[cid], "Sorry, nothing in the catalog matches 'heard'.")), stores)
    assert row["all_words_share"] == 0.0
    assert row["nothing_matches_replies"] == 5 * len(conversations)
    on_topic = summarise("target", simulate(conversations, lambda cid, user, message: Reply(
        [script[cid].item_id], "Here are 5 picks")), stores)
    assert on_topic["all_words_share"] == 1.0 and on_topic["nothing_matches_replies"] == 0
    # Items with the first word but not the second carry every word said so far in turn 1 only.
    first_only = {c.conversation_id: [str(stores.item_ids[i]) for i in np.flatnonzero(
        stores.has_tag(c.words[0]) & ~stores.has_tag(c.words[1]))[:5]] for c in conversations}
    partial = [c for c in conversations if len(first_only[c.conversation_id]) == 5]
    assert len(partial) >= 10
    row = summarise("first word only", simulate(partial, lambda cid, user, message: first_only[cid]), stores)
    assert row["all_words_share"] == pytest.approx(0.2)


def test_targets_are_held_out_artists_the_system_never_saw(world: World) -> None:
    split, conversations, _ = world
    seen = set(zip(split.train.interactions["user_id"].astype(str), split.train.interactions["item_id"].astype(str),
                   strict=True))
    held = set(zip(split.held["user_id"].astype(str), split.held["item_id"].astype(str), strict=True))
    for c in conversations:
        assert (c.user_id, c.item_id) not in seen
        assert (c.user_id, c.item_id) in held
    assert len({c.user_id for c in conversations}) == len(conversations)


def test_words_are_the_targets_tags_and_never_its_name(world: World) -> None:
    split, conversations, _ = world
    tags = dict(zip(split.train.catalog["item_id"].astype(str), split.train.catalog["tags"].fillna(""), strict=True))
    for c in conversations:
        assert len(c.words) == len(c.messages) == 5
        assert all(c.title.lower() not in w for w in c.words)
        assert all(w in tags[c.item_id].lower().split("|") for w in c.words)
        assert all(c.title.lower() not in m.lower() for m in c.messages)
    assert usable_words("The Beatles", ["beatles", "rock", "the beatles tribute", "80s", "2000", "Rock", "60's",
                                        "british"]) == ["rock", "80s", "60's", "british"]


def test_messages_vary_and_follow_ups_mostly_add_only_the_new_word(world: World) -> None:
    _, conversations, _ = world
    first = [c.messages[0].replace(c.words[0], "{w}") for c in conversations[:30]]
    assert len(set(first)) >= 8 and set(first) <= set(FIRST)
    follow_ups = [(c, t) for c in conversations for t in range(1, 5)]
    for c, t in follow_ups:
        assert c.words[t] in c.messages[t]
    restated = sum(c.words[0] in c.messages[t] for c, t in follow_ups
                   if not any(c.words[0] in w for w in c.words[1:]))
    assert 0 < restated < 0.5 * len(follow_ups)


def test_the_popularity_reference_shows_popular_unseen_items_carrying_every_word(world: World) -> None:
    _, conversations, stores = world
    reference = TagReference(stores, popularity_scores(stores), conversations)
    checked = 0
    for c in conversations:
        user = stores.user_idx(c.user_id)
        shown: set[int] = set()
        for t, message in enumerate(c.messages, start=1):
            picks = [stores.item_index[i] for i in reference(c.conversation_id, c.user_id, message)]
            assert len(picks) == 5 and not shown & set(picks)
            assert not set(stores.feedback[user].indices) & set(picks)
            carrying = np.all([stores.has_tag(w) for w in c.words[:t]], axis=0)
            carrying[stores.feedback[user].indices] = False
            carrying[list(shown)] = False
            if carrying.sum() >= 5:
                checked += 1
                assert carrying[picks].all()
                assert list(stores.popularity[picks]) == sorted(stores.popularity[carrying], reverse=True)[:5]
            shown |= set(picks)
    assert checked >= len(conversations)


def test_ease_is_tuned_on_a_validation_holdout_of_the_train_split(world: World) -> None:
    split, conversations, stores = world
    lam, ndcg = tune_ease(split.train, seed=7)
    assert lam in EASE_LAMBDAS and set(ndcg) == {str(v) for v in EASE_LAMBDAS}
    assert ndcg[str(lam)] == max(ndcg.values())


def test_the_http_driver_speaks_the_openai_api_with_one_key_per_user_and_conversation() -> None:
    seen: list[dict[str, Any]] = []

    def app(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"auth": request.headers["authorization"], **body})
        n = len(seen)
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": f"reply {n}"}}],
                                         "fusionrec": {"items": [{"item_id": f"p{n}{k}"} for k in range(6)]}})

    driver = HttpDriver("http://test", {"u1": "key-u1", "u2": "key-u2"}, transport=httpx.MockTransport(app))
    assert driver("c1", "u1", "rock please").items == [f"p1{k}" for k in range(6)]
    driver("c2", "u2", "jazz please")
    reply = driver("c1", "u1", "no, something more indie")
    assert reply.text == "reply 3"
    assert [s["auth"] for s in seen] == ["Bearer key-u1", "Bearer key-u2", "Bearer key-u1"]
    assert seen[0]["user"] == seen[2]["user"] != seen[1]["user"]
    assert [m["content"] for m in seen[2]["messages"]] == ["rock please", "reply 1", "no, something more indie"]
