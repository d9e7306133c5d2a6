"""Simulated listeners who want one artist they have not heard and describe it only by its tags.

    python -m evals.conversation_sim --data ../shared/data/lastfm-hetrec2011 --users 300 --seed 7 \
        --json docs/benchmarks/conversation-lastfm.json --out docs/benchmarks/lastfm [--home DIR] [--systems api,references]

Protocol (seeded; the system only ever sees the train split, so the target is never in what it was built on):
1. ``holdout(dataset, 0.2, seed)``: ``split.train`` is what every system sees; targets come from ``split.held``.
2. ``--users`` held-out users are sampled; each gets one of their held-out artists whose tags in the *train*
   catalog give at least ``turns`` usable words (tags most frequent first; a tag equal to or containing the
   artist's name, with no letters, or the same word as an earlier tag once punctuation is ignored, is
   skipped). Users with no such artist are skipped; the report says how many were used.
3. Turn t says the t-th word (follow-ups mostly only the new word and a rejection, a minority restate all
   words), phrased with templates picked by a seeded RNG; the artist is never named. The listener reads
   the first ``per_turn`` items shown and stops as soon as the target is among them.
4. Systems are drivers ``(conversation_id, user_id, message) -> item ids (or a Reply)``: the running app
   over its OpenAI-compatible API (``HttpDriver``), the agent in process (``AgentDriver``), and two
   references that are handed the words (not the message): items carrying all words said so far, unseen by
   the user and not shown before, ranked by popularity or by the user's EASE score (lambda tuned on a
   validation holdout of the train split), filled from items carrying the most words; with the API run, a
   third reference ranks them by the app's own fused scores (``Recommender.fused_scores``: the served
   ranker with a perfect parse, so the gap to the app is the understanding's, the gap to EASE the ranker's).

Metrics: Hit@1 (target in turn 1's list), Hit@<=3 and Hit@<=5 (in any list up to that turn);
**mean turns** = the turn at which the target was first shown, or ``turns`` (5) when it never was — the
turns the listener actually spent, so a system that never finds it scores 5 (Hit@<=5 separates the two).
Diagnostics: re-shown = share of turns after the first whose list repeats an item shown earlier in the
conversation; all-words = share of shown items carrying every word said so far (train-catalog tags,
case-insensitive); "nothing matches" = replies saying the catalog lacks a word ("no item in the catalog mentions"); p50/p95 turn
latency (client wall clock; in-process time for the references).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from catalog.stores import Stores, build_stores
from evals.extra_sources import EASE
from evals.offline import relevant_sets, score_method
from indexing.training import Split, holdout
from loaders.schema import Dataset, split_tags

if TYPE_CHECKING:
    from agent.chat import ChatAgent

ROOT = Path(__file__).resolve().parent.parent
NOTHING_MATCHES = re.compile(r"nothing in the catalog matches|no item in the catalog mentions")  # old and new wording
CUTOFFS = (1, 3, 5)
EASE_LAMBDAS = (100.0, 300.0, 1000.0, 3000.0)

FIRST = (
    "I'd like an artist I haven't heard yet, something {w}",
    "recommend me some {w} music",
    "{w} please",
    "any {w} artists you'd suggest?",
    "I'm in the mood for {w}",
    "looking for new music: {w}",
    "what should I listen to? I like {w}",
    "find me a {w} artist I don't know yet",
    "something {w}, please",
    "got any {w} for me?",
    "I want to discover a {w} band",
    "new {w} music for me",
    "suggest an artist, {w}",
    "can you find me some {w}?",
)
FOLLOW = (
    "not those. it should also be {w}",
    "none of these, I want {w} too",
    "no, something more {w}",
    "those aren't it — add {w}",
    "not quite. also {w}",
    "nope. it's also {w}",
    "still not it; make it {w} as well",
    "close, but it should be {w} too",
    "none of those. {w} as well",
    "hmm, no. I'd also say {w}",
    "not what I'm after — think {w}",
    "no luck yet. it's {w} too",
    "try again, and {w}",
)
RESTATE = (
    "none of these. again: {all}",
    "not those. I want something {all}",
    "no. to sum up: {all}",
    "still no — {all}, all together",
    "those aren't it. it's {all}",
)
RESTATE_SHARE = 0.25


# --- the listeners -----------------------------------------------------------------------------------
def _norm(text: str) -> str:
    words = re.sub(r"[\W_]+", " ", text.lower()).split()
    return " ".join(words[1:] if len(words) > 1 and words[0] == "the" else words)


def usable_words(title: str, tags: Sequence[str]) -> list[str]:
    """The tags a listener may say, in order: not the artist's name, with letters, no repeats."""
    name = _norm(title)
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        form = _norm(tag)
        if not any(ch.isalpha() for ch in tag) or not form or form.replace(" ", "") in seen:
            continue
        if name and (f" {name} " in f" {form} " or form.replace(" ", "") == name.replace(" ", "")
                     or title.lower() in tag.lower()):
            continue
        seen.add(form.replace(" ", ""))
        out.append(tag)
    return out


