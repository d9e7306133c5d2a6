"""Indexed, read-only views of a Dataset: id maps, the behaviour matrices, the friend graph, attributes.

Tools never touch these arrays for an arbitrary user: they go through a ``UserScope`` (tools/scope.py),
which only hands out the acting user's own rows and aggregates over that user's friends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from catalog.catalog_lock import CatalogLock
from catalog.items import Item
from catalog.live import LiveEvents
from catalog.sanitize import FLAG_INSTRUCTIONS, flagged_items, strip_instructions
from catalog.text import fold, spelling_key, stem, words
from catalog.user_items import UserItems
from loaders.schema import Dataset, UnknownItem, UnknownUser, split_tags


@dataclass
class Stores:
    dataset: Dataset
    item_ids: np.ndarray
    user_ids: np.ndarray
    item_index: dict[str, int]
    user_index: dict[str, int]
    catalog: pd.DataFrame  # row i describes item i
    events: pd.DataFrame  # interactions with integer u, i columns, sorted by time
    feedback: sp.csr_matrix  # users x items implicit-feedback strength (all kinds)
    positive: sp.csr_matrix  # users x items, 1 where the user bought/liked (positive kinds)
    friends: sp.csr_matrix  # users x users, symmetric 0/1
    popularity: np.ndarray  # number of users with a positive interaction, per item
    trend: np.ndarray  # time-decayed positive count (recent popularity), per item
    last_seen: sp.csr_matrix  # users x items, days since the dataset start of the last interaction (+1)
    tag_vocab: np.ndarray
    item_tags: sp.csr_matrix  # items x tags, 0/1
    categories: np.ndarray  # category per item
    prices: np.ndarray  # NaN where unknown
    user_names: np.ndarray
    now: pd.Timestamp | None
    # users x items, 1 where the user has or knows the item: any interaction but browsing (Dataset.browse_kinds)
    known: sp.csr_matrix
    start: pd.Timestamp | None = None  # the data's earliest event time (last_seen counts days from it)
    trend_half_life_days: float = 30.0

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_idx(self, user_id: str) -> int:
        try:
            return self.user_index[str(user_id)]
        except KeyError:
            raise UnknownUser(str(user_id)) from None

    def item_idx(self, item_id: str) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownItem(str(item_id)) from None

    def __post_init__(self) -> None:
        # Plain Python columns: per-item lookups on the hot path must not go through pandas.
        self.titles: list[str] = self.catalog["title"].astype(str).tolist()
        self.descriptions: list[str] = self.catalog["description"].fillna("").astype(str).tolist()
        self.brands: list[str] = (self.catalog["brand"].fillna("").astype(str).tolist() if "brand" in self.catalog
                                  else [""] * len(self.titles))
        self.brand_keys = np.array([b.lower() for b in self.brands], dtype=object)
        self.tag_lists: list[list[str]] = [split_tags(t) for t in self.catalog["tags"].fillna("").astype(str)]
        self.tag_index: dict[str, int] = {t: k for k, t in enumerate(self.tag_vocab.tolist())}
        self.items_by_tag = self.item_tags.tocsc()
        spellings: dict[str, list[int]] = {}
        for col, tag in enumerate(self.tag_vocab.tolist()):
            spellings.setdefault(spelling_key(tag), []).append(col)
        self.tag_spellings = spellings
        self._title_words: dict[str, np.ndarray] | None = None
        # per-user history, grouped once; bits for every kind a live event may have
        self.user_items = UserItems.build(self.events, len(self.user_ids), self.dataset.event_kinds)
        # Flagged when loaded: text with instruction-like sentences is never embedded or prompted as such,
        # and every face that shows it quotes it as flagged data.
        self.flagged_ids: list[str] = flagged_items(self.item_ids.tolist(), self.titles, self.descriptions)
        self.flagged = np.zeros(len(self.titles), bool)
        self.flagged[[self.item_index[i] for i in self.flagged_ids]] = True
        self.live = LiveEvents(self)  # events after the snapshot (catalog/live.py)
        # Withdrawn through the catalog API (catalog/item_edits.py): kept at its index (the fitted models are
        # indexed by it), never offered again. The edits publish new arrays under ``lock``; ``version`` counts them.
        self.withdrawn = np.zeros(len(self.titles), bool)
        self.version = 0
        self.lock = CatalogLock()

    @property
    def n_offered(self) -> int:
        """How many items may be offered (the catalog minus the withdrawn items; what the vector store holds)."""
        return int(self.n_items - np.count_nonzero(self.withdrawn))

    def offered(self) -> np.ndarray:
        """Boolean mask of the items that may be offered at all: every item but the withdrawn ones."""
        return ~self.withdrawn

    def on_catalog_change(self) -> None:
        """Called once per catalog edit, after the new arrays are published (inside the exclusive section):
        the place to tell per-user caches that the catalog changed (their column count may have grown)."""
        self.live.on_catalog_change()

    @property
    def n_flagged(self) -> int:
        """How many items carry catalog text flagged as instructions."""
        return len(self.flagged_ids)

    def has_tag(self, tag: str) -> np.ndarray:
        """Boolean mask of the items carrying ``tag`` in any of its spellings ("synth-pop" = "synthpop" =
        "synth pop"; all False for a tag nobody uses)."""
        mask = np.zeros(self.n_items, bool)
        for col in self.tag_spellings.get(spelling_key(tag), ()):
            mask[self.items_by_tag[:, col].indices] = True
        return mask

    def items_titled(self, word: str) -> np.ndarray:
        """Boolean mask of the items with ``word`` (singular or plural) among the words of their title."""
        if self._title_words is None:
            index: dict[str, list[int]] = {}
            for i, title in enumerate(self.titles):
                for w in set(stem(w) for w in words(title)):
                    index.setdefault(w, []).append(i)
            self._title_words = {w: np.array(v, np.int64) for w, v in index.items()}
        mask = np.zeros(self.n_items, bool)
        mask[self._title_words.get(stem(fold(word)), np.zeros(0, np.int64))] = True
        return mask

    def first_seen_days(self) -> np.ndarray:
        """Per item, days from the dataset's start to its first interaction (NaN when never seen or undated):
        how new an item is, when the catalog has no release dates."""
        if getattr(self, "_first_seen", None) is None:
            ts = pd.to_datetime(self.events["timestamp"])
            out = np.full(self.n_items, np.nan)
            dated = ts.notna().to_numpy()
            if dated.any():
                days = ((ts[dated] - ts[dated].min()).dt.total_seconds() / 86400.0).to_numpy()
                first = pd.Series(days).groupby(self.events["i"].to_numpy()[dated]).min()
                out[first.index.to_numpy()] = first.to_numpy()
            self._first_seen = out
        return self._first_seen

    def mean_rating(self) -> np.ndarray | None:
        """Per item, the mean of its ratings (NaN when unrated); None when the data has no ratings."""
        if getattr(self, "_mean_rating", None) is None:
            rated = self.events[self.events["kind"] == "rating"]
            if rated.empty:
                return None
            means = rated.groupby("i")["weight"].mean()
            out = np.full(self.n_items, np.nan)
            out[means.index.to_numpy()] = means.to_numpy()
            self._mean_rating = out
        return self._mean_rating

    def item(self, i: int) -> Item:
        price = self.prices[i]
        return Item(item_id=str(self.item_ids[i]), title=self.titles[i], category=str(self.categories[i]),
                    brand=self.brands[i],
                    tags=list(self.tag_lists[i]), description=self.descriptions[i],
                    price=None if np.isnan(price) else float(price), popularity=int(self.popularity[i]),
                    flags=[FLAG_INSTRUCTIONS] if self.flagged[i] else [])

    def item_record(self, i: int) -> dict[str, object]:
        """The item as plain data (what the tools return to a model)."""
        return self.item(i).model_dump()

    def item_text(self, i: int) -> str:
        """The text that is embedded for semantic search."""
        return embedded_text(self.titles[i], str(self.categories[i]), self.tag_lists[i], self.descriptions[i])


def embedded_text(title: str, category: str, tags: list[str], description: str) -> str:
    """An item's text as it is embedded: title, category, tags, description, without instruction-like sentences."""
    tag_text = ", ".join(tags)
    parts = [title, f"category: {category}" if category else "", f"tags: {tag_text}" if tag_text else "", description]
    return strip_instructions(". ".join(p for p in parts if p))


