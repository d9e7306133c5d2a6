"""The live replay benchmark (evals/live_replay.py) at tiny size on the demo: the split keeps the arms apart,
and replaying the live chunk through ``stores.live`` recovers what ignoring it loses."""

from __future__ import annotations

import pandas as pd
import pytest

from config.settings import Settings
from evals.live_replay import replay_split, run
from vectorstore.embeddings import MiniLMEmbeddingFunction


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str), strict=True))


def test_the_split_keeps_test_pairs_out_and_live_events_only_in_the_rebuild(demo_dataset):
    split = replay_split(demo_dataset, 60, seed=3)
    test, live = pairs(split.test), pairs(split.live)
    assert split.dated and split.users == 60 and test and live
    assert not test & pairs(split.rebuild.interactions) and not test & pairs(split.t0.interactions)
    assert not test & live
    assert len(split.t0.interactions) + len(split.live) == len(split.rebuild.interactions)
    # the live chunk comes after T0: a user's T0 purchases are no later than the user's first live purchase
    live_buys = split.live[split.live["kind"] == "purchase"]
    first_live = live_buys.groupby("user_id")["timestamp"].min()
    t0_pos = split.t0.interactions[split.t0.interactions["kind"] == "purchase"]
    t0_pos = t0_pos[t0_pos["user_id"].isin(first_live.index)]
    assert len(t0_pos) and (t0_pos["timestamp"].to_numpy() <= t0_pos["user_id"].map(first_live).to_numpy()).all()

@pytest.mark.slow
def test_live_replay_recovers_what_a_stale_index_loses(tmp_path, embedding_cache):
    settings = Settings(home=tmp_path, data="demo")
    settings = settings.model_copy(update={"fusion": settings.fusion.model_copy(update={
        "folds": 1, "max_training_users": 100})})
    out = run("demo", 40, 3, settings, MiniLMEmbeddingFunction(cache_path=str(embedding_cache)), log=lambda _: None)
    assert set(out["arms"]) == {"rebuild", "live", "stale"}
    assert out["users_scored"] > 20 and out["arms"]["live"]["users_changed"] == out["users_sampled"] == 40
    for arm in out["arms"].values():
        assert 0 < arm["ndcg@10"] <= 1 and 0 < arm["recall@10"] <= 1
    ndcg = {name: arm["ndcg@10"] for name, arm in out["arms"].items()}
    assert ndcg["live"] > ndcg["stale"], ndcg
    assert out["live_over_rebuild"]["ndcg@10"] == pytest.approx(ndcg["live"] / ndcg["rebuild"], abs=1e-3)