def _all(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def messages_for(words: Sequence[str], rng: random.Random) -> list[str]:
    """One message per word: a request with the first, then rejections that add (or restate) words."""
    out = [rng.choice(FIRST).format(w=words[0])]
    for t in range(1, len(words)):
        if rng.random() < RESTATE_SHARE:
            out.append(rng.choice(RESTATE).format(all=_all(words[: t + 1])))
        else:
            out.append(rng.choice(FOLLOW).format(w=words[t]))
    return out


@dataclass
class Conversation:
    conversation_id: str
    user_id: str
    item_id: str  # the held-out target
    title: str
    words: list[str]  # words[t - 1] is said at turn t
    messages: list[str]


def build_conversations(split: Split, users: int, seed: int, turns: int = 5) -> tuple[list[Conversation], int]:
    """(conversations, users sampled): one target per sampled user who has an artist with ``turns`` words."""
    catalog = split.train.catalog
    tags = dict(zip(catalog["item_id"].astype(str), catalog["tags"].fillna("").astype(str), strict=True))
    titles = dict(zip(catalog["item_id"].astype(str), catalog["title"].astype(str), strict=True))
    held = split.held.groupby("user_id", observed=True)["item_id"].agg(lambda s: sorted(map(str, s)))
    rng = random.Random(seed)
    candidates = sorted(map(str, held.index))
    sampled = rng.sample(candidates, min(users, len(candidates)))
    out = []
    for n, user_id in enumerate(sampled):
        eligible = [(i, w) for i in held[user_id] if len(w := usable_words(titles[i], split_tags(tags[i]))) >= turns]
        if not eligible:
            continue
        item_id, words = rng.choice(eligible)
        words = words[:turns]
        out.append(Conversation(f"sim{seed}-{n:04d}-{user_id}"[:64], user_id, item_id, titles[item_id], words,
                                messages_for(words, random.Random(f"{seed}-{user_id}"))))
    return out, len(sampled)


# --- systems -----------------------------------------------------------------------------------------
@dataclass
class Reply:
    items: list[str]
    text: str = ""
    error: str | None = None


Driver = Callable[[str, str, str], "Sequence[str] | Reply"]


class HttpDriver:
    """The running app through POST /v1/chat/completions, one API key per user, ``user`` = the conversation."""

    def __init__(self, url: str, keys: dict[str, str], timeout_s: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        self.client = httpx.Client(base_url=url, timeout=timeout_s, transport=transport)
        self.keys = keys  # user id -> API key
        self.run = uuid.uuid4().hex[:8]  # a reused home keeps old sessions: never continue one
        self.history: dict[str, list[dict[str, str]]] = {}

    def __call__(self, conversation_id: str, user_id: str, message: str) -> Reply:
        messages = [*self.history.get(conversation_id, []), {"role": "user", "content": message}]
        body = {"model": "fusionrec", "user": f"{self.run}-{conversation_id}"[:64], "messages": messages}
        try:
            r = self.client.post("/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {self.keys[user_id]}"})
        except httpx.HTTPError as exc:
            return Reply([], error=exc.__class__.__name__)
        if r.status_code != 200:
            return Reply([], error=f"HTTP {r.status_code}: {r.text[:200]}")
        data = r.json()
        text = str(data["choices"][0]["message"]["content"] or "")
        self.history[conversation_id] = [*messages, {"role": "assistant", "content": text}]
        return Reply([str(i["item_id"]) for i in data["fusionrec"]["items"]], text)

    def close(self) -> None:
        self.client.close()


class AgentDriver:
    """The same conversation in process: ``ChatAgent.turn`` with the conversation as the session."""

    def __init__(self, agent: ChatAgent, use_llm: bool = False):
        self.agent, self.use_llm = agent, use_llm

    def __call__(self, conversation_id: str, user_id: str, message: str) -> Reply:
        turn = self.agent.turn(user_id, message, session_id=conversation_id, use_llm=self.use_llm)
        return Reply([i.item_id for i in turn.items], turn.reply)


class TagReference:
    """Handed the words said so far (from the script, not the message): items carrying all of them, not
    interacted with and not shown before in this conversation, ordered by ``scores(user)``, then by item
    index; filled from the items carrying the most words when fewer than ``k`` carry all."""

    def __init__(self, stores: Stores, scores: Callable[[int], np.ndarray], conversations: Sequence[Conversation],
                 k: int = 5):
        self.stores, self.scores, self.k = stores, scores, k
        self.script = {c.conversation_id: c for c in conversations}
        self.turns: dict[str, int] = {}
        self.shown: dict[str, set[int]] = {}

    def __call__(self, conversation_id: str, user_id: str, message: str) -> list[str]:
        turn = self.turns[conversation_id] = self.turns.get(conversation_id, 0) + 1
        shown = self.shown.setdefault(conversation_id, set())
        words = self.script[conversation_id].words[:turn]
        user = self.stores.user_idx(user_id)
        count = np.sum([self.stores.has_tag(w) for w in words], axis=0)
        allowed = np.ones(self.stores.n_items, bool)
        allowed[self.stores.feedback[user].indices] = False
        allowed[list(shown)] = False
        cand = np.flatnonzero(allowed)
        score = self.scores(user)[cand]
        order = cand[np.lexsort((cand, -score, -count[cand]))[: self.k]]
        shown.update(order.tolist())
        return [str(self.stores.item_ids[i]) for i in order]


def popularity_scores(stores: Stores) -> Callable[[int], np.ndarray]:
    pop = stores.popularity.astype(np.float64)
    return lambda user: pop


def ease_scores(model: EASE) -> Callable[[int], np.ndarray]:
    """The user's EASE score; items EASE leaves out (seen by fewer than two users) rank after all it scores."""
    outside = np.ones(model.n_items, bool)
    outside[model.keep] = False

    def score(user: int) -> np.ndarray:
        s = model.score(user)
        s[outside] = -np.inf
        return s

    return score


def tune_ease(train: Dataset, seed: int, lambdas: Sequence[float] = EASE_LAMBDAS) -> tuple[float, dict[str, float]]:
    """(best lambda, validation NDCG@10 per lambda) on ``holdout(train, 0.2, seed + 1)``; ties keep the smaller."""
    val = holdout(train, 0.2, seed + 1)
    stores = build_stores(val.train)
    relevant = relevant_sets(stores, val.held, None, seed)
    ndcg = {str(lam): score_method(EASE("ease", {"lambda": lam}).fit(stores), stores, relevant)["ndcg@10"]
            for lam in lambdas}
    best = max(lambdas, key=lambda lam: (ndcg[str(lam)], -lam))
    return best, {k: round(v, 4) for k, v in ndcg.items()}


# --- the simulation ----------------------------------------------------------------------------------
@dataclass
class TurnLog:
    message: str
    shown: list[str]
    ms: float
    text: str = ""
    error: str | None = None


@dataclass
class Run:
    conversation: Conversation
    turns: list[TurnLog] = field(default_factory=list)
    found_at: int | None = None


def simulate(conversations: Sequence[Conversation], driver: Driver, per_turn: int = 5,
             progress: Callable[[int], None] | None = None) -> list[Run]:
    """Play every conversation until the target is shown or the words run out."""
    runs = []
    for n, conv in enumerate(conversations):
        run = Run(conv)
        for t, message in enumerate(conv.messages, start=1):
            started = time.perf_counter()
            reply = driver(conv.conversation_id, conv.user_id, message)
            ms = (time.perf_counter() - started) * 1000
            if not isinstance(reply, Reply):
                reply = Reply([str(i) for i in reply])
            run.turns.append(TurnLog(message, list(reply.items[:per_turn]), ms, reply.text, reply.error))
            if conv.item_id in run.turns[-1].shown:
                run.found_at = t
                break
        runs.append(run)
        if progress is not None:
            progress(n + 1)
    return runs


def summarise(system: str, runs: Sequence[Run], stores: Stores, turns: int = 5) -> dict[str, Any]:
    """The table row of one system (see the module docstring for each metric)."""
    found = [r.found_at for r in runs]
    later = reshown = shown_items = all_words = nothing = errors = 0
    latencies = []
    for run in runs:
        before: set[str] = set()
        for t, log in enumerate(run.turns, start=1):
            words = set(run.conversation.words[:t])
            if t > 1:
                later += 1
                reshown += any(i in before for i in log.shown)
            before.update(log.shown)
            for item_id in log.shown:
                i = stores.item_index.get(item_id)
                shown_items += 1
                all_words += i is not None and words <= set(stores.tag_lists[i])
            nothing += bool(NOTHING_MATCHES.search(log.text.lower()))
            errors += log.error is not None
            latencies.append(log.ms)
    n = max(len(runs), 1)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)), 1) if latencies else None

    return {
        "system": system, "users": len(runs),
        **{f"hit@{c}": round(sum(f is not None and f <= c for f in found) / n, 4) for c in CUTOFFS},
        "mean_turns": round(sum(f if f is not None else turns for f in found) / n, 3),
        "hit_by_turn": [round(sum(f == t for f in found) / n, 4) for t in range(1, turns + 1)],
        "reshown_share": round(reshown / later, 4) if later else 0.0,
        "all_words_share": round(all_words / shown_items, 4) if shown_items else 0.0,
        "nothing_matches_replies": nothing, "errors": errors, "turns_played": len(latencies),
        "p50_ms": pct(50), "p95_ms": pct(95),
    }