def last_seen_days(stamps: pd.Series, start: pd.Timestamp | None) -> np.ndarray:
    """Days from the data's start to each event, plus one (0 for an undated event: never "last seen")."""
    if start is None:
        return np.zeros(len(stamps))
    return ((pd.to_datetime(stamps) - start).dt.total_seconds() / 86400.0).fillna(-1).to_numpy() + 1.0


NO_STRENGTH = {"dislike": 0.0}  # kinds that never add feedback strength unless the data weights them


def feedback_matrix(events: pd.DataFrame, n_users: int, n_items: int, kind_weights: dict[str, float]) -> sp.csr_matrix:
    """strength(u, i) = max over kinds of kind_weight * log1p(total weight of that kind)."""
    grouped = events.groupby(["u", "i", "kind"], observed=True)["weight"].sum().reset_index()
    weights = grouped["kind"].map({**NO_STRENGTH, **kind_weights}).fillna(1.0).astype(float)
    grouped["s"] = weights * np.log1p(grouped["weight"].astype(float))
    best = grouped.groupby(["u", "i"], observed=True)["s"].max().reset_index()
    best = best[best["s"] > 0]  # a dislike alone is no feedback strength (the item is known, never offered)
    return sp.csr_matrix((best["s"].to_numpy(np.float32), (best["u"].to_numpy(), best["i"].to_numpy())),
                         shape=(n_users, n_items))


