"""The three typed tables every data source becomes (catalog, interactions, social) plus users.

All ids are strings. Tags are a ``|``-separated string so that the tables stay flat and can be
written to CSV or Parquet as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

CATALOG_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "category": "string",
    "tags": "string",
    "description": "string",
    "price": "float64",
    "brand": "string",  # optional: who makes it (matched as a brand in messages; never guessed from titles)
}
INTERACTION_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "item_id": "string",
    "kind": "string",
    "weight": "float64",
    "timestamp": "datetime64[ns]",
}
SOCIAL_COLUMNS: dict[str, str] = {"user_id": "string", "friend_id": "string"}
USER_COLUMNS: dict[str, str] = {"user_id": "string", "name": "string"}
TAG_EVENT_COLUMNS: dict[str, str] = {"user_id": "string", "item_id": "string", "tag": "string", "timestamp": "datetime64[ns]"}

REQUIRED = {
    "catalog": ["item_id", "title"],
    "interactions": ["user_id", "item_id"],
    "social": ["user_id", "friend_id"],
    "users": ["user_id"],
}


class DataFormatError(ValueError):
    """A data file cannot be used; says which file, line (1-based, header = line 1) and column."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {reason}")


class UnknownUser(KeyError):
    def __init__(self, user_id: str):
        self.user_id = user_id
        super().__init__(user_id)

    def __str__(self) -> str:
        return f"unknown user '{self.user_id}'"


class UnknownItem(KeyError):
    def __init__(self, item_id: str):
        self.item_id = item_id
        super().__init__(item_id)

    def __str__(self) -> str:
        return f"unknown item '{self.item_id}'"


def split_tags(value: str | None) -> list[str]:
    if not value or (isinstance(value, float) and np.isnan(value)):
        return []
    return [t.strip().lower() for t in str(value).split("|") if t.strip()]


@dataclass(frozen=True)
class Dataset:
    """A recommender dataset: catalog, behaviour, social graph, users (and optional tag events)."""

    name: str
    catalog: pd.DataFrame
    interactions: pd.DataFrame
    social: pd.DataFrame
    users: pd.DataFrame
    # Kinds of interaction that count as "bought / liked" (targets of recommendation, friends' signal).
    positive_kinds: tuple[str, ...] = ("purchase",)
    # Per-kind weight multipliers when building the implicit-feedback matrix.
    kind_weights: dict[str, float] = field(default_factory=lambda: {"view": 0.2, "click": 0.5, "purchase": 1.0})
    # Optional user tag events: item tags are derived from them when present (Last.fm).
    tag_events: pd.DataFrame | None = None
    currency: str = ""
    item_noun: str = "items"  # what the items are called in replies ("artists", "movies")
    interaction_verb: str = "bought"  # what doing the positive kind is called ("listened to", "liked")
    named_users: bool = True  # False when the data has no users table: replies give counts, never ids
    # The positive rule of ratings: a "rating" event is positive (a target, a friend's pick, popularity) only
    # when its weight >= rating_threshold (None: every rating is). Lower ratings stay interactions (the item
    # is seen, and part of the feedback matrix) but are never counted as liked.
    rating_threshold: float | None = None
    # Kinds that do not mean the user has or knows the item (browsing): an item only viewed or clicked may be
    # recommended again; any other kind (a purchase, a listen, a rating, a dislike, a tag given to it) means
    # the user knows it, and it is never offered as new.
    browse_kinds: tuple[str, ...] = ("view", "click")

    @cached_property
    def event_kinds(self) -> tuple[str, ...]:
        """The kinds of interaction this data accepts (in files and as live events): its own kinds, the
        weighted, positive and browsing kinds, "rating", "like" (a thumbs up: the user knows the item) and
        "dislike" (a thumbs down: known and not wanted; never offered again, no feedback strength)."""
        own = self.interactions["kind"].dropna().astype(str).str.lower().unique().tolist() if len(self.interactions) else []
        return tuple(sorted({*own, *self.kind_weights, *self.positive_kinds, *self.browse_kinds, "rating", "like",
                             "dislike"}))

    def positive_mask(self, events: pd.DataFrame) -> np.ndarray:
        """Which rows of an events table (columns kind, weight) are positive: a positive kind, and for
        ratings, at least ``rating_threshold``. Training targets, eval targets and friends' signal use this."""
        mask = events["kind"].isin(self.positive_kinds).to_numpy(copy=True)
        if self.rating_threshold is not None:
            low = (events["kind"] == "rating").to_numpy() & (events["weight"].to_numpy(float) < self.rating_threshold)
            mask &= ~low
        return mask

    def without_pairs(self, pairs: pd.DataFrame) -> Dataset:
        """The dataset with every event of the given (user_id, item_id) pairs removed (evaluation holdout).

        Item tags derived from tag events are recomputed, so no held-out event leaks through item text.
        """
        key = pd.MultiIndex.from_frame(pairs[["user_id", "item_id"]])
        keep = ~pd.MultiIndex.from_frame(self.interactions[["user_id", "item_id"]]).isin(key)
        interactions = self.interactions[keep].reset_index(drop=True)
        catalog, tag_events = self.catalog, self.tag_events
        if tag_events is not None:
            keep_t = ~pd.MultiIndex.from_frame(tag_events[["user_id", "item_id"]]).isin(key)
            tag_events = tag_events[keep_t].reset_index(drop=True)
            from loaders.tagging import apply_tag_events

            catalog = apply_tag_events(catalog, tag_events)
        return replace(self, catalog=catalog, interactions=interactions, tag_events=tag_events)

    def fingerprint(self) -> str:
        """A content hash of the tables: an index built from other data is stale."""
        h = hashlib.sha256(self.name.encode())
        h.update(repr(self.rating_threshold).encode())  # another positive rule is other data
        for frame in (self.catalog, self.interactions, self.social, self.users):
            h.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
        return h.hexdigest()[:16]


