"""Semantic search over item texts in Chroma, with hard conditions as metadata filters."""

from __future__ import annotations

from typing import Any

from catalog.constraints import Constraints
from catalog.item_edits import is_offered
from catalog.stores import Stores
from vectorstore.store import VectorStore, where_clause


def semantic_search(stores: Stores, vector_store: VectorStore, collection: str, query: str,
                    constraints: Constraints | None = None, limit: int = 10) -> list[dict[str, Any]]:
    c = constraints or Constraints()
    where = where_clause(c.category, c.price_min, c.price_max, c.tags)
    hits = vector_store.query(collection, text=query, n=limit, where=where)
    out = []
    for hit in hits:
        if is_offered(stores, hit.item_id):
            record = stores.item_record(stores.item_index[hit.item_id])
            record["similarity"] = round(hit.similarity, 4)
            out.append(record)
    return out