def build_stores(dataset: Dataset, trend_half_life_days: float = 30.0) -> Stores:
    catalog = dataset.catalog.reset_index(drop=True)
    item_ids = catalog["item_id"].astype(str).to_numpy()
    user_ids = dataset.users["user_id"].astype(str).to_numpy()
    item_index = {v: k for k, v in enumerate(item_ids)}
    user_index = {v: k for k, v in enumerate(user_ids)}
    n_users, n_items = len(user_ids), len(item_ids)

    ev = dataset.interactions
    events = pd.DataFrame({
        "u": ev["user_id"].astype(str).map(user_index).to_numpy(),
        "i": ev["item_id"].astype(str).map(item_index).to_numpy(),
        "kind": ev["kind"].astype(str).to_numpy(),
        "weight": ev["weight"].to_numpy(float),
        "timestamp": ev["timestamp"].to_numpy(),
    })
    events = events.sort_values(["timestamp", "u", "i"], kind="stable", na_position="first").reset_index(drop=True)
    feedback = feedback_matrix(events, n_users, n_items, dataset.kind_weights)
    is_pos = dataset.positive_mask(events)
    pos = events[is_pos][["u", "i"]].drop_duplicates()
    positive = sp.csr_matrix((np.ones(len(pos), np.float32), (pos["u"].to_numpy(), pos["i"].to_numpy())),
                             shape=(n_users, n_items))
    popularity = np.asarray(positive.sum(axis=0)).ravel()
    kn = events[~events["kind"].isin(dataset.browse_kinds)][["u", "i"]].drop_duplicates()
    known = sp.csr_matrix((np.ones(len(kn), np.float32), (kn["u"].to_numpy(), kn["i"].to_numpy())),
                          shape=(n_users, n_items)).maximum(positive).tocsr()

    ts = pd.to_datetime(events["timestamp"])
    now = ts.max() if ts.notna().any() else None
    if now is not None:
        start = ts.min()
        age = ((now - ts).dt.total_seconds() / 86400.0).fillna(np.inf).to_numpy()
        decay = np.where(is_pos, np.exp(-np.log(2) * age / trend_half_life_days), 0.0)
        trend = np.bincount(events["i"].to_numpy(), weights=decay, minlength=n_items)
        day = last_seen_days(ts, start)
        last = events.assign(day=day).groupby(["u", "i"])["day"].max().reset_index()
        last = last[last["day"] > 0]
        last_seen = sp.csr_matrix((last["day"].to_numpy(np.float32), (last["u"], last["i"])), shape=(n_users, n_items))
    else:
        start = None
        trend = popularity.astype(float)
        last_seen = sp.csr_matrix((n_users, n_items), dtype=np.float32)

    soc = dataset.social
    fu = soc["user_id"].astype(str).map(user_index).to_numpy()
    fv = soc["friend_id"].astype(str).map(user_index).to_numpy()
    friends = sp.csr_matrix((np.ones(len(fu), np.float32), (fu, fv)), shape=(n_users, n_users))
    friends.data[:] = 1.0

    tag_lists = [split_tags(t) for t in catalog["tags"].fillna("")]
    vocab = np.array(sorted({t for tags in tag_lists for t in tags}))
    tag_index = {t: k for k, t in enumerate(vocab)}
    rows = [i for i, tags in enumerate(tag_lists) for _ in tags]
    cols = [tag_index[t] for tags in tag_lists for t in tags]
    item_tags = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_items, len(vocab)))
    item_tags.data[:] = 1.0

    names = dataset.users.set_index("user_id")["name"].astype(str).reindex(user_ids).fillna("").to_numpy()
    return Stores(
        dataset=dataset, item_ids=item_ids, user_ids=user_ids, item_index=item_index, user_index=user_index,
        catalog=catalog, events=events, feedback=feedback, positive=positive, friends=friends,
        popularity=popularity, trend=trend, last_seen=last_seen, tag_vocab=vocab, item_tags=item_tags,
        categories=catalog["category"].fillna("").astype(str).str.lower().to_numpy(),
        prices=catalog["price"].to_numpy(dtype=float), user_names=names, now=now, known=known, start=start,
        trend_half_life_days=trend_half_life_days,
    )
