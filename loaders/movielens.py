"""Loader for a MovieLens folder (ml-latest-small and its siblings): movies are items, genres and user
tags are attributes and text, star ratings and tag applications are dated interactions. No social graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loaders.generic import read_table
from loaders.schema import DataFormatError, Dataset, check_references, finalize
from loaders.tagging import TOP_TAGS
from loaders.textfile import to_int_column

NO_GENRES = "(no genres listed)"
# A rating counts as "liked" from this many stars up (of 5).
RATING_THRESHOLD = 4.0


def load_movielens(folder: str | Path) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "MovieLens folder not found")
    movies_path, ratings_path, tags_path = folder / "movies.csv", folder / "ratings.csv", folder / "tags.csv"
    movies = _read(movies_path, ["movieId", "title", "genres"])
    ratings = _read(ratings_path, ["userId", "movieId", "rating", "timestamp"])
    tags = _read(tags_path, ["userId", "movieId", "tag", "timestamp"]) if tags_path.is_file() else None

    genres = movies["genres"].fillna("").astype(str).str.strip()
    genre_lists = [[] if g in ("", NO_GENRES) else [x.strip().lower() for x in g.split("|") if x.strip()]
                   for g in genres]
    catalog = pd.DataFrame({
        "item_id": to_int_column(movies, "movieId", movies_path).astype(str).astype("string"),
        "title": movies["title"].astype("string").str.strip(),
        "category": pd.Series([g[0] if g else "" for g in genre_lists], dtype="string"),
        "description": pd.Series([_in_words(g) for g in genre_lists], dtype="string"),
        "price": np.nan,
    })
    ratings_frame = pd.DataFrame({
        "user_id": to_int_column(ratings, "userId", ratings_path).astype(str).astype("string"),
        "item_id": to_int_column(ratings, "movieId", ratings_path).astype(str).astype("string"),
        "kind": "rating",
        "weight": _stars(ratings, ratings_path),
        "timestamp": _unix_seconds(ratings, ratings_path),
    })
    check_references(ratings_frame, "item_id", catalog["item_id"], ratings_path, "item")
    interactions = [ratings_frame]
    user_tags = pd.Series("", index=catalog.index, dtype="string")
    if tags is not None:
        events = pd.DataFrame({
            "user_id": to_int_column(tags, "userId", tags_path).astype(str).astype("string"),
            "item_id": to_int_column(tags, "movieId", tags_path).astype(str).astype("string"),
            "tag": tags["tag"].fillna("").astype("string").str.strip().str.lower().str.replace("|", "/"),
            "timestamp": _unix_seconds(tags, tags_path),
        })
        check_references(events, "item_id", catalog["item_id"], tags_path, "item")
        events = events[events["tag"] != ""]
        # Tagging a movie is behaviour too (with a date): one "tag" interaction per (user, movie).
        interactions.append(
            events.groupby(["user_id", "item_id"], observed=True)["timestamp"].max().reset_index()
            .assign(kind="tag", weight=1.0)[["user_id", "item_id", "kind", "weight", "timestamp"]])
        user_tags = catalog["item_id"].map(_top_tags(events)).fillna("").astype("string")
    genre_tags = pd.Series(["|".join(g) for g in genre_lists], dtype="string")
    catalog["tags"] = [_merge_tags(g, u) for g, u in zip(genre_tags, user_tags, strict=True)]
    catalog["tags"] = catalog["tags"].astype("string")
    social = pd.DataFrame({"user_id": pd.Series(dtype="string"), "friend_id": pd.Series(dtype="string")})
    paths = {"catalog": movies_path, "interactions": ratings_path, "social": folder}
    # User tags are folded into the catalog here, not passed as `tag_events`: Dataset.without_pairs
    # would rebuild the catalog from them with the music-genre rules of loaders/tagging.py.
    return finalize(
        "movielens", catalog, pd.concat(interactions, ignore_index=True), social, None, paths,
        positive_kinds=("rating",),
        kind_weights={"rating": 1.0, "tag": 1.0},
        rating_threshold=RATING_THRESHOLD,
        item_noun="movies",
        interaction_verb="rated highly",
    )


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    frame = read_table(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"header lacks column(s) {missing}; found {list(frame.columns)}", line=1,
                              column=missing[0])
    return frame


def _stars(frame: pd.DataFrame, path: Path) -> pd.Series:
    values = pd.to_numeric(frame["rating"], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(path, f"not a number: {frame['rating'].iloc[row]!r}", line=row + 2, column="rating")
    return values.astype("float64")


def _unix_seconds(frame: pd.DataFrame, path: Path) -> pd.Series:
    seconds = to_int_column(frame, "timestamp", path)
    return pd.to_datetime(seconds, unit="s").astype("datetime64[ns]")


def _top_tags(events: pd.DataFrame) -> pd.Series:
    """Per movie, its TOP_TAGS most applied user tags (ties alphabetical), ``|``-joined."""
    counts = events.groupby(["item_id", "tag"], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    return counts.groupby("item_id", observed=True).head(TOP_TAGS).groupby("item_id", observed=True)["tag"].agg("|".join)


def _merge_tags(genres: str, user_tags: str) -> str:
    """Genres first, then user tags that are not also a genre."""
    seen: dict[str, None] = {}
    for tag in f"{genres}|{user_tags}".split("|"):
        if tag:
            seen.setdefault(tag, None)
    return "|".join(seen)


def _in_words(genres: list[str]) -> str:
    if not genres:
        return "film"
    if len(genres) == 1:
        return f"{genres[0]} film"
    return f"{', '.join(genres[:-1])} and {genres[-1]} film"