def transcript(run: Run, stores: Stores) -> dict[str, Any]:
    def title(item_id: str) -> str:
        i = stores.item_index.get(item_id)
        return stores.titles[i] if i is not None else f"? {item_id}"

    c = run.conversation
    return {"user_id": c.user_id, "target": f"{c.item_id} {c.title}", "words": c.words, "found_at": run.found_at,
            "turns": [{"message": t.message, "shown": [title(i) for i in t.shown], "reply": t.text[:400],
                       "error": t.error} for t in run.turns]}


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| system | Hit@1 | Hit@≤3 | Hit@≤5 | mean turns | re-shown % | all-words % | \"nothing matches\" replies "
             "| p50 ms | p95 ms | users |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['system']} | {r['hit@1']:.3f} | {r['hit@3']:.3f} | {r['hit@5']:.3f} | {r['mean_turns']:.2f} | "
                     f"{100 * r['reshown_share']:.1f} | {100 * r['all_words_share']:.1f} | "
                     f"{r['nothing_matches_replies']} | {r['p50_ms']} | {r['p95_ms']} | {r['users']} |")
    return "\n".join(lines)


# --- the command line --------------------------------------------------------------------------------
def run_api(split: Split, conversations: Sequence[Conversation], home: Path, seed: int, timeout_s: float,
            log: Callable[[str], None]) -> tuple[list[Run], dict[str, Any]]:
    """Export the train split, start the app on it (LLM off, one key per user) and play every conversation."""
    from config.settings import Settings
    from evals.app_process import AppProcess
    from loaders.generic import write_generic

    data_dir = home / f"{split.train.name}-train-s{seed}"  # a stable name: a reused home keeps its index
    write_generic(split.train, data_dir)
    keys = {c.user_id: f"key-{c.user_id}" for c in conversations}
    keys_file = home / "conversation-sim-keys.json"
    keys_file.write_text(json.dumps({k: u for u, k in keys.items()}))
    manifest = Settings(home=home, data=str(data_dir)).index_dir / "manifest.json"
    reused = manifest.is_file()
    log(f"starting the app on {home} ({'reusing its index' if reused else 'building the index first'}) ...")
    started = time.monotonic()
    app = AppProcess(home, {"FUSIONREC_DATA": str(data_dir), "FUSIONREC_LLM__BACKEND": "off",
                            "FUSIONREC_API__KEYS_FILE": str(keys_file), "FUSIONREC_LOG_LEVEL": "WARNING",
                            "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "100000"}, ready_timeout_s=6 * 3600)
    startup_s = round(time.monotonic() - started, 1)
    log(f"app ready after {startup_s:.0f}s" + ("" if reused else " (index build included)"))
    driver = HttpDriver(app.url, keys, timeout_s)

    def progress(n: int) -> None:
        if n % 25 == 0 or n == len(conversations):
            log(f"  api: {n}/{len(conversations)} users done ({time.monotonic() - started - startup_s:.0f}s)")

    try:
        runs = simulate(conversations, driver, progress=progress)
    finally:
        driver.close()
        app.stop()
    return runs, {"startup_s": startup_s, "index_reused": reused, "home": str(home)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.conversation_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "lastfm-hetrec2011"))
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--systems", default="api,references", help="comma-separated: api, references")
    parser.add_argument("--home", help="state folder for the app; reuse one to skip the index build")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per API turn, seconds")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--out", help="write conversation.md to this folder")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - {"api", "references"}
    if unknown:
        print(f"error: unknown system(s) {', '.join(sorted(unknown))}; use api and/or references", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from loaders import load_dataset

    started = time.monotonic()
    dataset = load_dataset(args.data)
    split = holdout(dataset, fraction=0.2, seed=args.seed)
    conversations, sampled = build_conversations(split, args.users, args.seed)
    log(f"{len(conversations)} of {sampled} sampled users have a held-out artist with 5 usable words")
    stores = build_stores(split.train)
    runs_by: dict[str, list[Run]] = {}
    out: dict[str, Any] = {"data": args.data, "seed": args.seed, "users_sampled": sampled,
                           "users": len(conversations), "turns": 5, "per_turn": 5}
    if "api" in systems:
        home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="fusionrec-conversation-"))
        runs_by["api"], out["app"] = run_api(split, conversations, home, args.seed, args.timeout, log)
    if "references" in systems:
        runs_by["reference-popularity"] = simulate(
            conversations, TagReference(stores, popularity_scores(stores), conversations))
        log("tuning EASE on a validation holdout of the train split ...")
        lam, ndcg = tune_ease(split.train, args.seed)
        out["ease"] = {"lambda": lam, "validation_ndcg@10": ndcg}
        log(f"EASE lambda {lam:g} (validation NDCG@10 {ndcg})")
        ease = EASE("ease", {"lambda": lam}).fit(stores)
        runs_by["reference-ease"] = simulate(conversations, TagReference(stores, ease_scores(ease), conversations))
    if "api" in systems and "references" in systems:
        # The app's own ranker handed the words: what the served fusion gives with a perfect parse, so the
        # gap to the app is the understanding's and the gap to EASE the ranker's.
        from config.settings import Settings
        from indexing.build import load_recommender

        served = Settings(home=home, data=str(home / f"{split.train.name}-train-s{args.seed}"))
        recommender = load_recommender(served)
        log("reference: the app's fused scores handed the words ...")
        runs_by["reference-fusion"] = simulate(conversations, TagReference(
            recommender.stores, lambda user: recommender.fused_scores(str(recommender.stores.user_ids[user])),
            conversations))
    rows = [summarise(name, runs, stores) for name, runs in runs_by.items()]
    out["results"] = rows
    out["examples"] = {name: [transcript(r, stores) for r in runs[:5]] for name, runs in runs_by.items()}
    out["seconds"] = round(time.monotonic() - started, 1)
    md = table(rows)
    print(md)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        command = "python -m evals.conversation_sim " + " ".join(argv if argv is not None else sys.argv[1:])
        app = out.get("app")
        note = (f"\nApp startup {app['startup_s']:.0f}s ({'index reused' if app['index_reused'] else 'index built'}).\n"
                if app else "")
        (folder / "conversation.md").write_text(
            f"# Simulated listeners on {dataset.name}\n\n`{command}`\n\n{len(conversations)} of {sampled} sampled "
            f"users (seed {args.seed}); 5 turns, 5 items shown per turn. Mean turns counts 5 when the target was "
            f"never shown.\n{note}\n{md}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
