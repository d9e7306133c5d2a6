"""Multi-turn memory in SQLite: per session, the items shown and rejected and the constraints that
persist until changed. Each turn is written in one transaction together with its response, keyed by an
optional idempotency key, so a crash never leaves half a turn and a repeated request is answered once."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from catalog.constraints import Constraints

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    idempotency_key TEXT,
    message TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (session_id, turn)
);
CREATE UNIQUE INDEX IF NOT EXISTS turns_idem ON turns(session_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""


class SessionError(PermissionError):
    """The session belongs to another user (reported without saying whose)."""


@dataclass
class SessionState:
    shown: list[str] = field(default_factory=list)  # every item shown in this session, in order
    rejected: list[str] = field(default_factory=list)
    last_list: list[str] = field(default_factory=list)  # the most recent recommendations, in order
    constraints: dict[str, Any] = field(default_factory=dict)  # persistent hard constraints
    preferences: str = ""
    focus: str | None = None  # the item the conversation is about ("that one", "more like it")
    explanations: dict[str, str] = field(default_factory=dict)  # item id -> the reason given last time
    turns: int = 0

    def constraints_obj(self) -> Constraints:
        return Constraints.from_dict(self.constraints) if self.constraints else Constraints()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SessionState:
        return cls(**json.loads(text))


@dataclass
class Session:
    id: str
    user_id: str
    state: SessionState
    history: list[dict[str, Any]]  # [{turn, message, response}] oldest first


class SessionStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def open(self, user_id: str, session_id: str | None = None) -> Session:
        """The session with this id (created if new); another user's session id is refused."""
        session_id = session_id or uuid.uuid4().hex
        db = self._db()
        row = db.execute("SELECT user_id, state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            now = time.time()
            db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (session_id, user_id, now, now, SessionState().to_json()))
            row = db.execute("SELECT user_id, state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row[0] != user_id:
            raise SessionError("this session id belongs to another account; start a new session")
        turns = db.execute("SELECT turn, message, response FROM turns WHERE session_id = ? ORDER BY turn",
                           (session_id,)).fetchall()
        history = [{"turn": t, "message": m, "response": json.loads(r)} for t, m, r in turns]
        return Session(session_id, user_id, SessionState.from_json(row[1]), history)

    def replay(self, session_id: str, idempotency_key: str | None) -> dict[str, Any] | None:
        if not idempotency_key:
            return None
        row = self._db().execute("SELECT response FROM turns WHERE session_id = ? AND idempotency_key = ?",
                                 (session_id, idempotency_key)).fetchone()
        return json.loads(row[0]) if row else None

    def record_turn(self, session: Session, message: str, response: dict[str, Any], state: SessionState,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """Append a turn and the new state atomically. With a repeated idempotency key, the first stored
        response is returned and nothing is written."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            if idempotency_key:
                row = db.execute("SELECT response FROM turns WHERE session_id = ? AND idempotency_key = ?",
                                 (session.id, idempotency_key)).fetchone()
                if row:
                    db.execute("ROLLBACK")
                    return dict(json.loads(row[0]))
            turn = db.execute("SELECT COALESCE(MAX(turn), 0) + 1 FROM turns WHERE session_id = ?",
                              (session.id,)).fetchone()[0]
            state.turns = turn
            db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)",
                       (session.id, turn, idempotency_key, message, json.dumps(response, default=str), time.time()))
            db.execute("UPDATE sessions SET state = ?, updated = ? WHERE id = ?",
                       (state.to_json(), time.time(), session.id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        session.state = state
        return response

    def count_turns(self, session_id: str) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM turns WHERE session_id = ?", (session_id,)).fetchone()[0])