def coerce(frame: pd.DataFrame, columns: dict[str, str], path: str | Path, table: str) -> pd.DataFrame:
    """Check required columns, add optional ones, cast types; errors name the file, line and column.

    Date/time columns are read per column, as one of: ISO 8601 strings, Unix seconds or Unix
    milliseconds (all read as UTC, stored without a time zone). A column whose non-empty values are
    all integers (optionally with a fractional part, e.g. ``881250949`` or ``1700000000.5``) is epoch
    time: milliseconds when its largest absolute value is >= 1e11 (year 5138 in seconds), seconds
    otherwise. So a compact date such as ``20240115`` is read as seconds: write ``2024-01-15``.
    A column mixing numbers and date strings is an error naming the first line whose value is not
    of the kind of the column's first non-empty value.
    """
    missing = [c for c in REQUIRED[table] if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing required column(s) {missing}; found {list(frame.columns)}", line=1,
                              column=missing[0])
    out = pd.DataFrame(index=frame.index)
    for col, dtype in columns.items():
        if col not in frame.columns:
            out[col] = pd.Series(pd.NA if dtype == "string" else np.nan, index=frame.index).astype(
                "datetime64[ns]" if dtype.startswith("datetime") else ("string" if dtype == "string" else "float64")
            )
            continue
        raw = frame[col]
        if dtype == "string":
            out[col] = raw.astype("string").str.strip()
        elif dtype == "float64":
            values = pd.to_numeric(raw, errors="coerce")
            bad = values.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataFormatError(path, f"not a number: {raw.iloc[row]!r}", line=row + 2, column=col)
            out[col] = values.astype("float64")
        else:
            out[col] = _datetimes(raw, path, col)
    for col in REQUIRED[table]:
        empty = out[col].isna() | (out[col] == "")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataFormatError(path, "empty value in a required column", line=row + 2, column=col)
    return out.reset_index(drop=True)


_EPOCH = r"[+-]?\d+(?:\.\d*)?"


def _datetimes(raw: pd.Series, path: str | Path, col: str) -> pd.Series:
    """One date/time column as naive UTC datetime64[ns] (the rule is in ``coerce``'s docstring)."""
    if pd.api.types.is_datetime64_any_dtype(raw):  # Parquet keeps real timestamps
        values = raw.dt.tz_convert(None) if getattr(raw.dt, "tz", None) is not None else raw
        return _nanoseconds(values, raw, path, col)
    text = raw.astype("string").str.strip()
    present = (raw.notna() & text.notna() & (text != "")).to_numpy(bool)
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        numeric = present.copy()
    else:
        numeric = present & text.str.fullmatch(_EPOCH).fillna(False).to_numpy(bool)
    if numeric.any() and (present & ~numeric).any():
        first = int(np.flatnonzero(present)[0])
        odd = int(np.flatnonzero(present & (numeric != numeric[first]))[0])
        if numeric[first]:
            why = f"{raw.iloc[odd]!r} is not a Unix time like the column's first value (line {first + 2})"
        else:
            why = f"{raw.iloc[odd]!r} is a Unix time, the column's first value (line {first + 2}) a date string"
        raise DataFormatError(path, f"mixes Unix times and date strings: {why}", line=odd + 2, column=col)
    if numeric.any():
        number = pd.to_numeric(text.where(pd.Series(present, index=raw.index)), errors="coerce").astype("float64")
        unit = "ms" if float(number.abs().max()) >= 1e11 else "s"
        try:
            return pd.to_datetime(number, unit=unit).astype("datetime64[ns]")
        except (pd.errors.OutOfBoundsDatetime, OverflowError):
            row = int(np.nanargmax(number.abs().to_numpy()))
            raise DataFormatError(path, f"Unix time out of range (years 1677-2262): {raw.iloc[row]!r}",
                                  line=row + 2, column=col) from None
    values = pd.to_datetime(raw, errors="coerce", utc=True)
    retry = values.isna().to_numpy() & present
    if retry.any():  # mixed ISO 8601 variants (a date here, a date-time with offset there)
        values = values.where(~retry, pd.to_datetime(raw.where(retry), errors="coerce", utc=True, format="ISO8601"))
    bad = values.isna().to_numpy() & present
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(path, f"not a date/time: {raw.iloc[row]!r}", line=row + 2, column=col)
    return _nanoseconds(values.dt.tz_localize(None), raw, path, col)


