"""Derive item tags, a broad category and a short description from user tag events (Last.fm style)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

TOP_TAGS = 10
# Broad genres used as the "category" of a music item; the first keyword found in the item's most
# frequent tags wins (counts summed over all tags that contain the keyword as a word).
GENRES = (
    "metal", "punk", "hip-hop", "rap", "electronic", "dance", "jazz", "blues", "classical", "folk",
    "country", "reggae", "soul", "r&b", "ambient", "soundtrack", "indie", "alternative", "rock", "pop",
    "experimental",
)
_GENRE_ALIASES = {"rap": "hip-hop", "hip hop": "hip-hop", "hiphop": "hip-hop", "electronica": "electronic",
                  "rnb": "r&b"}


def _genre_of(tag: str) -> str | None:
    tag = _GENRE_ALIASES.get(tag, tag)
    for genre in GENRES:
        if re.search(rf"(^|[\s/-]){re.escape(genre)}($|[\s/-])", tag):
            return _GENRE_ALIASES.get(genre, genre)
    return None


def apply_tag_events(catalog: pd.DataFrame, tag_events: pd.DataFrame) -> pd.DataFrame:
    """Catalog with ``tags`` (top tags by count), ``category`` (broad genre) and ``description`` rebuilt."""
    counts = tag_events.groupby(["item_id", "tag"], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    top = counts.groupby("item_id", observed=True).head(TOP_TAGS)
    tags = top.groupby("item_id", observed=True)["tag"].agg("|".join)
    genre_of = {t: _genre_of(t) for t in counts["tag"].unique()}
    counts["genre"] = counts["tag"].map(genre_of)
    g = counts.dropna(subset=["genre"]).groupby(["item_id", "genre"], observed=True)["n"].sum().reset_index()
    g = g.sort_values(["item_id", "n", "genre"], ascending=[True, False, True]).drop_duplicates("item_id")
    genre = g.set_index("item_id")["genre"]
    out = catalog.copy()
    out["tags"] = out["item_id"].map(tags).fillna("").astype("string")
    out["category"] = out["item_id"].map(genre).fillna("other").astype("string")
    # The tags already go into the embedded text; the description only says what kind of item it is.
    out["description"] = np.where(out["category"] != "other", out["category"] + " artist", "artist")
    out["description"] = out["description"].astype("string")
    return out
