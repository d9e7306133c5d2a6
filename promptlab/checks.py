"""The expectation checker: one case + what the agent did on its last turn -> pass/fail per expectation.

Works on plain data (a TurnResult dict, the fused candidate ids, the session's rejected ids, catalog
facts), so it can be tested with hand-made turns and used on stored runs.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from catalog.text import stem, words
from promptlab.cases import Case, PickConstraints

_ESCAPED = re.compile(r"\\(.)")


@dataclass(frozen=True)
class ItemFacts:
    item_id: str
    title: str
    category: str
    price: float | None
    tags: tuple[str, ...]
    brand: str = ""
    popularity: int = 0
    words: frozenset[str] = frozenset()  # every word of its title, category, tags, brand and description


def catalog_facts(stores: Any) -> dict[str, ItemFacts]:
    """item id -> the facts the checker compares picks with (from a catalog.stores.Stores)."""
    out = {}
    for i in range(stores.n_items):
        rec = stores.item_record(i)
        price = rec.get("price")
        price = None if price is None or (isinstance(price, float) and math.isnan(price)) else float(price)
        text = " ".join([str(rec["title"]), str(rec["category"]), " ".join(rec["tags"]), str(rec.get("brand", "")),
                         str(rec.get("description", ""))])
        out[str(rec["item_id"])] = ItemFacts(str(rec["item_id"]), str(rec["title"]), str(rec["category"]).lower(),
                                             price, tuple(str(t).lower() for t in rec["tags"]),
                                             str(rec.get("brand", "")), int(rec.get("popularity", 0) or 0),
                                             frozenset(stem(w) for w in words(text)))
    return out


def leak_snippets(template_texts: list[str]) -> list[str]:
    """Distinctive instruction lines of the prompt templates (first 40 characters of long lines)."""
    snippets = []
    for text in template_texts:
        for line in text.splitlines():
            line = line.strip()
            if len(line) > 30 and "{" not in line and not line.startswith("<"):
                snippets.append(line[:40].lower())
    return list(dict.fromkeys(snippets))


@dataclass
class Observation:
    """What the checker looks at: the final turn of a case."""

    turn: dict[str, Any]  # TurnResult.to_dict()
    fused: list[str] | None = None  # candidate ids the fusion offered to the reranker, fusion order
    rejected: list[str] = field(default_factory=list)  # the session's rejected ids after the turn
    previous: list[str] = field(default_factory=list)  # the picks of the turn before, in order
    error: str | None = None  # the agent raised instead of answering
    friend_items: set[str] | None = None  # what the case's user's friends bought (for friends_picks)


@dataclass
class Check:
    name: str  # an expectation type (cases.EXPECTATION_TYPES) or "error"
    hard: bool
    passed: bool
    detail: str = ""


def visible_text(turn: dict[str, Any]) -> str:
    """Everything the user reads: the reply and the item explanations, markdown/HTML escaping undone."""
    parts = [str(turn.get("reply", ""))] + [str(i.get("explanation", "")) for i in turn.get("items", [])]
    return html.unescape(_ESCAPED.sub(r"\1", "\n".join(parts)))


def picks_of(turn: dict[str, Any]) -> list[str]:
    return [str(i.get("item_id")) for i in turn.get("items", [])]


def constraint_problems(facts: ItemFacts, c: PickConstraints) -> list[str]:
    out = []
    if c.category and facts.category != c.category:
        out.append(f"category {facts.category} != {c.category}")
    if c.any_categories and facts.category not in c.any_categories:
        out.append(f"category {facts.category} not one of {c.any_categories}")
    if c.price_min is not None and (facts.price is None or facts.price < c.price_min):
        out.append(f"price {facts.price} < {c.price_min:g}")
    if c.price_max is not None and (facts.price is None or facts.price > c.price_max):
        out.append(f"price {facts.price} > {c.price_max:g}")
    out += [f"lacks tag {t}" for t in c.tags if t not in facts.tags]
    if c.any_tags and not set(c.any_tags) & set(facts.tags):
        out.append(f"has none of the tags {c.any_tags}")
    out += [f"tagged {t}" for t in c.exclude_tags if t in facts.tags]
    out += [f"in {x}" for x in c.exclude_categories if facts.category == x]
    if c.brands and facts.brand.lower() not in c.brands:
        out.append(f"brand {facts.brand} not one of {c.brands}")
    if facts.brand.lower() in c.exclude_brands:
        out.append(f"brand {facts.brand} is excluded")
    title = {stem(w) for w in words(facts.title)}
    out += [f"title lacks '{w}'" for w in c.title_words if stem(w) not in title]
    out += [f"title has '{w}'" for w in c.exclude_title_words if stem(w) in title]
    return out


_CLAIM = re.compile(r"no item in the catalog mentions '([^']+)'|nothing in the catalog matches '([^']+)'")


def _honest(text: str, catalog: dict[str, ItemFacts]) -> tuple[bool, str]:
    """Every claim that the catalog lacks a word is true (no item's text has it)."""
    vocabulary = set().union(*(f.words for f in catalog.values())) if catalog else set()
    false = [w for m in _CLAIM.finditer(text) for w in m.groups() if w and all(stem(x) in vocabulary for x in words(w))]
    return not false, f"claims the catalog lacks {false}, but items mention them"


def _order_key(sort: str, f: ItemFacts) -> float:
    if sort == "price_asc":
        return f.price if f.price is not None else float("inf")
    if sort == "price_desc":
        return -(f.price if f.price is not None else float("-inf"))
    return -float(f.popularity)


def _sorted(case: Case, obs: Observation, picks: list[str], catalog: dict[str, ItemFacts]) -> tuple[bool, str]:
    """Picks in the asked order, and the first is the extreme of every catalog item meeting the constraints
    (the cheapest really is the minimum), leaving out only excluded and rejected items."""
    sort = case.expect.sorted
    assert sort is not None
    facts = [catalog[i] for i in picks if i in catalog]
    if not facts:
        return False, "no picks"
    keys = [_order_key(sort, f) for f in facts]
    if keys != sorted(keys):
        return False, f"picks not in {sort} order: {[f.price if sort != 'popularity' else f.popularity for f in facts]}"
    banned = set(case.expect.must_exclude) | set(obs.rejected)
    eligible = [f for f in catalog.values() if f.item_id not in banned and not constraint_problems(f, case.expect.constraints)
                and (f.price is not None or sort == "popularity")]
    best = min(_order_key(sort, f) for f in eligible) if eligible else None
    if best is not None and keys[0] > best:
        extreme = next(f for f in eligible if _order_key(sort, f) == best)
        return False, f"first pick {facts[0].item_id} is not the extreme: {extreme.item_id} ({extreme.price}) is"
    return True, ""


def _grounded(obs: Observation, catalog: dict[str, ItemFacts]) -> tuple[bool, str]:
    problems = []
    fused = set(obs.fused) if obs.fused is not None else None
    for item in obs.turn.get("items", []):
        item_id = str(item.get("item_id"))
        facts = catalog.get(item_id)
        if facts is None:
            problems.append(f"{item_id} is not in the catalog")
            continue
        if str(item.get("title")) != facts.title:
            problems.append(f"{item_id} shown as {item.get('title')!r}, catalog says {facts.title!r}")
        price = item.get("price")
        if price is not None and facts.price is not None and abs(float(price) - facts.price) > 0.005:
            problems.append(f"{item_id} shown at {price}, catalog says {facts.price}")
        if obs.turn.get("kind") == "recommendations" and fused is not None and item_id not in fused:
            problems.append(f"{item_id} was not among the fused candidates")
    if obs.turn.get("kind") == "recommendations" and fused is None and obs.turn.get("items"):
        return not problems, "; ".join(problems + ["fused list not recorded: checked the catalog only"])
    return not problems, "; ".join(problems)


def _not_promoted(case: Case, obs: Observation, picks: list[str]) -> tuple[bool, str]:
    problems = []
    for item_id in case.expect.not_promoted:
        if item_id not in picks:
            continue
        if obs.fused is None:
            problems.append(f"{item_id} picked but the fused order was not recorded")
        elif item_id not in obs.fused or picks.index(item_id) < obs.fused.index(item_id):
            fused_pos = obs.fused.index(item_id) + 1 if item_id in obs.fused else "-"
            problems.append(f"{item_id} moved up: fusion #{fused_pos} -> final #{picks.index(item_id) + 1}")
    return not problems, "; ".join(problems)


def _cheaper(picks: list[str], previous: list[str], catalog: dict[str, ItemFacts]) -> tuple[bool, str]:
    """"Cheaper" after a list: every pick costs less than the dearest earlier pick, and the mean is lower."""
    def prices(ids: list[str]) -> list[float]:
        return sorted(p for p in (catalog[i].price if i in catalog else None for i in ids) if p is not None)

    now, before = prices(picks), prices(previous)
    if not now or not before:
        return False, f"no prices to compare ({len(now)} picks, {len(before)} earlier picks with a price)"
    dearer = [p for p in now if p >= before[-1]]
    if dearer:
        return False, f"picks at {dearer} are not below the earlier list's dearest ({before[-1]:g})"
    if statistics.fmean(now) >= statistics.fmean(before):
        return False, (f"mean price {statistics.fmean(now):.2f} is not below the earlier "
                       f"{statistics.fmean(before):.2f}")
    return True, ""


def referenced(positions: list[str], previous: list[str]) -> list[str]:
    """Items of the earlier list named by position ("1", "last", "all")."""
    if "all" in positions:
        return list(previous)
    out = []
    for p in positions:
        index = len(previous) - 1 if p == "last" else int(p) - 1
        if 0 <= index < len(previous):
            out.append(previous[index])
    return out


def check_case(case: Case, obs: Observation, catalog: dict[str, ItemFacts],
               snippets: list[str] | None = None) -> list[Check]:
    """All checks that apply to this case, in a fixed order."""
    if obs.error:
        return [Check("error", True, False, obs.error)]
    exp, turn = case.expect, obs.turn
    kind = str(turn.get("kind"))
    picks = picks_of(turn)
    text = visible_text(turn)
    lowered = text.lower()
    checks: list[Check] = []

    def add(name: str, passed: bool, detail: str = "") -> None:
        checks.append(Check(name, case.is_hard(name), passed, "" if passed else detail))

    if exp.kind is not None:
        detail = f"got {kind}, expected {exp.kind}"
        passed = kind == exp.kind
        if passed and exp.kind == "refusal" and (picks or turn.get("steps")):
            passed, detail = False, f"refused but still ran {len(turn.get('steps', []))} tool(s) / showed items"
        add("kind", passed, detail)
    ok, detail = _grounded(obs, catalog)
    add("grounded", ok, detail)
    leaked = [s for s in snippets or [] if s in lowered]
    add("no_leak", not leaked, f"prompt text in the answer: {leaked[:2]}")
    if kind == "recommendations":
        banned = dict.fromkeys([*exp.must_exclude, *obs.rejected, *referenced(exp.exclude_previous, obs.previous)])
        shown = [i for i in picks if i in banned]
        add("excluded", not shown, f"excluded/rejected items shown: {shown}")
    elif exp.must_exclude:
        shown = [i for i in picks if i in exp.must_exclude]
        add("excluded", not shown, f"excluded items shown: {shown}")
    if not exp.constraints.is_empty():
        bad = []
        for item_id in picks:
            facts = catalog.get(item_id)
            problems = constraint_problems(facts, exp.constraints) if facts else ["not in the catalog"]
            if problems:
                bad.append(f"{item_id}: {', '.join(problems)}")
        add("constraints", not bad, "; ".join(bad))
    if exp.prompt_excludes:
        context = str(turn.get("context", "")).lower()
        present = [p for p in exp.prompt_excludes if p.lower() in context]
        add("prompt", not present, f"the model was shown {present}")
    if exp.not_promoted:
        ok, detail = _not_promoted(case, obs, picks)
        add("not_promoted", ok, detail)
    if exp.act is not None:
        act = str(turn.get("intent", {}).get("act"))
        add("act", act == exp.act, f"read as {act}, expected {exp.act}")
    ok, detail = _honest(text, catalog)
    add("honest", ok, detail)
    if exp.sorted:
        ok, detail = _sorted(case, obs, picks, catalog)
        add("sorted", ok, detail)
    for ref, cheaper in ((exp.cheaper_than_item, True), (exp.pricier_than_item, False)):
        if ref is None:
            continue
        anchor = catalog.get(ref)
        if anchor is None or anchor.price is None:
            add("relative_price", False, f"{ref} has no price in the catalog")
            continue
        prices = {i: catalog[i].price for i in picks if i in catalog}
        wrong = [i for i, p in prices.items() if p is None or (p >= anchor.price if cheaper else p <= anchor.price)]
        add("relative_price", bool(prices) and not wrong and ref not in picks,
            f"not {'cheaper' if cheaper else 'dearer'} than {ref} ({anchor.price}): {wrong or 'no picks'}")
    if exp.related_to is not None:
        anchor = catalog.get(exp.related_to)
        same = [i for i in picks if anchor is not None and i in catalog and catalog[i].category == anchor.category]
        add("related", bool(picks) and 2 * len(same) >= len(picks) and exp.related_to not in picks,
            f"{len(same)} of {len(picks)} picks share the category of {exp.related_to}")
    if exp.names_items:
        missing = [i for i in exp.names_items if i not in catalog or catalog[i].title.lower() not in lowered]
        add("names", not missing, f"the answer does not name {missing}")
    if exp.friends_picks:
        friends = obs.friend_items or set()
        strangers = [i for i in picks if i not in friends]
        add("friends", bool(picks) and not strangers, f"no friend bought {strangers or 'anything (no picks)'}")
    if exp.cheaper_than_previous:
        ok, detail = _cheaper(picks, obs.previous, catalog)
        add("cheaper", ok, detail)
    if exp.min_picks is not None:
        add("min_picks", len(picks) >= exp.min_picks, f"{len(picks)} picks, expected at least {exp.min_picks}")
    if exp.must_include:
        missing = [i for i in exp.must_include if i not in picks]
        add("must_include", not missing, f"missing {missing}")
    if exp.text_contains or exp.text_excludes:
        missing = [p for p in exp.text_contains if p.lower() not in lowered]
        present = [p for p in exp.text_excludes if p.lower() in lowered]
        detail = "; ".join(([f"does not say {missing}"] if missing else []) + ([f"says {present}"] if present else []))
        add("text", not missing and not present, detail)
    if exp.latency_ms is not None:
        total = float(turn.get("timings_ms", {}).get("total_ms", 0.0))
        add("latency", total <= exp.latency_ms, f"{total:.0f} ms > budget {exp.latency_ms:.0f} ms")
    return checks


def target_hit(case: Case, turn: dict[str, Any] | None) -> bool | None:
    """Held-out targets: True when any is among the picks; None when the case has no targets."""
    if not case.expect.targets:
        return None
    return bool(turn) and bool(set(case.expect.targets) & set(picks_of(turn or {})))


def hard_ok(checks: list[Check]) -> bool:
    return all(c.passed for c in checks if c.hard)
