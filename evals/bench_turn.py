"""In-process cost of one chat turn (LLM off) against `recommend` alone, measured in the same run.

    python -m evals.bench_turn                                   # the demo shop
    python -m evals.bench_turn --data ../shared/data/lastfm-hetrec2011 --home DIR   # reuse DIR's index
    python -m evals.bench_turn --profile 20                      # cProfile of the turns, top 20 functions

Builds (or reuses) the index in ``--home``, then runs ``ChatAgent.turn`` on a fixed list of messages for
seeded users, and ``Recommender.recommend`` for the same users; prints p50/p95 of both and their ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO_MESSAGES = ("camping gear under $100", "sci-fi books under $20", "board games for a party", "a yoga mat",
                 "wireless headphones under $150", "something cozy for a small flat", "cheaper",
                 "more like the second one", "what did my friends buy", "anything under $30")
LASTFM_MESSAGES = ("some rock music", "female vocalists", "something electronic", "artists like Radiohead",
                   "jazz but not smooth jazz", "more like the second one", "what are my friends listening to",
                   "indie pop", "something like Coldplay", "80s new wave")


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2),
            "n": len(values)}


def build_agent(data: str, home: Path) -> Any:
    from agent.chat import ChatAgent
    from agent.prompts import load_prompt_set
    from config.settings import Settings
    from indexing.build import load_recommender
    from storage.sessions import SessionStore

    settings = Settings(home=home, data=data)
    settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": "off"})})
    started = time.perf_counter()
    recommender = load_recommender(settings, build_if_missing=True)
    load_s = time.perf_counter() - started
    sessions = SessionStore(home / "sessions" / f"bench-turn-{settings.dataset_key}.sqlite")
    agent = ChatAgent(recommender, None, load_prompt_set(settings.prompts_dir, settings.prompt_set), settings, sessions)
    return agent, load_s


def bench(data: str, home: Path, turns: int, seed: int, profile: int = 0, sort: str = "cumulative") -> dict[str, Any]:
    from fusion.request import RecommendRequest

    agent, load_s = build_agent(data, home)
    stores = agent.recommender.stores
    messages = DEMO_MESSAGES if data == "demo" else LASTFM_MESSAGES
    rng = random.Random(seed)
    users = [str(stores.user_ids[rng.randrange(stores.n_users)]) for _ in range(turns)]
    # Warm-up: every message once, so the timed turns read their MiniLM embeddings from the cache (a message
    # never seen before pays one encode; measured separately below).
    for n, message in enumerate(messages):
        agent.turn(users[0], message, use_llm=False)
        agent.recommender.recommend(RecommendRequest(user_id=users[n % len(users)], k=5))
    embed_ms = []
    embedder = agent.recommender.vector_store.embedder if agent.recommender.vector_store is not None else None
    if embedder is not None:
        for n in range(5):
            t = time.perf_counter()
            embedder.embed([f"an uncached message number {seed}-{n}-{time.time_ns()}"])
            embed_ms.append((time.perf_counter() - t) * 1000)
    turn_ms, rec_ms = [], []
    profiler = cProfile.Profile() if profile else None
    session: str | None = None
    for n, user in enumerate(users):
        message = messages[n % len(messages)]
        if n % 3 == 0:
            session = None  # a new conversation every three turns, so refinements have a list to refine
        t = time.perf_counter()
        if profiler:
            profiler.enable()
        result = agent.turn(users[n - n % 3], message, session_id=session, use_llm=False)
        if profiler:
            profiler.disable()
        turn_ms.append((time.perf_counter() - t) * 1000)
        session = result.session_id
        t = time.perf_counter()
        agent.recommender.recommend(RecommendRequest(user_id=user, k=5))
        rec_ms.append((time.perf_counter() - t) * 1000)
    out = {"data": data, "users": stores.n_users, "items": stores.n_items, "load_s": round(load_s, 1),
           "turn": percentiles(turn_ms), "recommend": percentiles(rec_ms),
           "new_message_embedding": percentiles(embed_ms) if embed_ms else None}
    out["ratio_p50"] = round(out["turn"]["p50_ms"] / max(out["recommend"]["p50_ms"], 1e-9), 2)
    if profiler:
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats(sort).print_stats(profile)
        out["profile"] = buffer.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="demo", help="demo, or a data folder (e.g. a Last.fm HetRec folder)")
    parser.add_argument("--home", help="state folder holding the index (built there when missing)")
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of the turns")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key (cumulative, tottime)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="fusionrec-bench-turn-"))
    out = bench(args.data, home, args.turns, args.seed, args.profile, args.sort)
    print(f"{out['data']}: {out['items']} items, {out['users']} users (index loaded in {out['load_s']} s)")
    print(f"  turn (LLM off)   p50 {out['turn']['p50_ms']:.1f} ms  p95 {out['turn']['p95_ms']:.1f} ms  "
          f"({out['turn']['n']} turns)")
    print(f"  recommend alone  p50 {out['recommend']['p50_ms']:.1f} ms  p95 {out['recommend']['p95_ms']:.1f} ms")
    print(f"  turn / recommend p50: {out['ratio_p50']}x")
    if out["new_message_embedding"]:
        print(f"  (a message never seen before adds one MiniLM encode: p50 "
              f"{out['new_message_embedding']['p50_ms']:.1f} ms)")
    if "profile" in out:
        print(out.pop("profile"))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
