"""Behaviour events that arrive while the app serves (``POST /v1/events``), stored durably in the sessions
database: one table, one transaction per batch (all rows or none), idempotent by an optional event id.

``seq`` numbers the stored events in commit order (writers are serialised by ``BEGIN IMMEDIATE``): an index
built with ``fusionrec index --refresh`` records the last ``seq`` it folded in, a process that loads that
index applies only the later events as live ones (catalog/live.py), and each process catches up on the
events other processes stored (``catch_up``) before it answers a request.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from catalog.stores import Stores
from storage.connection import ThreadConnections

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    weight REAL NOT NULL,
    timestamp TEXT NOT NULL,
    received REAL NOT NULL
);
"""
COLUMNS = ["seq", "event_id", "user_id", "item_id", "kind", "weight", "timestamp"]


class EventDatabaseError(RuntimeError):
    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"{path}: the events table is unusable ({reason})")


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    kind: str
    weight: float
    timestamp: pd.Timestamp  # UTC, without a time zone
    event_id: str | None = None


@dataclass(frozen=True)
class StoredBatch:
    stored: list[int]  # positions in the batch that were new (in order)
    duplicates: list[int]  # positions whose event id was stored before (or earlier in this batch)
    last_seq: int  # the highest seq in the table after this batch


class EventStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connections = ThreadConnections(path)
        try:
            self._db().executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise EventDatabaseError(path, str(exc)) from None

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()  # fsynced: an acknowledged event survives a power cut, not only kill -9

    def close(self) -> None:
        self._connections.close()

    def append(self, events: list[Event]) -> StoredBatch:
        """Store a batch in one transaction. An event whose id is already stored is not stored again (a retried
        batch is stored once); events without an id are always new."""
        db = self._db()
        stored: list[int] = []
        duplicates: list[int] = []
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for pos, e in enumerate(events):
                cur = db.execute(
                    "INSERT OR IGNORE INTO events (event_id, user_id, item_id, kind, weight, timestamp, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (e.event_id, e.user_id, e.item_id, e.kind, float(e.weight), e.timestamp.isoformat(), now))
                (stored if cur.rowcount == 1 else duplicates).append(pos)
            last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return StoredBatch(stored, duplicates, int(last))

    def last_seq(self) -> int:
        return int(self._db().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def read(self, after: int = 0, through: int | None = None) -> pd.DataFrame:
        """Stored events with ``after < seq <= through``, oldest first, as a table of ``COLUMNS`` (timestamps parsed)."""
        sql, args = f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq > ?", [after]
        if through is not None:
            sql, args = sql + " AND seq <= ?", [*args, through]
        rows = self._db().execute(sql + " ORDER BY seq", args).fetchall()
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")  # with or without fractions
        frame["weight"] = frame["weight"].astype(float)
        return frame

    def interactions(self, after: int = 0, through: int | None = None) -> pd.DataFrame:
        """The stored events in the generic interactions format (user_id, item_id, kind, weight, timestamp)."""
        frame = self.read(after, through)
        return frame[["user_id", "item_id", "kind", "weight", "timestamp"]].astype(
            {"user_id": "string", "item_id": "string", "kind": "string", "weight": "float64"})


def record(store: EventStore, stores: Stores, events: list[Event]) -> tuple[StoredBatch, list[int]]:
    """Store events durably, then bring the live stores up to the table (this batch and any event another process
    or thread stored before it, each applied once): (what was stored, users changed)."""
    batch = store.append(events)
    return batch, catch_up(store, stores)


def catch_up(store: EventStore, stores: Stores) -> list[int]:
    """Apply the events stored since this process last looked, by any process (several workers or replicas
    share the database); one ``MAX(seq)`` query when there are none. Returns the users whose rows changed."""
    if store.last_seq() <= stores.live.last_seq:
        return []
    return stores.live.catch_up(lambda after: store.read(after=after))
