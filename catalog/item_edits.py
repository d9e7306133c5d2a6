"""Live catalog edits on the stores: add or replace one item, withdraw one, without rebuilding anything.

An edit never renumbers items (the fitted models are indexed by item index): a new item takes index
``n_items`` and every per-item array grows by one; a replaced item keeps its index and its behaviour; a
withdrawn item keeps its row and is masked out by ``Stores.withdrawn``. Each edit first builds its new
arrays from the current ones (``planned_put`` / ``planned_withdraw``: nothing is changed yet), then
``publish`` assigns them. The caller holds ``stores.lock.edits`` for the whole edit and publishes inside
``stores.lock.publishing()`` together with the models (indexing/live_items.py does both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from catalog.sanitize import has_instructions
from catalog.stores import Stores, embedded_text
from catalog.text import spelling_key
from loaders.schema import CATALOG_COLUMNS, UnknownItem, catalog_defaults, coerce, split_tags


@dataclass(frozen=True)
class ItemFields:
    """One catalog row as the loaders store it (stripped, lower-case category and tags, "" for no text)."""

    title: str
    category: str
    tags: list[str]
    description: str
    price: float | None
    brand: str

    @property
    def text(self) -> str:
        """What is embedded for this item (the same text as ``Stores.item_text``)."""
        return embedded_text(self.title, self.category, self.tags, self.description)

    @property
    def flagged(self) -> bool:
        return has_instructions(self.title) or has_instructions(self.description)


def clean_fields(item_id: str, title: str, category: str | None = None, tags: str | list[str] | None = None,
                 description: str | None = None, price: float | None = None, brand: str | None = None) -> ItemFields:
    """The row cleaned exactly as a loaded ``catalog.csv`` row is (``coerce`` + ``catalog_defaults``); raises
    DataFormatError naming the column (an empty title)."""
    tag_text = "|".join(tags) if isinstance(tags, list) else tags
    frame = pd.DataFrame([{"item_id": item_id, "title": title, "category": category, "tags": tag_text,
                           "description": description, "price": price, "brand": brand}])
    row = catalog_defaults(coerce(frame, CATALOG_COLUMNS, "request body", "catalog")).iloc[0]
    value = float(row["price"])
    return ItemFields(title=str(row["title"]), category=str(row["category"]), tags=split_tags(str(row["tags"])),
                      description=str(row["description"]), price=None if np.isnan(value) else value,
                      brand=str(row["brand"]))


def planned_put(stores: Stores, item_id: str, fields: ItemFields) -> tuple[int, dict[str, Any]]:
    """(the item's index, the stores' new attributes) for adding ``item_id`` or replacing its attributes (and
    bringing it back when it was withdrawn). The current arrays are not touched."""
    i = stores.item_index.get(item_id)
    new = i is None
    i = stores.n_items if i is None else i
    n = stores.n_items + 1 if new else stores.n_items

    def put(values: list[Any], value: Any) -> list[Any]:
        return [*values, value] if new else [*values[:i], value, *values[i + 1:]]

    def put_array(values: np.ndarray, value: Any) -> np.ndarray:
        if values.dtype.kind in "US":  # fixed-width strings would cut a longer value short
            values = values.astype(object)
        out = np.append(values, np.zeros(1, values.dtype)) if new else values.copy()
        out[i] = value
        return out

    row = {"item_id": item_id, "title": fields.title, "category": fields.category, "tags": "|".join(fields.tags),
           "description": fields.description, "price": np.nan if fields.price is None else fields.price,
           "brand": fields.brand}
    catalog = stores.catalog.copy()
    if new:
        catalog = pd.concat([catalog, pd.DataFrame([row]).astype(catalog.dtypes.to_dict())], ignore_index=True)
    else:
        for column, value in row.items():
            if column in catalog:
                catalog.loc[i, column] = value
    attrs: dict[str, Any] = {
        "catalog": catalog,
        "titles": put(stores.titles, fields.title),
        "descriptions": put(stores.descriptions, fields.description),
        "brands": put(stores.brands, fields.brand),
        "brand_keys": put_array(stores.brand_keys, fields.brand.lower()),
        "categories": put_array(stores.categories, fields.category),
        "prices": put_array(stores.prices, np.nan if fields.price is None else fields.price),
        "withdrawn": put_array(stores.withdrawn, False),
        "_title_words": None, "_first_seen": None, "_mean_rating": None,
    }
    attrs.update(_tag_arrays(stores, put(stores.tag_lists, fields.tags)))
    flagged = put_array(stores.flagged, fields.flagged)
    attrs["flagged"] = flagged
    if new:
        attrs.update({
            "item_ids": put_array(stores.item_ids, item_id),
            "item_index": {**stores.item_index, item_id: i},
            "popularity": np.append(stores.popularity, np.zeros(1, stores.popularity.dtype)),  # no behaviour yet
            "trend": np.append(stores.trend, np.zeros(1, stores.trend.dtype)),
            **{name: _widened(getattr(stores, name), n) for name in ("feedback", "positive", "known", "last_seen")},
        })
    ids = attrs.get("item_ids", stores.item_ids)
    attrs["flagged_ids"] = [str(ids[k]) for k in np.flatnonzero(flagged)]
    return i, attrs


def planned_withdraw(stores: Stores, item_id: str) -> tuple[int, dict[str, Any]]:
    """(the item's index, the new ``withdrawn`` mask); raises UnknownItem for an id never in the catalog."""
    i = stores.item_idx(item_id)
    withdrawn = stores.withdrawn.copy()
    withdrawn[i] = True
    return i, {"withdrawn": withdrawn}


def publish(stores: Stores, attrs: dict[str, Any]) -> None:
    """Assign the new arrays (call inside ``stores.lock.publishing()``) and tell the per-user caches."""
    for name, value in attrs.items():
        setattr(stores, name, value)
    stores.version += 1
    stores.on_catalog_change()


def is_offered(stores: Stores, item_id: str) -> bool:
    i = stores.item_index.get(item_id)
    return i is not None and not stores.withdrawn[i]


def require_offered(stores: Stores, item_id: str) -> int:
    """The index of an item that may be offered; UnknownItem for an unknown or withdrawn id."""
    i = stores.item_index.get(item_id)
    if i is None or stores.withdrawn[i]:
        raise UnknownItem(item_id)
    return i


def _widened(matrix: sp.csr_matrix, n_items: int) -> sp.csr_matrix:
    """The users x items matrix with empty columns up to ``n_items`` (its arrays shared, not copied)."""
    return sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], n_items))


def _tag_arrays(stores: Stores, tag_lists: list[list[str]]) -> dict[str, Any]:
    """The tag structures for new per-item tag lists: a tag nobody had gets the next column (the existing
    columns keep their numbers); items x tags is rebuilt from the lists."""
    known = set(stores.tag_index)
    added = sorted({t for tags in tag_lists for t in tags} - known)
    vocab = np.array([*stores.tag_vocab.tolist(), *added]) if added else stores.tag_vocab
    tag_index = {t: k for k, t in enumerate(vocab.tolist())} if added else stores.tag_index
    rows = [i for i, tags in enumerate(tag_lists) for _ in tags]
    cols = [tag_index[t] for tags in tag_lists for t in tags]
    item_tags = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(tag_lists), len(vocab)))
    item_tags.data[:] = 1.0
    spellings: dict[str, list[int]] = {}
    for col, tag in enumerate(vocab.tolist()):
        spellings.setdefault(spelling_key(tag), []).append(col)
    return {"tag_lists": tag_lists, "tag_vocab": vocab, "tag_index": tag_index, "item_tags": item_tags,
            "items_by_tag": item_tags.tocsc(), "tag_spellings": spellings}
