"""Loaders: the generated demo shop, the real Last.fm files, and the generic format with its errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loaders import DataFormatError, load_dataset
from loaders.demo import make_demo
from loaders.generic import load_generic, write_generic
from tests.conftest import LASTFM


def test_demo_is_deterministic_and_seeded():
    assert make_demo(seed=7).fingerprint() == make_demo(seed=7).fingerprint()
    assert make_demo(seed=7).fingerprint() != make_demo(seed=8).fingerprint()


def test_demo_shop_looks_like_a_shop(demo_dataset):
    cat = demo_dataset.catalog
    assert 300 <= len(cat) <= 600
    assert {"electronics", "books", "home", "sports"} <= set(cat["category"])
    assert (cat["price"] > 0).all() and cat["title"].is_unique
    assert (cat["description"].str.len() > 10).all()
    assert 200 <= len(demo_dataset.users) <= 600
    kinds = demo_dataset.interactions["kind"].value_counts()
    assert kinds["view"] > kinds["click"] > kinds["purchase"] > 1000
    buyers = demo_dataset.interactions.query("kind == 'purchase'")["user_id"].nunique()
    assert buyers == len(demo_dataset.users)
    # Friends form communities: most users have friends.
    assert demo_dataset.social["user_id"].nunique() > 0.9 * len(demo_dataset.users)


def test_demo_behaviour_follows_friends(demo_stores):
    """Items bought by a user's friends are bought far more often than other items (social is learnable)."""
    import numpy as np

    s = demo_stores
    hits = base = 0.0
    for u in range(s.n_users):
        friends = s.friends[u].indices
        if not friends.size:
            continue
        friend_items = set(s.positive[friends].indices.tolist())
        own = set(s.positive[u].indices.tolist())
        hits += len(own & friend_items) / max(len(friend_items), 1)
        base += len(own) / s.n_items
    assert hits > 3 * base, (hits, base)
    assert np.isfinite(s.trend).all()


def test_lastfm_full_folder_counts_and_latin1():
    ds = load_dataset(str(LASTFM))  # a HetRec folder is recognised by its files
    assert ds.name == "lastfm"
    assert len(ds.catalog) == 17632
    listens = ds.interactions.query("kind == 'listen'")
    assert len(listens) == 92834
    assert listens["user_id"].nunique() == 1892
    assert len(ds.social) == 25434  # 12,717 friendships, both directions
    # Latin-1 / odd bytes decode without crashing and without replacement garbage in most names.
    assert ds.catalog["title"].str.contains("Beyonc").any()
    tags = set("|".join(ds.catalog["tags"]).split("|"))
    assert "rock" in tags and "electronic" in tags
    assert set(ds.catalog["category"]) >= {"rock", "metal", "pop", "electronic"}


def test_lastfm_slice_loads(lastfm_slice):
    ds = load_dataset(f"lastfm:{lastfm_slice}")
    assert ds.interactions["user_id"].nunique() == 60
    assert ds.tag_events is not None and len(ds.tag_events) > 0


def test_lastfm_truncated_file_names_file_and_line(lastfm_slice, tmp_path):
    import shutil

    bad = tmp_path / "lf"
    shutil.copytree(lastfm_slice, bad)
    raw = (bad / "user_artists.dat").read_bytes()
    (bad / "user_artists.dat").write_bytes(raw[: len(raw) // 2].rsplit(b"\t", 1)[0])
    with pytest.raises(DataFormatError) as err:
        load_dataset(f"lastfm:{bad}")
    assert "user_artists.dat" in str(err.value) and err.value.line is not None and err.value.line > 2


def _write(folder: Path, name: str, text: str | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)


GOOD_CATALOG = "item_id,title,category,tags,description,price\na,Alpha,books,x|y,An alpha,10\nb,Beta,books,y,A beta,12.5\n"
GOOD_EVENTS = "user_id,item_id,kind,weight,timestamp\nu1,a,purchase,1,2024-01-01\nu2,b,view,1,2024-01-02\n"


def test_generic_round_trip_csv_and_parquet(demo_dataset, tmp_path):
    for fmt in ("csv", "parquet"):
        folder = write_generic(demo_dataset, tmp_path / fmt, fmt=fmt)
        back = load_generic(folder)
        assert len(back.catalog) == len(demo_dataset.catalog)
        assert len(back.interactions) == len(demo_dataset.interactions)
        assert set(back.positive_kinds) == {"purchase"}
        pd.testing.assert_series_equal(back.catalog["price"], demo_dataset.catalog["price"], check_names=False)


@pytest.mark.parametrize(
    ("catalog", "events", "expect"),
    [
        ("item_id,name\na,Alpha\n", GOOD_EVENTS, ("catalog.csv", 1, "title")),
        (GOOD_CATALOG.replace("12.5", "twelve"), GOOD_EVENTS, ("catalog.csv", 3, "price")),
        (GOOD_CATALOG + "a,Again,books,,dup,3\n", GOOD_EVENTS, ("catalog.csv", 4, "item_id")),
        (GOOD_CATALOG, GOOD_EVENTS.replace("2024-01-02", "yesterday-ish"), ("interactions.csv", 3, "timestamp")),
        (GOOD_CATALOG, GOOD_EVENTS + "u3,zzz,purchase,1,2024-01-03\n", ("interactions.csv", 4, "item_id")),
        (GOOD_CATALOG, "user_id,item_id\nu1,a\nu2,b,extra,fields\n", ("interactions.csv", 3, None)),
    ],
    ids=["missing-column", "bad-number", "duplicate-id", "bad-date", "unknown-item", "malformed-row"],
)
def test_generic_errors_name_file_line_column(tmp_path, catalog, events, expect):
    _write(tmp_path, "catalog.csv", catalog)
    _write(tmp_path, "interactions.csv", events)
    with pytest.raises(DataFormatError) as err:
        load_generic(tmp_path)
    path, line, column = expect
    assert err.value.path.endswith(path)
    assert err.value.line == line
    if column:
        assert err.value.column == column
        assert f"column '{column}'" in str(err.value)
    assert f"line {line}" in str(err.value)


def test_generic_wrong_encoding_names_line(tmp_path):
    _write(tmp_path, "catalog.csv", GOOD_CATALOG.encode() + "c,Caf\u00e9,books,,latin,3\n".encode("latin-1"))
    _write(tmp_path, "interactions.csv", GOOD_EVENTS)
    with pytest.raises(DataFormatError) as err:
        load_generic(tmp_path)
    assert err.value.line == 4 and "UTF-8" in str(err.value)


def test_generic_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match="catalog"):
        load_generic(tmp_path)
    _write(tmp_path, "catalog.csv", "")
    _write(tmp_path, "interactions.csv", GOOD_EVENTS)
    with pytest.raises(DataFormatError, match="empty"):
        load_generic(tmp_path)
