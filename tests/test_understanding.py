"""Conversation understanding on the demo shop and a Last.fm slice: entity linking, the reading of each
span, slots, dialogue acts and memory across turns. Expected values are computed from the stores here,
independently of the code under test."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from agent.acts import ActClassifier, load_exemplars
from agent.chat import ChatAgent
from agent.intent import IntentParser
from agent.linker import EntityLinker
from agent.prompts import load_prompt_set
from agent.readings import resolve
from storage.sessions import SessionStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def linker(demo_stores):
    return EntityLinker(demo_stores)


@pytest.fixture(scope="module")
def parser(demo_stores, linker, recommender):
    embed = recommender.vector_store.embedder.embed
    return IntentParser(demo_stores, linker=linker, classifier=ActClassifier(embed, load_exemplars(ROOT / "prompts")))


@pytest.fixture()
def agent(recommender, demo_settings, tmp_path):
    settings = demo_settings.model_copy(update={"llm": demo_settings.llm.model_copy(update={"backend": "off"})})
    return ChatAgent(recommender, None, load_prompt_set(settings.prompts_dir), settings,
                     SessionStore(tmp_path / "sessions.sqlite"))


def titled(stores, title: str) -> str:
    return str(stores.item_ids[stores.titles.index(title)])


def test_linker_finds_titles_brands_and_kinds_despite_typos_plurals_and_partial_names(demo_stores, linker):
    def kinds(message):
        return {(m.kind, m.value) for m in linker.link(message).mentions}

    dac = titled(demo_stores, "Lumen Trail DAC")
    assert ("title", dac) in kinds("something like the Lumen Trail DAC")
    assert ("title", dac) in kinds("something like the lumen trial dac")  # transposed letters
    assert ("title", titled(demo_stores, "Kestrel Pro Resistance Band")) in kinds("not the Kestral Pro Resistance Band")
    assert ("brand", "Harbor") in kinds("nothing from harbor") and ("noun", "tent") in kinds("no tents")
    # Partial titles: "Trail DAC" names two items; "Harbor headphones" is a brand and a kind, not one title.
    trail = {v for k, v in kinds("the trail dac") if k == "title"}
    assert trail == {titled(demo_stores, "Lumen Trail DAC"), titled(demo_stores, "Tundra Trail DAC")}
    assert kinds("Harbor headphones") == {("brand", "Harbor"), ("noun", "headphone")}
    # Two names joined by "and" are two names, never one partial title across the "and".
    both = linker.link("compare the Fjord Max Tent and the Northwind Prime Tent")
    assert {m.value for m in both.mentions if m.kind == "title" and m.score == 100} == {
        titled(demo_stores, "Fjord Max Tent"), titled(demo_stores, "Northwind Prime Tent")}
    # A word of the sentence is never an entity; an adjective before a catalog word is not a kind of item.
    assert kinds("I want something please") == set()
    assert ("noun", "light") not in kinds("light camping gear") and ("noun", "light") in kinds("a bike light")


def test_readings_scope_exclusions_and_combine_or_and(demo_stores, linker):
    def read(message):
        return resolve(message, linker.link(message)).constraints

    c = read("camping gear, no tents or stoves")
    assert c.tags == ["camping"] and sorted(c.exclude_title_words) == ["stove", "tent"]
    assert read("not too expensive camping gear").tags == ["camping"]  # "not too" excludes nothing
    c = read("a sci-fi or thriller novel")
    assert sorted(c.any_tags) == ["sci-fi", "thriller"] and c.tags == ["novel"]
    assert read("kitchen or garden").any_tags == ["kitchen", "garden"]
    assert read("nothing from Harbor").exclude_brands == ["Harbor"] and read("nothing from Harbor").brands == []
    c = read("toys other than plush bears")
    assert c.category == "toys" and c.exclude_title_words == ["bear"]


@pytest.mark.lastfm
def test_tag_or_title_is_decided_by_the_wording(lastfm_slice):
    from catalog.stores import build_stores
    from loaders import load_dataset

    stores = build_stores(load_dataset(str(lastfm_slice)))
    linker = EntityLinker(stores)
    electronic = [i for i, t in enumerate(stores.titles) if t == "Electronic"]
    assert electronic and stores.has_tag("electronic").any(), "the slice must hold the ambiguous name"

    def read(message):
        return resolve(message, linker.link(message))

    attribute = read("something electronic")
    assert attribute.items == [] and "electronic" in attribute.constraints.tags + [attribute.constraints.category]
    reference = read("more like Electronic")
    assert reference.items == [str(stores.item_ids[electronic[0]])]
    assert any("item of that name" in n for n in reference.notes) and any("not the title" in n for n in attribute.notes)
    tagged = {t for t in stores.tag_vocab.tolist() if t in ("80s", "'80s")}
    if tagged:  # words with digits are tags like any other
        assert set(read("some 80s stuff").constraints.tags) & tagged
    assert "i love" not in read("i love death metal").constraints.tags


def test_one_tag_per_phrase_the_one_most_items_carry(tmp_path):
    """Spellings of one tag ("hip-hop", "hip hop") read as the most used; a tag that only adds a kind noun
    ("pop music", "french bands") yields to the tag it extends."""
    from catalog.stores import build_stores
    from loaders.generic import load_generic

    tags = ["pop"] * 6 + ["pop music"] + ["hip-hop"] * 4 + ["hip hop"] + ["french"] * 3 + ["french bands"]
    rows = [f"i{n},Artist {n},music,{t},,," for n, t in enumerate(tags)]
    (tmp_path / "catalog.csv").write_text("item_id,title,category,tags,description,price,brand\n" + "\n".join(rows) + "\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n" + "".join(f"u{n % 3},i{n}\n" for n in range(len(tags))))
    linker = EntityLinker(build_stores(load_generic(tmp_path)))

    def read(message):
        return resolve(message, linker.link(message)).constraints.tags

    assert read("new pop music for me") == ["pop"]
    assert read("some hip hop please") == ["hip-hop"]
    assert read("I want to discover a french band") == ["french"]


def test_relative_prices_are_the_category_thirds(demo_stores, parser, agent):
    audio = demo_stores.prices[demo_stores.has_tag("audio")]
    turn = agent.turn("u0001", "cheap audio gear")
    cap = float(np.percentile(audio, 33.3))
    assert turn.items and all("audio" in i.tags and i.price <= cap + 0.005 for i in turn.items)
    premium = agent.turn("u0002", "premium audio gear")
    assert premium.items and all(i.price >= float(np.percentile(audio, 66.7)) - 0.005 for i in premium.items)
    # "no premium stuff" excludes the tag of that name; it is not a price wish
    intent = parser.parse("running gear, no premium stuff")
    assert intent.constraints.exclude_tags == ["premium"] and intent.price_band is None
    # "not too pricey" is a wish for the cheaper third, and a price word is never reported as unknown
    intent = parser.parse("a wireless gadget, not too pricey")
    assert intent.price_band == "cheap" and "pricey" not in intent.unknown_terms


@pytest.mark.parametrize(("message", "sort", "mask"), [
    ("the cheapest electronics item you have", "asc", lambda s: s.categories == "electronics"),
    ("show me the most expensive toys", "desc", lambda s: s.categories == "toys"),
    ("what's your cheapest tent?", "asc", lambda s: s.items_titled("tent")),
])
def test_superlatives_sort_the_whole_filtered_set(demo_stores, agent, message, sort, mask):
    turn = agent.turn("u0003", message)
    prices = demo_stores.prices[mask(demo_stores)]
    extreme = float(prices.min() if sort == "asc" else prices.max())
    shown = [i.price for i in turn.items]
    assert shown and shown[0] == extreme and shown == sorted(shown, reverse=sort == "desc")


def test_catalog_questions_are_answered_from_the_stores(demo_stores, agent):
    counts = {c: int((demo_stores.categories == c).sum()) for c in set(demo_stores.categories.tolist())}
    kinds = agent.turn("u0001", "What kinds of products do you sell?")
    assert kinds.kind == "answer" and not kinds.items[5:] and "mentions" not in kinds.reply
    assert all(f"{c} ({n})" in kinds.reply for c, n in counts.items())
    books = agent.turn("u0001", "how many books are there?")
    assert f"{counts['books']} items" in books.reply and books.facts["count"] == counts["books"]
    brands = agent.turn("u0001", "which brands do you carry?")
    assert f"{len(set(demo_stores.brands))} brands" in brands.reply
    prices = demo_stores.prices[demo_stores.categories == "toys"]
    toys = agent.turn("u0001", "what's the price range of your toys?")
    assert f"${prices.min():.2f}" in toys.reply and f"${prices.max():.2f}" in toys.reply


def test_similar_to_a_named_item_respects_the_changed_attribute(demo_stores, agent):
    dac = demo_stores.titles.index("Lumen Trail DAC")
    turn = agent.turn("u0001", "Something like the Lumen Trail DAC but cheaper")
    assert turn.intent["act"] == "similar" and turn.items
    assert all(i.price < demo_stores.prices[dac] and i.item_id != demo_stores.item_ids[dac] for i in turn.items)
    assert sum(i.category == demo_stores.categories[dac] for i in turn.items) == len(turn.items)
    assert "items like Lumen Trail DAC" in turn.reply.replace("\\", "")
    other = agent.turn("u0002", "something like the Apex Compact DAC from another brand")
    assert other.items and all(demo_stores.brands[demo_stores.item_index[i.item_id]] != "Apex" for i in other.items)


def test_comparison_is_a_table_of_both_items(demo_stores, agent):
    turn = agent.turn("u0001", "Lumen Trail DAC vs Apex Compact DAC")
    a, b = demo_stores.titles.index("Lumen Trail DAC"), demo_stores.titles.index("Apex Compact DAC")
    assert turn.kind == "comparison" and [i.item_id for i in turn.items] == [demo_stores.item_ids[a], demo_stores.item_ids[b]]
    table = {row["attribute"]: row for row in turn.facts["table"]}
    assert table["price"]["Lumen Trail DAC"] == f"${demo_stores.prices[a]:.2f}"
    assert table["brand"]["Apex Compact DAC"] == "Apex"


def test_friends_picks_come_from_what_friends_bought(demo_stores, agent):
    user = demo_stores.user_index["u0005"]
    bought = {str(demo_stores.item_ids[i]) for i in demo_stores.positive[demo_stores.friends[user].indices].indices}
    turn = agent.turn("u0005", "what did my friends buy lately?")
    assert turn.intent["act"] == "friends" and turn.items and {i.item_id for i in turn.items} <= bought
    counts = [i.evidence.friends_count for i in turn.items]
    assert counts == sorted(counts, reverse=True) and "of your friends" in turn.reply


def test_words_accumulate_rejections_stick_and_the_subject_changes_when_said(demo_stores, agent):
    first = agent.turn("u0020", "something for camping")
    second = agent.turn("u0020", "not those, something lightweight", session_id=first.session_id)
    shown = {i.item_id for i in first.items}
    assert second.items and not shown & {i.item_id for i in second.items}
    assert all({"camping", "lightweight"} <= set(i.tags) for i in second.items)
    third = agent.turn("u0020", "cheaper", session_id=first.session_id)
    assert not shown & {i.item_id for i in third.items}
    assert all("camping" in i.tags for i in third.items)
    new = agent.turn("u0020", "forget that, something entirely different: toys for kids", session_id=first.session_id)
    assert "earlier filters were cleared" in new.reply and all(i.category == "toys" for i in new.items)


@pytest.mark.parametrize("message", [
    "I'd like a brand new gadget, something wireless, nope not too pricey", "what kinds of stuff do you have",
    "those aren't it, haven't you got something cozy?", "the cheapest thing in the sports section",
    "jewelry under 50", "a sofa for the living room"])
def test_replies_never_claim_the_catalog_lacks_what_it_has(demo_stores, agent, message):
    turn = agent.turn("u0011", message)
    text = turn.reply.replace("\\", "")
    vocabulary = {w for t in [*demo_stores.titles, *demo_stores.descriptions, *demo_stores.brands,
                              *demo_stores.categories.tolist(), *demo_stores.tag_vocab.tolist()]
                  for w in re.findall(r"[a-z]+", t.lower())}
    claimed = re.findall(r"no item in the catalog mentions '([^']+)'", text)
    assert [w for w in claimed if w in vocabulary or w.rstrip("s") in vocabulary] == []


def test_classifier_reads_paraphrases_with_catalog_names_masked(parser):
    assert parser.parse("Vireo Prime DAC or Tundra Trail DAC?").act == "compare"
    assert parser.parse("how big is your catalog?").act == "catalog_question"
    assert parser.parse("tell me a joke").act == "out_of_scope"
    assert parser.parse("a gift for my dad under $40").act == "recommend"