def _nanoseconds(values: pd.Series, raw: pd.Series, path: str | Path, col: str) -> pd.Series:
    try:
        return values.astype("datetime64[ns]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        low, high = pd.Timestamp.min, pd.Timestamp.max
        outside = (values.notna() & ((values < low) | (values > high))).to_numpy(bool)
        row = int(np.flatnonzero(outside)[0]) if outside.any() else 0
        raise DataFormatError(path, f"date/time out of range (years 1677-2262): {raw.iloc[row]!r}",
                              line=row + 2, column=col) from None


def check_unique(frame: pd.DataFrame, column: str, path: str | Path) -> None:
    dup = frame[column].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataFormatError(path, f"duplicate id {frame[column].iloc[row]!r}", line=row + 2, column=column)


def check_references(frame: pd.DataFrame, column: str, known: pd.Series, path: str | Path, what: str) -> None:
    bad = ~frame[column].isin(known)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(path, f"{what} {frame[column].iloc[row]!r} is not in the {what} table", line=row + 2,
                              column=column)


def catalog_defaults(catalog: pd.DataFrame) -> pd.DataFrame:
    """Catalog rows as every loader stores them (after ``coerce``): the title defaults to the id, category
    and tags are lower case, empty text is "" (the live catalog API cleans its rows with this too)."""
    return catalog.assign(
        title=catalog["title"].fillna(catalog["item_id"]),
        category=catalog["category"].fillna("").str.lower(),
        tags=catalog["tags"].fillna("").str.lower(),
        description=catalog["description"].fillna(""),
        brand=(catalog["brand"] if "brand" in catalog else pd.Series("", index=catalog.index, dtype="string"))
        .fillna("").astype("string").str.strip(),
    )


def finalize(
    name: str,
    catalog: pd.DataFrame,
    interactions: pd.DataFrame,
    social: pd.DataFrame,
    users: pd.DataFrame | None,
    paths: Mapping[str, str | Path],
    **options: object,
) -> Dataset:
    """Validate cross-table consistency and build the Dataset (all-or-nothing)."""
    check_unique(catalog, "item_id", paths["catalog"])
    catalog = catalog_defaults(catalog)
    check_references(interactions, "item_id", catalog["item_id"], paths["interactions"], "item")
    interactions = interactions.assign(
        kind=interactions["kind"].fillna("purchase").str.lower(),
        weight=interactions["weight"].fillna(1.0),
    )
    if (interactions["weight"] < 0).any():
        row = int(np.flatnonzero((interactions["weight"] < 0).to_numpy())[0])
        raise DataFormatError(paths["interactions"], "negative weight", line=row + 2, column="weight")
    known_users = pd.concat([interactions["user_id"], social["user_id"], social["friend_id"]]).drop_duplicates()
    if users is None or users.empty:
        users = pd.DataFrame({"user_id": known_users.astype("string"), "name": known_users.astype("string")})
        options = {"named_users": False, **options}
    else:
        check_unique(users, "user_id", paths.get("users", "users"))
        users = users.assign(name=users["name"].fillna(users["user_id"]))
        if (users["name"].astype(str) == users["user_id"].astype(str)).all():
            options = {"named_users": False, **options}  # a users table of ids only names nobody
        check_references(interactions, "user_id", users["user_id"], paths["interactions"], "user")
        check_references(social, "user_id", users["user_id"], paths["social"], "user")
        check_references(social, "friend_id", users["user_id"], paths["social"], "user")
    # Friendship is symmetric; self-loops and repeats are dropped.
    both = pd.concat([social, social.rename(columns={"user_id": "friend_id", "friend_id": "user_id"})])
    social = both[both["user_id"] != both["friend_id"]].drop_duplicates().reset_index(drop=True)
    return Dataset(name=name, catalog=catalog.reset_index(drop=True), interactions=interactions.reset_index(drop=True),
                   social=social[["user_id", "friend_id"]], users=users.reset_index(drop=True), **options)  # type: ignore[arg-type]
