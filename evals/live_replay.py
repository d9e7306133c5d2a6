"""Live replay: do live events (``stores.live``, the path ``POST /v1/events`` takes) keep the quality of a
full rebuild? The proof of issue 17.

    python -m evals.live_replay --data demo
    python -m evals.live_replay --data /work/shared/data/lastfm-hetrec2011 --users 500

Protocol (seeded):
1. Split per user, by time. Each (user, item) positive pair is dated by its first positive event. For a
   seeded sample of users with at least 5 positive pairs (``--users``, default all), the latest 20 % of their
   pairs (at least one) are the TEST targets T2 and the 20 % before them (at least one) the LIVE chunk T1;
   everything else is T0. T1 holds every event of the T1 pairs, plus every other event of the user from the
   first T1 pair's time on (views and clicks of that period), except T2's. As in evals/offline.py, *all*
   events of a T2 pair are removed (and item tags derived from tag events are recomputed without them).
   Per user rather than one global cut: every scored user then has both a live chunk and later targets,
   so the figure measures what the live path does for users whose behaviour changed, and the users not
   sampled keep all their data in T0 (a global cut would leave most of the demo's users with no T1 or no
   T2). Data whose positives carry no dates (Last.fm's listens: only tag events are dated) get a seeded
   random order of each user's pairs instead; the split is then a random holdout in two steps.
2. (a) rebuild: the stores, the sources (``SourceModels.fit``) and the fusion (``train_fusion``, as
   ``fusionrec index``) fit on T0+T1.
   (b) live: the same fit on T0 only, then T1 applied through ``stores.live.apply_stored``.
   (c) stale: fit on T0, T1 ignored (what a process that neither rebuilds nor applies events would serve).
3. Each is scored on T2 with ``Recommender.recommend`` (``exclude_seen="all"``: every item the user has
   interacted with, live events included, is excluded; ties by item index) with evals/metrics.py.
Target: NDCG@10 of live / rebuild >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catalog.stores import Stores, build_stores
from config.settings import Settings
from evals.offline import evaluate_recommender, relevant_sets
from fusion.recommender import Recommender
from indexing.training import train_fusion
from loaders import load_dataset
from loaders.schema import Dataset
from retrieval.bundle import SourceModels
from vectorstore.embeddings import MiniLMEmbeddingFunction

ROOT = Path(__file__).resolve().parent.parent
MIN_PAIRS = 5


@dataclass
class ReplaySplit:
    t0: Dataset  # the data the live and stale arms are fit on
    rebuild: Dataset  # T0 + T1
    live: pd.DataFrame  # T1 as stored events (user_id, item_id, kind, weight, timestamp, seq)
    test: pd.DataFrame  # T2 pairs (user_id, item_id)
    users: int  # sampled users
    dated: bool  # False: the positives had no dates, pairs were ordered at random


def replay_split(dataset: Dataset, users: int | None, seed: int, live_fraction: float = 0.2,
                 test_fraction: float = 0.2) -> ReplaySplit:
    ev = dataset.interactions.reset_index(drop=True)
    pos = ev[dataset.positive_mask(ev)]
    pairs = pos.groupby(["user_id", "item_id"], observed=True)["timestamp"].min().reset_index()
    pairs = pairs.sort_values(["user_id", "item_id"]).reset_index(drop=True)
    dated = bool(pairs["timestamp"].notna().all())
    rng = np.random.default_rng(seed)
    pairs["r"] = rng.random(len(pairs))  # ties in time (and undated data) in a seeded order
    pairs = pairs.sort_values(["user_id", "timestamp", "r"] if dated else ["user_id", "r"], kind="stable")
    n = pairs.groupby("user_id", observed=True)["user_id"].transform("size")
    from_end = pairs.groupby("user_id", observed=True).cumcount(ascending=False)
    eligible = sorted(pairs.loc[n >= MIN_PAIRS, "user_id"].astype(str).unique())
    if users and len(eligible) > users:
        eligible = sorted(rng.choice(eligible, users, replace=False).tolist())
    sampled = pairs["user_id"].astype(str).isin(eligible)
    n2 = np.maximum(1, np.floor(n * test_fraction)).astype(int)
    n1 = np.maximum(1, np.floor(n * live_fraction)).astype(int)
    test = pairs[sampled & (from_end < n2)][["user_id", "item_id"]].reset_index(drop=True)
    live_pairs = pairs[sampled & (from_end >= n2) & (from_end < n2 + n1)]

    key = pd.MultiIndex.from_frame(ev[["user_id", "item_id"]])
    in_test = key.isin(pd.MultiIndex.from_frame(test))
    in_live = key.isin(pd.MultiIndex.from_frame(live_pairs[["user_id", "item_id"]]))
    if dated:  # the user's other events from the live chunk's start on belong to it too
        starts = live_pairs.groupby("user_id", observed=True)["timestamp"].min()
        start = ev["user_id"].map(starts)
        in_live |= (ev["timestamp"] >= start).fillna(False).to_numpy(bool)
    in_live &= ~in_test
    rebuild = dataset.without_pairs(test)
    t0 = dataset.without_pairs(pd.concat([test, live_pairs[["user_id", "item_id"]]], ignore_index=True))
    t0 = replace(t0, interactions=ev[~in_test & ~in_live].reset_index(drop=True))
    live = ev[in_live][["user_id", "item_id", "kind", "weight", "timestamp"]].sort_values("timestamp", kind="stable")
    return ReplaySplit(t0, rebuild, live.assign(seq=1).reset_index(drop=True), test, len(eligible), dated)


def fit(dataset: Dataset, settings: Settings, embedder: MiniLMEmbeddingFunction) -> Recommender:
    """What ``fusionrec index`` fits (indexing/build.py), without the Chroma store."""
    def embed(stores: Stores) -> np.ndarray:
        return embedder.embed([stores.item_text(i) for i in range(stores.n_items)], progress=False)

    stores = build_stores(dataset)
    fusion = train_fusion(dataset, settings, embed)
    return Recommender(stores, SourceModels.fit(stores, settings.sources, embed(stores)), fusion, settings)


def run(data: str, users: int | None, seed: int, settings: Settings | None = None,
        embedder: MiniLMEmbeddingFunction | None = None, log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    settings = settings or Settings(data=data)
    embedder = embedder or MiniLMEmbeddingFunction(cache_path=str(settings.home / "embeddings.sqlite"))
    dataset = load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    split = replay_split(dataset, users, seed)
    log(f"split: {split.users} users, T1 {len(split.live)} live events, T2 {len(split.test)} test pairs "
        f"({'by time' if split.dated else 'random order: positives undated'})")
    arms: dict[str, dict[str, Any]] = {}

    t = time.perf_counter()
    rebuilt = fit(split.rebuild, settings, embedder)
    relevant = relevant_sets(rebuilt.stores, split.test, None, seed)
    arms["rebuild"] = {"fit_s": round(time.perf_counter() - t, 1)}
    arms["rebuild"].update(evaluate_recommender(rebuilt, relevant).metrics)
    log(f"rebuild (fit on T0+T1 in {arms['rebuild']['fit_s']} s): NDCG@10 {arms['rebuild']['ndcg@10']:.4f}")

    t = time.perf_counter()
    snapshot = fit(split.t0, settings, embedder)
    arms["stale"] = {"fit_s": round(time.perf_counter() - t, 1)}
    arms["stale"].update(evaluate_recommender(snapshot, relevant).metrics)
    log(f"stale (fit on T0 in {arms['stale']['fit_s']} s): NDCG@10 {arms['stale']['ndcg@10']:.4f}")

    t = time.perf_counter()
    changed = snapshot.stores.live.apply_stored(split.live)
    arms["live"] = {"apply_s": round(time.perf_counter() - t, 2), "users_changed": len(changed)}
    arms["live"].update(evaluate_recommender(snapshot, relevant).metrics)
    log(f"live (T0 + T1 applied in {arms['live']['apply_s']} s): NDCG@10 {arms['live']['ndcg@10']:.4f}")

    def ratio(arm: str, metric: str) -> float | None:
        base = arms["rebuild"][metric]
        return round(arms[arm][metric] / base, 4) if base > 0 else None

    return {
        "data": data, "seed": seed, "users_sampled": split.users, "users_scored": len(relevant),
        "live_events": len(split.live), "test_pairs": len(split.test), "order": "time" if split.dated else "random",
        "arms": {name: {k: round(v, 4) if isinstance(v, float) else v for k, v in arm.items()}
                 for name, arm in arms.items()},
        "live_over_rebuild": {m: ratio("live", m) for m in ("ndcg@10", "recall@10")},
        "stale_over_rebuild": {m: ratio("stale", m) for m in ("ndcg@10", "recall@10")},
        "fusion_folds": settings.fusion.folds, "target": "live / rebuild NDCG@10 >= 0.95", "seconds": round(time.perf_counter() - started, 1),
    }


def table(out: dict[str, Any]) -> str:
    lines = [f"{out['data']}: {out['users_scored']} users scored, {out['live_events']} live events (T1), "
             f"{out['test_pairs']} test pairs (T2), order by {out['order']}",
             "| arm | NDCG@10 | Recall@10 | HR@10 | Recall@20 |", "|---|---|---|---|---|"]
    for name in ("rebuild", "live", "stale"):
        a = out["arms"][name]
        lines.append(f"| {name} | {a['ndcg@10']:.4f} | {a['recall@10']:.4f} | {a['hr@10']:.4f} | {a['recall@20']:.4f} |")
    lv, st = out["live_over_rebuild"], out["stale_over_rebuild"]
    lines += [f"live / rebuild:  NDCG@10 {lv['ndcg@10']}  Recall@10 {lv['recall@10']}  (target NDCG@10 >= 0.95)",
              f"stale / rebuild: NDCG@10 {st['ndcg@10']}  Recall@10 {st['recall@10']}",
              f"({out['seconds']} s)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.live_replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo", help="demo, or a data folder (e.g. a Last.fm HetRec folder)")
    parser.add_argument("--users", type=int, help="users sampled for the T1/T2 split (default: every eligible one)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", help="state folder (its embeddings.sqlite caches item embeddings)")
    parser.add_argument("--folds", type=int, help="fusion training folds, both arms (default: the index's, 5); "
                        "fewer keep Last.fm affordable")
    parser.add_argument("--json", help="where to write the figures (default docs/benchmarks/live-replay-<data>.json)")
    args = parser.parse_args(argv)
    settings = Settings(data=args.data)
    if args.home:
        settings = settings.model_copy(update={"home": Path(args.home)})
    if args.folds:
        settings = settings.model_copy(update={"fusion": settings.fusion.model_copy(update={"folds": args.folds})})
    out = run(args.data, args.users, args.seed, settings)
    print(table(out))
    name = "demo" if args.data == "demo" else "lastfm" if "lastfm" in args.data else Path(args.data).name
    path = Path(args.json) if args.json else ROOT / "docs" / "benchmarks" / f"live-replay-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
