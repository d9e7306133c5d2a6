"""Does entity linking scale with the catalog? Builds the linker (agent/linker.py) over seeded synthetic
catalogs and times its build, one message's linking and the whole deterministic parse of the message
(`IntentParser.parse` without the MiniLM act classifier, whose cost does not depend on the catalog).

    python -m evals.bench_linker                      # 2k, 20k and 100k items
    python -m evals.bench_linker --sizes 2000 20000 --json out.json

Titles, brands, tags and descriptions are made of pronounceable made-up words, so the vocabulary grows with
the catalog as a real one does. The messages mix exact names, typos, partial titles and plain words.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["tra", "sto", "ven", "lor", "qui"]
CATEGORIES = ("electronics", "books", "home", "sports", "toys", "garden", "music", "kitchen")
KIND_WORDS = ("tent", "lamp", "speaker", "novel", "kettle", "jacket", "board game", "headphones")


def made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic_stores(n_items: int, seed: int = 7) -> Any:
    from catalog.stores import build_stores
    from loaders.schema import Dataset

    rng = random.Random(seed)
    words = [made_up_word(rng) for _ in range(max(500, n_items // 2))]
    brands = [made_up_word(rng).title() for _ in range(max(20, n_items // 50))]
    tags = [made_up_word(rng) for _ in range(max(50, n_items // 20))] + ["sci-fi", "outdoor", "cozy", "retro"]
    rows = []
    for i in range(n_items):
        title = " ".join(rng.choice(words).title() for _ in range(rng.randint(1, 3))) + " " + rng.choice(KIND_WORDS)
        rows.append({"item_id": f"s{i:06d}", "title": title, "category": rng.choice(CATEGORIES),
                     "tags": "|".join(rng.sample(tags, 3)), "price": round(rng.uniform(3, 300), 2),
                     "description": " ".join(rng.choice(words) for _ in range(8)), "brand": rng.choice(brands)})
    catalog = pd.DataFrame(rows)
    users = pd.DataFrame({"user_id": [f"x{u}" for u in range(50)], "name": [f"User {u}" for u in range(50)]})
    interactions = pd.DataFrame({"user_id": [f"x{u % 50}" for u in range(200)],
                                 "item_id": [f"s{rng.randrange(n_items):06d}" for _ in range(200)],
                                 "kind": "purchase", "weight": 1.0, "timestamp": pd.Timestamp("2026-01-01")})
    social = pd.DataFrame({"user_id": ["x0"], "friend_id": ["x1"]})
    return build_stores(Dataset(name=f"synthetic-{n_items}", catalog=catalog, interactions=interactions,
                                social=social, users=users, currency="$")), rows


def messages_for(rows: list[dict[str, Any]], rng: random.Random) -> list[str]:
    """Exact titles, a typo in a title word, a partial title, tags, brands, and words no catalog has."""
    out = []
    for _ in range(6):
        a, b = rng.choice(rows), rng.choice(rows)
        word = a["title"].split()[0].lower()
        typo = word[:2] + word[3] + word[2] + word[4:] if len(word) > 5 else word + "x"
        out += [f"something like {a['title']} under $50", f"more like {typo} but cheaper",
                f"not from {b['brand']}, maybe {a['tags'].split('|')[0]}",
                f"the {' '.join(b['title'].split()[-2:])} please", "anything cozy and retro for a rainy weekend",
                "compare the first and the second one", f"i loved {a['title'].split()[0]} and {typo}, any ideas?"]
    return out


def bench(sizes: list[int], seed: int, repeat: int) -> list[dict[str, Any]]:
    from agent.intent import IntentParser
    from agent.linker import EntityLinker

    results = []
    for n in sizes:
        started = time.perf_counter()
        stores, rows = synthetic_stores(n, seed)
        stores_s = time.perf_counter() - started
        started = time.perf_counter()
        linker = EntityLinker(stores)
        build_s = time.perf_counter() - started
        messages = messages_for(rows, random.Random(seed))
        for message in messages:  # warm up (first rapidfuzz calls)
            linker.link(message)
        parser = IntentParser(stores, linker=linker)  # no act classifier: MiniLM's cost is not the catalog's
        for message in messages:  # warm up (first rapidfuzz calls, lazily built title-word index)
            parser.parse(message)
        times, parse_times = [], []
        for _ in range(repeat):
            for message in messages:
                t = time.perf_counter()
                linker.link(message)
                times.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                parser.parse(message)
                parse_times.append((time.perf_counter() - t) * 1000)
        results.append({"items": n, "vocabulary": len(linker.vocabulary), "stores_s": round(stores_s, 2),
                        "build_s": round(build_s, 2), "messages": len(messages),
                        "parse_p50_ms": round(float(np.percentile(times, 50)), 3),
                        "parse_p95_ms": round(float(np.percentile(times, 95)), 3),
                        "parse_max_ms": round(float(np.max(times)), 3),
                        "intent_p50_ms": round(float(np.percentile(parse_times, 50)), 3),
                        "intent_p95_ms": round(float(np.percentile(parse_times, 95)), 3)})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    results = bench(args.sizes, args.seed, args.repeat)
    print("| items | vocabulary | linker build s | link p50 ms | link p95 ms | link max ms | parse p50 ms | parse p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['items']:,} | {r['vocabulary']:,} | {r['build_s']} | {r['parse_p50_ms']} | {r['parse_p95_ms']} "
              f"| {r['parse_max_ms']} | {r['intent_p50_ms']} | {r['intent_p95_ms']} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
