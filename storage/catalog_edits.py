"""Catalog edits made through the API (``PUT`` / ``DELETE /v1/items/{id}``), stored durably in the sessions
database so a restart serves the same catalog: every process replays them, in order, on top of the data
files when it loads the index (indexing/build.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.connection import ThreadConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_edits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('put', 'withdraw')),
    fields TEXT,
    received REAL NOT NULL
);
"""


@dataclass(frozen=True)
class CatalogEdit:
    seq: int
    item_id: str
    op: str  # "put" or "withdraw"
    fields: dict[str, Any] | None  # the cleaned row of a put (catalog.item_edits.ItemFields as a dict)


class CatalogEditStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connections = ThreadConnections(path)
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def append(self, item_id: str, op: str, fields: dict[str, Any] | None = None) -> int:
        cur = self._db().execute("INSERT INTO catalog_edits (item_id, op, fields, received) VALUES (?, ?, ?, ?)",
                                 (item_id, op, json.dumps(fields) if fields is not None else None, time.time()))
        return int(cur.lastrowid or 0)

    def read(self, after: int = 0) -> list[CatalogEdit]:
        """The stored edits with ``seq > after``, oldest first."""
        rows = self._db().execute("SELECT seq, item_id, op, fields FROM catalog_edits WHERE seq > ? ORDER BY seq",
                                  (after,)).fetchall()
        return [CatalogEdit(int(s), str(i), str(o), json.loads(f) if f else None) for s, i, o, f in rows]

    def last_seq(self) -> int:
        return int(self._db().execute("SELECT COALESCE(MAX(seq), 0) FROM catalog_edits").fetchone()[0])
