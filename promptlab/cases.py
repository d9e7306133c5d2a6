"""Prompt-lab cases: YAML files in a folder, each holding one case (a mapping) or a list of cases.

The format is documented in evals/prompt_lab/README.md; every key is checked, and a bad file names
itself, the case and what to change.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

STARTER_CASES = Path(__file__).resolve().parent / "cases"  # shipped as package data
REPLY_KINDS = ("recommendations", "answer", "comparison", "refusal")
ACTS = ("recommend", "similar", "compare", "item_question", "catalog_question", "friends", "refine", "out_of_scope")
SORTS = ("price_asc", "price_desc", "popularity")
# Every expectation type a report counts; "grounded", "no_leak" and "excluded" are checked on every case.
EXPECTATION_TYPES = ("kind", "act", "constraints", "grounded", "no_leak", "honest", "excluded", "prompt", "min_picks",
                     "cheaper", "sorted", "relative_price", "related", "names", "friends", "not_promoted",
                     "must_include", "text", "latency")
DEFAULT_HARD = frozenset({"kind", "act", "constraints", "grounded", "no_leak", "honest", "excluded", "prompt",
                          "min_picks", "cheaper", "sorted", "relative_price", "related", "names", "friends"})
CASE_KEYS = {"id", "user", "message", "conversation", "expect", "hard", "soft", "k", "labels", "description",
             "holdout", "known_bug"}
EXPECT_KEYS = {"kind", "must_include", "must_exclude", "constraints", "min_picks", "text_contains",
               "text_excludes", "prompt_excludes", "latency_ms", "targets", "not_promoted", "exclude_previous",
               "cheaper_than_previous", "act", "sorted", "cheaper_than_item", "pricier_than_item", "related_to",
               "names_items", "friends_picks"}
CONSTRAINT_KEYS = {"category", "price_min", "price_max", "tags", "exclude_tags", "exclude_categories",
                   "any_categories", "any_tags", "brands", "exclude_brands", "title_words", "exclude_title_words"}
HOLDOUT_KEYS = {"data", "fraction", "seed", "demo_seed"}


class CaseFormatError(ValueError):
    """A case file that cannot be used as written."""

    def __init__(self, path: Path | str, reason: str, case_id: str | None = None):
        self.path, self.reason, self.case_id = Path(path), reason, case_id
        where = f"{path}" + (f" (case '{case_id}')" if case_id else "")
        super().__init__(f"{where}: {reason}")


@dataclass
class PickConstraints:
    """Conditions every pick must meet (checked against the catalog, not the answer's copy)."""

    category: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    any_categories: list[str] = field(default_factory=list)  # one of them
    any_tags: list[str] = field(default_factory=list)  # at least one of them
    brands: list[str] = field(default_factory=list)  # one of them
    exclude_brands: list[str] = field(default_factory=list)
    title_words: list[str] = field(default_factory=list)  # words of the title (singular or plural)
    exclude_title_words: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return self == PickConstraints()


@dataclass
class Expect:
    kind: str | None = None
    must_include: list[str] = field(default_factory=list)
    must_exclude: list[str] = field(default_factory=list)
    exclude_previous: list[str] = field(default_factory=list)  # positions ("1", "2", "last") or "all"
    constraints: PickConstraints = field(default_factory=PickConstraints)
    min_picks: int | None = None
    text_contains: list[str] = field(default_factory=list)
    text_excludes: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    targets: list[str] = field(default_factory=list)  # held-out items: reported as hit rate
    prompt_excludes: list[str] = field(default_factory=list)  # never in the context sent to the model
    not_promoted: list[str] = field(default_factory=list)  # should not rank higher than fusion put them
    cheaper_than_previous: bool = False  # every pick under the earlier list's dearest, mean price lower
    act: str | None = None  # the dialogue act the agent should read (recommend, similar, compare, ...)
    sorted: str | None = None  # price_asc | price_desc | popularity: picks in that order, the first the extreme
    cheaper_than_item: str | None = None  # every pick costs less than this item
    pricier_than_item: str | None = None
    related_to: str | None = None  # most picks share this item's category
    names_items: list[str] = field(default_factory=list)  # the reply names these items
    friends_picks: bool = False  # every pick was bought by a friend of the case's user


@dataclass
class Case:
    id: str
    user: str
    message: str
    conversation: list[str] = field(default_factory=list)  # earlier user messages, replayed first
    expect: Expect = field(default_factory=Expect)
    hard: frozenset[str] = DEFAULT_HARD  # expectation types that must hold; the others are soft
    k: int | None = None
    labels: list[str] = field(default_factory=list)
    description: str = ""
    holdout: dict[str, Any] | None = None  # set on generated cases: the split the index must be built on
    known_bug: str = ""  # the agent is known to fail this case (reported; the gate expects the failure)
    source: str = ""

    def is_hard(self, expectation: str) -> bool:
        return expectation in self.hard

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (defaults left out)."""
        expect = {k: v for k, v in asdict(self.expect).items() if v not in (None, [], {})}
        constraints = {k: v for k, v in expect.pop("constraints", {}).items() if v not in (None, [])}
        if constraints:
            expect["constraints"] = constraints
        out: dict[str, Any] = {"id": self.id, "user": self.user}
        if self.description:
            out["description"] = self.description
        if self.labels:
            out["labels"] = list(self.labels)
        if self.conversation:
            out["conversation"] = list(self.conversation)
        out["message"] = self.message
        if self.k is not None:
            out["k"] = self.k
        out["expect"] = expect
        if self.hard != DEFAULT_HARD:
            out["hard"] = sorted(self.hard - DEFAULT_HARD)
            out["soft"] = sorted(DEFAULT_HARD - self.hard)
        if self.holdout:
            out["holdout"] = dict(self.holdout)
        if self.known_bug:
            out["known_bug"] = self.known_bug
        return out


def _strings(value: Any, name: str, path: Path, case_id: str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise CaseFormatError(path, f"'{name}' must be a string or a list of strings", case_id)
    return [str(v) for v in value]


def _number(value: Any, name: str, path: Path, case_id: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CaseFormatError(path, f"'{name}' must be a number, not {value!r}", case_id)
    return float(value)


def _unknown(data: dict[str, Any], allowed: set[str], what: str, path: Path, case_id: str | None) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise CaseFormatError(path, f"unknown {what} key(s) {extra}; allowed: {sorted(allowed)}", case_id)


def parse_case(data: Any, path: Path | str = "<case>") -> Case:
    path = Path(path)
    if not isinstance(data, dict):
        raise CaseFormatError(path, f"a case must be a mapping, not {type(data).__name__}")
    case_id = str(data.get("id") or "").strip() or None
    if case_id is None:
        raise CaseFormatError(path, "every case needs an 'id'")
    _unknown(data, CASE_KEYS, "case", path, case_id)
    for key in ("user", "message"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise CaseFormatError(path, f"'{key}' is required and must be a non-empty string", case_id)
    raw_expect = data.get("expect") or {}
    if not isinstance(raw_expect, dict):
        raise CaseFormatError(path, "'expect' must be a mapping", case_id)
    _unknown(raw_expect, EXPECT_KEYS, "expect", path, case_id)
    raw_c = raw_expect.get("constraints") or {}
    if not isinstance(raw_c, dict):
        raise CaseFormatError(path, "'expect.constraints' must be a mapping", case_id)
    _unknown(raw_c, CONSTRAINT_KEYS, "constraints", path, case_id)
    constraints = PickConstraints(
        category=str(raw_c["category"]).lower() if raw_c.get("category") else None,
        price_min=_number(raw_c.get("price_min"), "price_min", path, case_id),
        price_max=_number(raw_c.get("price_max"), "price_max", path, case_id),
        tags=[t.lower() for t in _strings(raw_c.get("tags"), "tags", path, case_id)],
        exclude_tags=[t.lower() for t in _strings(raw_c.get("exclude_tags"), "exclude_tags", path, case_id)],
        exclude_categories=[c.lower() for c in _strings(raw_c.get("exclude_categories"), "exclude_categories",
                                                         path, case_id)],
        **{key: [v.lower() for v in _strings(raw_c.get(key), key, path, case_id)]
           for key in ("any_categories", "any_tags", "brands", "exclude_brands", "title_words", "exclude_title_words")})
    kind = raw_expect.get("kind")
    if kind is not None and kind not in REPLY_KINDS:
        raise CaseFormatError(path, f"'expect.kind' must be one of {list(REPLY_KINDS)}, not {kind!r}", case_id)
    min_picks = _number(raw_expect.get("min_picks"), "min_picks", path, case_id)
    expect = Expect(
        kind=kind, constraints=constraints, min_picks=None if min_picks is None else int(min_picks),
        must_include=_strings(raw_expect.get("must_include"), "must_include", path, case_id),
        must_exclude=_strings(raw_expect.get("must_exclude"), "must_exclude", path, case_id),
        text_contains=_strings(raw_expect.get("text_contains"), "text_contains", path, case_id),
        text_excludes=_strings(raw_expect.get("text_excludes"), "text_excludes", path, case_id),
        prompt_excludes=_strings(raw_expect.get("prompt_excludes"), "prompt_excludes", path, case_id),
        latency_ms=_number(raw_expect.get("latency_ms"), "latency_ms", path, case_id),
        targets=_strings(raw_expect.get("targets"), "targets", path, case_id),
        not_promoted=_strings(raw_expect.get("not_promoted"), "not_promoted", path, case_id))
    previous = [p.lower() for p in _strings(raw_expect.get("exclude_previous"), "exclude_previous", path, case_id)]
    if any(not (p.isdigit() and int(p) > 0) and p not in ("last", "all") for p in previous):
        raise CaseFormatError(path, f"'exclude_previous' takes positions (1, 2, ...), 'last' or 'all', not {previous}",
                              case_id)
    if previous and not data.get("conversation"):
        raise CaseFormatError(path, "'exclude_previous' needs a 'conversation' (an earlier list)", case_id)
    expect.exclude_previous = previous
    cheaper = raw_expect.get("cheaper_than_previous", False)
    if not isinstance(cheaper, bool):
        raise CaseFormatError(path, f"'cheaper_than_previous' must be true or false, not {cheaper!r}", case_id)
    if cheaper and not data.get("conversation"):
        raise CaseFormatError(path, "'cheaper_than_previous' needs a 'conversation' (an earlier list)", case_id)
    expect.cheaper_than_previous = cheaper
    act, sort = raw_expect.get("act"), raw_expect.get("sorted")
    if act is not None and act not in ACTS:
        raise CaseFormatError(path, f"'expect.act' must be one of {list(ACTS)}, not {act!r}", case_id)
    if sort is not None and sort not in SORTS:
        raise CaseFormatError(path, f"'expect.sorted' must be one of {list(SORTS)}, not {sort!r}", case_id)
    expect.act, expect.sorted = act, sort
    for key in ("cheaper_than_item", "pricier_than_item", "related_to"):
        value = raw_expect.get(key)
        if value is not None and not isinstance(value, str):
            raise CaseFormatError(path, f"'expect.{key}' must be an item id", case_id)
        setattr(expect, key, value)
    expect.names_items = _strings(raw_expect.get("names_items"), "names_items", path, case_id)
    friends = raw_expect.get("friends_picks", False)
    if not isinstance(friends, bool):
        raise CaseFormatError(path, f"'friends_picks' must be true or false, not {friends!r}", case_id)
    expect.friends_picks = friends
    hard_extra = set(_strings(data.get("hard"), "hard", path, case_id))
    soft_extra = set(_strings(data.get("soft"), "soft", path, case_id))
    bad = sorted((hard_extra | soft_extra) - set(EXPECTATION_TYPES))
    if bad:
        raise CaseFormatError(path, f"'hard'/'soft' name unknown expectation types {bad}; "
                                    f"known: {list(EXPECTATION_TYPES)}", case_id)
    if hard_extra & soft_extra:
        raise CaseFormatError(path, f"{sorted(hard_extra & soft_extra)} listed as both hard and soft", case_id)
    k = _number(data.get("k"), "k", path, case_id)
    holdout = data.get("holdout")
    if holdout is not None:
        if not isinstance(holdout, dict) or not {"data", "fraction", "seed"} <= set(holdout):
            raise CaseFormatError(path, "'holdout' must be a mapping with data, fraction and seed", case_id)
        _unknown(holdout, HOLDOUT_KEYS, "holdout", path, case_id)
    return Case(id=case_id, user=data["user"].strip(), message=data["message"],
                conversation=_strings(data.get("conversation"), "conversation", path, case_id),
                expect=expect, hard=frozenset((DEFAULT_HARD | hard_extra) - soft_extra),
                k=None if k is None else int(k), labels=_strings(data.get("labels"), "labels", path, case_id),
                description=str(data.get("description") or ""), holdout=holdout,
                known_bug=str(data.get("known_bug") or ""), source=str(path))


def load_case_file(path: Path) -> list[Case]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CaseFormatError(path, f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return []
    items = data if isinstance(data, list) else [data]
    return [parse_case(item, path) for item in items]


def load_cases(path: Path | str, only: list[str] | None = None) -> list[Case]:
    """Every case under a folder (``*.yaml``/``*.yml``, sorted by path) or in one file.

    ``only``: keep cases whose id or labels contain one of these strings.
    """
    path = Path(path)
    if not path.exists():
        raise CaseFormatError(path, "no such file or folder")
    files = [path] if path.is_file() else sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")])
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for file in files:
        for case in load_case_file(file):
            if case.id in seen:
                raise CaseFormatError(file, f"duplicate case id (also in {seen[case.id]})", case.id)
            seen[case.id] = str(file)
            cases.append(case)
    if only:
        cases = [c for c in cases if any(o in c.id or o in c.labels for o in only)]
    return cases


def suite_hash(cases: list[Case]) -> str:
    """A short hash of the cases as parsed (recorded in reports so a run names the suite it used)."""
    text = yaml.safe_dump([c.to_dict() for c in cases], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_cases(cases: list[Case], path: Path) -> Path:
    """Write cases as one YAML list (the format load_cases reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump([c.to_dict() for c in cases], sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path
