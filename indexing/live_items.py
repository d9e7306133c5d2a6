"""Live catalog changes without rebuilding the index: put (add or replace) and withdraw one item.

One edit, in order, under ``stores.lock.edits`` (edits are serialised):
1. build everything new off to the side: the stores' new arrays (catalog/item_edits.py), the item's text
   embedded with the index's embedder, the models with the item (``SourceModels.with_item``);
2. write the vector store (upsert or delete the item's vector): if that fails, nothing else has changed;
3. publish: assign the stores' arrays and ``recommender.models`` inside ``stores.lock.publishing()``, the
   short exclusive section that waits for requests reading the catalog (catalog/catalog_lock.py), so a
   request sees the catalog before or after the edit, never arrays of two lengths.

The web handler stores each edit (storage/catalog_edits.py) once it is applied; a process loading the index
replays the stored edits in order (``replay_catalog_edits``), so a restart serves the same catalog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from catalog.item_edits import ItemFields, planned_put, planned_withdraw, publish
from catalog.items import Item
from fusion.recommender import Recommender
from loaders.schema import UnknownItem
from storage.catalog_edits import CatalogEdit
from vectorstore.store import item_metadata


class VectorStoreUnavailable(RuntimeError):
    """The vector store could not be written; the catalog is unchanged."""


@dataclass
class EditResult:
    item: Item
    created: bool
    timings_ms: dict[str, float] = field(default_factory=dict)


class ItemEditor:
    def __init__(self, recommender: Recommender):
        self.recommender = recommender

    def put(self, item_id: str, fields: ItemFields) -> EditResult:
        """Add ``item_id`` or replace its attributes (a withdrawn item comes back); its vector is upserted."""
        rec, stores = self.recommender, self.recommender.stores
        if rec.vector_store is None or rec.collection is None:
            raise VectorStoreUnavailable("this recommender has no vector store")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with stores.lock.edits:
            timings["lock_ms"] = _ms(started)
            created = item_id not in stores.item_index
            t = time.perf_counter()
            i, attrs = planned_put(stores, item_id, fields)
            timings["stores_ms"] = _ms(t)
            t = time.perf_counter()
            text = fields.text
            vector = rec.vector_store.embedder.embed([text])[0]
            timings["embed_ms"] = _ms(t)
            t = time.perf_counter()
            models = rec.models.with_item(i, vector)
            timings["models_ms"] = _ms(t)
            t = time.perf_counter()
            try:
                rec.vector_store.upsert_item(rec.collection, item_id, text,
                                             item_metadata(fields.category, fields.price, fields.tags), vector)
            except Exception as exc:  # Chroma unreachable or its folder gone: nothing has been changed
                raise VectorStoreUnavailable(f"the vector store could not be written: {exc.__class__.__name__}: {exc}") from exc
            timings["vector_store_ms"] = _ms(t)
            t = time.perf_counter()
            with stores.lock.publishing():
                publish(stores, attrs)
                rec.models = models
            timings["publish_ms"] = _ms(t)
            item = stores.item(i)
        timings["total_ms"] = _ms(started)
        return EditResult(item, created, timings)

    def withdraw(self, item_id: str) -> EditResult:
        """Never offer ``item_id`` again (its index and behaviour stay); raises UnknownItem for an id that is
        not in the catalog (or already withdrawn)."""
        rec, stores = self.recommender, self.recommender.stores
        if rec.vector_store is None or rec.collection is None:
            raise VectorStoreUnavailable("this recommender has no vector store")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with stores.lock.edits:
            i = stores.item_index.get(item_id)
            if i is None or stores.withdrawn[i]:
                raise UnknownItem(item_id)
            _, attrs = planned_withdraw(stores, item_id)
            t = time.perf_counter()
            try:
                rec.vector_store.delete_item(rec.collection, item_id)
            except Exception as exc:
                raise VectorStoreUnavailable(f"the vector store could not be written: {exc.__class__.__name__}: {exc}") from exc
            timings["vector_store_ms"] = _ms(t)
            with stores.lock.publishing():
                publish(stores, attrs)
            item = stores.item(i)
        timings["total_ms"] = _ms(started)
        return EditResult(item, False, timings)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def replay_catalog_edits(recommender: Recommender, edits: list[CatalogEdit]) -> None:
    """Apply stored catalog edits in order (at load): the same put / withdraw as the API (the vector store is
    upserted or cleaned again, which is idempotent)."""
    editor = ItemEditor(recommender)
    for edit in edits:
        if edit.op == "put" and edit.fields is not None:
            editor.put(edit.item_id, ItemFields(**edit.fields))
        elif edit.op == "withdraw" and edit.item_id in recommender.stores.item_index \
                and not recommender.stores.withdrawn[recommender.stores.item_index[edit.item_id]]:
            editor.withdraw(edit.item_id)
