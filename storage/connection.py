"""One SQLite connection per thread to one database file, in WAL mode with fsynced commits (what every store in
this package needs: a request's thread reuses its connection, an acknowledged write survives a power cut)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ThreadConnections:
    def __init__(self, path: Path, foreign_keys: bool = False):
        self.path = path
        self.foreign_keys = foreign_keys
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if self.foreign_keys:
                db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
