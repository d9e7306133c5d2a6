"""Loader for the Last.fm HetRec 2011 folder: artists are items, user tags are attributes and text,
listening counts are interactions, user_friends is the social graph. Some files are Latin-1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loaders.schema import DataFormatError, Dataset, finalize
from loaders.tagging import apply_tag_events
from loaders.textfile import read_delimited, to_int_column

FILES = ("artists.dat", "user_artists.dat", "user_friends.dat", "tags.dat", "user_taggedartists.dat")


def load_lastfm(folder: str | Path) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "Last.fm folder not found")
    artists = read_delimited(folder / "artists.dat", ["id", "name"])
    plays = read_delimited(folder / "user_artists.dat", ["userID", "artistID", "weight"])
    friends = read_delimited(folder / "user_friends.dat", ["userID", "friendID"])
    tag_names = read_delimited(folder / "tags.dat", ["tagID", "tagValue"])
    tagged = read_delimited(folder / "user_taggedartists.dat", ["userID", "artistID", "tagID", "day", "month", "year"])

    artist_ids = to_int_column(artists, "id", folder / "artists.dat").astype(str)
    catalog = pd.DataFrame({
        "item_id": artist_ids.astype("string"),
        "title": artists["name"].astype("string"),
        "category": pd.Series("other", index=artists.index, dtype="string"),
        "tags": pd.Series("", index=artists.index, dtype="string"),
        "description": pd.Series("", index=artists.index, dtype="string"),
        "price": float("nan"),
    })
    p = folder / "user_artists.dat"
    interactions = pd.DataFrame({
        "user_id": to_int_column(plays, "userID", p).astype(str).astype("string"),
        "item_id": to_int_column(plays, "artistID", p).astype(str).astype("string"),
        "kind": "listen",
        "weight": to_int_column(plays, "weight", p).astype("float64"),
        "timestamp": pd.NaT,
    })
    t = folder / "user_taggedartists.dat"
    tag_value = dict(zip(to_int_column(tag_names, "tagID", folder / "tags.dat"),
                         tag_names["tagValue"].str.strip().str.lower(), strict=True))
    year = to_int_column(tagged, "year", t)
    month = to_int_column(tagged, "month", t)
    day = to_int_column(tagged, "day", t)
    when = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
    tag_ids = to_int_column(tagged, "tagID", t)
    unknown = ~tag_ids.isin(tag_value.keys())
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise DataFormatError(t, f"tag id {tag_ids.iloc[row]} is not in tags.dat", line=row + 2, column="tagID")
    tag_events = pd.DataFrame({
        "user_id": to_int_column(tagged, "userID", t).astype(str).astype("string"),
        "item_id": to_int_column(tagged, "artistID", t).astype(str).astype("string"),
        "tag": tag_ids.map(tag_value).astype("string"),
        "timestamp": when.astype("datetime64[ns]"),
    })
    # Tag events on artists missing from artists.dat cannot be shown; keep the ones we can.
    tag_events = tag_events[tag_events["item_id"].isin(catalog["item_id"])].reset_index(drop=True)
    # A user tagging an artist is behaviour too (with a date): one "tag" interaction per (user, artist, day).
    tag_interactions = (
        tag_events.groupby(["user_id", "item_id"], observed=True)["timestamp"].max().reset_index()
        .assign(kind="tag", weight=1.0)
    )[["user_id", "item_id", "kind", "weight", "timestamp"]]
    interactions = pd.concat([interactions, tag_interactions], ignore_index=True)
    catalog = apply_tag_events(catalog, tag_events)
    f = folder / "user_friends.dat"
    social = pd.DataFrame({
        "user_id": to_int_column(friends, "userID", f).astype(str).astype("string"),
        "friend_id": to_int_column(friends, "friendID", f).astype(str).astype("string"),
    })
    paths = {"catalog": folder / "artists.dat", "interactions": p, "social": f}
    return finalize(
        "lastfm", catalog, interactions, social, None, paths,
        positive_kinds=("listen",),
        kind_weights={"listen": 1.0, "tag": 1.0},
        tag_events=tag_events,
        item_noun="artists",
        interaction_verb="listened to",
    )
