"""EASE, RP3beta and the sequential source against small independent computations; the MovieLens
loader on the real folder; Unix-time and ISO timestamps in the generic format."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from loaders import DataFormatError, load_dataset
from loaders.generic import load_generic
from retrieval.ease import EASE
from retrieval.rp3beta import RP3Beta
from retrieval.sequential import SequentialRecommender

SHARED_DATA = Path(os.environ.get("FUSIONREC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MOVIELENS = SHARED_DATA / "ml-latest-small"


def _random_binary(n_users: int, n_items: int, density: float, seed: int) -> np.ndarray:
    x = (np.random.default_rng(seed).random((n_users, n_items)) < density).astype(float)
    x[0, :] = 1.0  # every item is seen at least once
    return x


def _unit_rows(n_items: int) -> list[sp.csr_matrix]:
    return [sp.csr_matrix(np.eye(1, n_items, j)) for j in range(n_items)]


# ---- EASE -------------------------------------------------------------------------------------------


def test_ease_solves_the_constrained_least_squares():
    """KKT of min ||X - XB||² + λ||B||² s.t. diag(B) = 0: (X'X + λI)B - X'X = -diag(μ), zero off the diagonal."""
    x = _random_binary(30, 12, 0.4, seed=1)
    lam = 5.0
    model = EASE(regularization=lam, min_support=1).fit(sp.csr_matrix(x * 3.0))  # strengths are binarised
    assert model.kept_items.tolist() == list(range(12))
    b = np.vstack([model.score(row) for row in _unit_rows(12)])  # a single-item user's scores are B's row
    assert np.abs(np.diag(b)).max() == 0.0
    gram = x.T @ x
    residual = (gram + lam * np.eye(12)) @ b - gram
    off_diagonal = residual[~np.eye(12, dtype=bool)]
    assert np.abs(off_diagonal).max() < 1e-4 * np.abs(gram).max()
    # A user's scores are the sum of the rows of their items.
    user = sp.csr_matrix(x[3])
    assert np.allclose(model.score(user), x[3] @ b, atol=1e-5)


def test_ease_bounds_its_item_set():
    x = _random_binary(40, 20, 0.3, seed=2)
    x[1:, 5] = 0.0  # item 5: one interaction
    x[1:, 7] = 0.0
    x[1, 7] = 1.0  # item 7: two
    support = x.sum(axis=0)
    model = EASE(regularization=2.0, min_support=3).fit(sp.csr_matrix(x))
    assert 5 not in model.kept_items and 7 not in model.kept_items
    assert set(model.kept_items.tolist()) == set(np.flatnonzero(support >= 3).tolist())
    everyone = sp.csr_matrix(np.ones((1, 20)))
    scores = model.score(everyone)
    assert scores[5] == 0.0 and scores[7] == 0.0 and np.count_nonzero(scores) > 10

    bounded = EASE(regularization=2.0, min_support=3, max_items=6).fit(sp.csr_matrix(x))
    assert len(bounded.kept_items) == 6
    order = sorted(np.flatnonzero(support >= 3), key=lambda j: (-support[j], j))
    assert bounded.kept_items.tolist() == sorted(order[:6])
    assert bounded.memory_bytes >= 6 * 6 * 4 and bounded.fit_seconds >= 0.0
    outside = np.setdiff1d(np.arange(20), bounded.kept_items)
    assert (bounded.score(everyone)[outside] == 0.0).all()


# ---- RP3beta ----------------------------------------------------------------------------------------


def _dense_rp3(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    p_ui = x / x.sum(axis=1, keepdims=True).clip(min=1)
    p_iu = x.T / x.T.sum(axis=1, keepdims=True).clip(min=1)
    w = (p_iu**alpha) @ (p_ui**alpha)
    np.fill_diagonal(w, 0.0)
    pop = x.sum(axis=0)
    return w / np.where(pop > 0, pop, np.inf) ** beta


def test_rp3beta_equals_the_dense_formula():
    x = _random_binary(20, 10, 0.35, seed=3)
    x[5] = 0.0  # a user with no history scores nothing
    for alpha, beta in [(1.0, 0.5), (0.7, 0.2)]:
        w = _dense_rp3(x, alpha, beta)
        model = RP3Beta(alpha=alpha, beta=beta, k=10).fit(sp.csr_matrix(x * 2.5))
        for u in range(20):
            expected = (x[u] / max(x[u].sum(), 1.0)) @ w
            assert np.allclose(model.score(sp.csr_matrix(x[u] * 7.0)), expected, atol=1e-12), (alpha, beta, u)


def test_rp3beta_keeps_the_k_strongest_neighbours_per_item():
    x = _random_binary(20, 10, 0.5, seed=4)
    w = _dense_rp3(x, 1.0, 0.3)
    model = RP3Beta(beta=0.3, k=3).fit(sp.csr_matrix(x))
    for i, row in enumerate(_unit_rows(10)):
        kept = model.score(row)
        assert np.count_nonzero(kept) == 3
        assert np.allclose(np.sort(kept[kept > 0]), np.sort(w[i])[-3:])


# ---- sequential -------------------------------------------------------------------------------------


def _successor_sequences(n_users: int = 300, n_items: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Item i is always followed by item i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(n_items) + np.arange(rng.integers(8, 30))) % n_items for _ in range(n_users)]


def _hit_rate(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(axis=1)
    return float((rank < k).mean())


def test_sequential_learns_the_successor_and_beats_popularity():
    sequences = _successor_sequences()
    train = [s[:-2] for s in sequences]
    validation = [(s[:-2], int(s[-2])) for s in sequences[:100]]
    # 300 short sequences are 3 batches of the default 128: smaller batches give the 20 s budget enough
    # optimiser steps even when the machine is busy.
    model = SequentialRecommender(time_budget_s=20.0, batch_size=32, seed=7).fit(train, 40, validation=validation)
    assert model.train_seconds < 25.0 and model.epochs_run >= 1
    assert model.best_validation_ndcg is not None and model.best_validation_ndcg > 0.5
    prefixes, targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    hr = _hit_rate(model.score_many(prefixes), targets)
    popularity = np.bincount(np.concatenate(train), minlength=40).astype(float)
    hr_popularity = _hit_rate(np.tile(popularity, (len(targets), 1)), targets)
    assert hr >= 0.9, hr
    assert hr >= 2.5 * hr_popularity, (hr, hr_popularity)
    assert np.allclose(model.score(prefixes[0]), model.score_many(prefixes[:1])[0], atol=1e-5)


def test_sequential_is_seeded_and_saves_what_it_scores(tmp_path):
    sequences = _successor_sequences(n_users=80)
    first = SequentialRecommender(max_epochs=3, time_budget_s=60.0, seed=3, dim=32).fit(sequences, 40)
    second = SequentialRecommender(max_epochs=3, time_budget_s=60.0, seed=3, dim=32).fit(sequences, 40)
    other = SequentialRecommender(max_epochs=3, time_budget_s=60.0, seed=4, dim=32).fit(sequences, 40)
    probe = [sequences[1], sequences[2][:3], np.array([5])]
    assert first.epochs_run == 3
    assert np.array_equal(first.score_many(probe), second.score_many(probe))
    assert not np.array_equal(first.score_many(probe), other.score_many(probe))
    first.save(tmp_path / "seq")
    loaded = SequentialRecommender.load(tmp_path / "seq")
    assert np.array_equal(loaded.score_many(probe), first.score_many(probe))
    assert loaded.epochs_run == 3 and loaded.dim == 32 and loaded.n_items == 40
    assert (loaded.score(np.array([], dtype=np.int64)) == 0.0).all()


def test_sequential_scores_10k_items_within_5_ms():
    rng = np.random.default_rng(2)
    sequences = [rng.integers(0, 10_000, size=60) for _ in range(64)]
    model = SequentialRecommender(max_epochs=1, seed=2).fit(sequences, 10_000)
    model.score(sequences[0])  # warm-up
    times = []
    for seq in sequences[:40]:
        start = time.perf_counter()
        scores = model.score(seq)
        times.append(time.perf_counter() - start)
    assert scores.shape == (10_000,) and np.isfinite(scores).all()
    assert float(np.median(times)) <= 0.005, times


def test_sequential_respects_its_time_budget():
    sequences = _successor_sequences(n_users=3000, seed=5)
    start = time.perf_counter()
    model = SequentialRecommender(time_budget_s=2.0, max_epochs=10_000, seed=1).fit(sequences, 40)
    elapsed = time.perf_counter() - start
    assert model.epochs_run < 10_000
    assert model.train_seconds >= 2.0 and elapsed < 4.0, (model.train_seconds, elapsed, model.epochs_run)
    assert model.train_seconds < 3.0  # the budget is checked after every batch, not only every epoch


# ---- MovieLens --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movielens():
    if not MOVIELENS.is_dir():
        pytest.fail(f"the shared MovieLens data is missing at {MOVIELENS} (set FUSIONREC_SHARED_DATA)")
    return load_dataset(str(MOVIELENS))  # recognised by ratings.csv + movies.csv


def test_movielens_counts_dates_and_genres(movielens):
    ds = movielens
    assert ds.name == "movielens"
    assert len(ds.catalog) == 9742 and ds.catalog["item_id"].is_unique
    ratings = ds.interactions.query("kind == 'rating'")
    assert len(ratings) == 100836
    assert ratings["user_id"].nunique() == 610 == len(ds.users)
    assert ratings["weight"].between(0.5, 5.0).all()
    assert ratings["timestamp"].min().date() == pd.Timestamp("1996-03-29").date()
    assert ratings["timestamp"].max().date() == pd.Timestamp("2018-09-24").date()
    tags = ds.interactions.query("kind == 'tag'")
    assert len(tags) > 1000 and tags["timestamp"].notna().all()
    assert ds.positive_kinds == ("rating",) and ds.rating_threshold == 4.0
    assert ds.social.empty and ds.catalog["price"].isna().all()
    toy_story = ds.catalog.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["category"] == "adventure"
    assert {"adventure", "animation", "children", "comedy", "fantasy", "pixar"} <= set(toy_story["tags"].split("|"))
    no_genre = ds.catalog[ds.catalog["description"] == "film"]
    assert len(no_genre) == 34 and (no_genre["category"] == "").all()


def test_movielens_errors_name_the_line(tmp_path):
    for name in ("movies.csv", "tags.csv"):
        (tmp_path / name).write_bytes((MOVIELENS / name).read_bytes())
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,four,964981247\n")
    with pytest.raises(DataFormatError) as err:
        load_dataset(f"movielens:{tmp_path}")
    assert (Path(err.value.path).name, err.value.line, err.value.column) == ("ratings.csv", 3, "rating")


# ---- timestamps in the generic format ---------------------------------------------------------------


def _generic(folder: Path, stamps: list[str]) -> Path:
    folder.mkdir()
    (folder / "catalog.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    rows = "".join(f"u{k},{'ab'[k % 2]},purchase,1,{s}\n" for k, s in enumerate(stamps))
    (folder / "interactions.csv").write_text("user_id,item_id,kind,weight,timestamp\n" + rows)
    return folder


def test_generic_timestamps_as_unix_seconds_milliseconds_or_iso(tmp_path):
    expected = [pd.Timestamp("1997-12-04 15:55:49"), pd.NaT, pd.Timestamp("2023-11-14 22:13:20.500")]
    cases = {
        "seconds": ["881250949", "", "1699999999.5"],  # numbers that stay below 1e11 are seconds ...
        "milliseconds": ["881250949000", "", "1700000000500"],  # ... from 1e11 up, milliseconds
        "iso": ["1997-12-04T15:55:49Z", "", "2023-11-14 23:13:20.5+01:00"],
    }
    for name, stamps in cases.items():
        ds = load_generic(_generic(tmp_path / name, stamps))
        got = ds.interactions["timestamp"].tolist()
        assert got[0] == expected[0] and pd.isna(got[1]), name
        if name != "seconds":
            assert got[2] == expected[2], name
        else:
            assert got[2] == pd.Timestamp("2023-11-14 22:13:19.500")


def test_generic_timestamps_mixing_numbers_and_dates_fail_on_the_first_odd_line(tmp_path):
    for name, stamps, odd in [("numbers-first", ["881250949", "", "881250950", "2024-01-02"], 5),
                              ("dates-first", ["", "2024-01-02", "881250950"], 4)]:
        with pytest.raises(DataFormatError) as err:
            load_generic(_generic(tmp_path / name, stamps))
        assert (Path(err.value.path).name, err.value.line, err.value.column) == ("interactions.csv", odd, "timestamp")
        assert "mixes Unix times and date strings" in str(err.value)
