"""Multi-turn memory in SQLite: per session, the items shown and rejected and the constraints that
persist until changed. Each turn is written in one transaction together with its response, keyed by an
optional idempotency key, so a crash never leaves half a turn and a repeated request is answered once."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from catalog.constraints import Constraints
from storage.connection import ThreadConnections

SCHEMA_VERSION = 1  # PRAGMA user_version; 0 = sessions keyed by id alone (before conversation ids were per user)
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE TABLE IF NOT EXISTS turns (
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    idempotency_key TEXT,
    message TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (user_id, session_id, turn),
    FOREIGN KEY (user_id, session_id) REFERENCES sessions(user_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS turns_idem ON turns(user_id, session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY CHECK (id = 1), checked REAL NOT NULL);
"""
# Version 0 had sessions(id PRIMARY KEY, user_id, ...) and turns(session_id, turn, ...): copy them over.
MIGRATE_FROM_0 = """
ALTER TABLE sessions RENAME TO sessions_v0;
ALTER TABLE turns RENAME TO turns_v0;
DROP INDEX IF EXISTS turns_idem;
""" + SCHEMA + """
INSERT INTO sessions (user_id, id, created, updated, state)
    SELECT user_id, id, created, updated, state FROM sessions_v0;
INSERT INTO turns (user_id, session_id, turn, idempotency_key, message, response, created)
    SELECT s.user_id, t.session_id, t.turn, t.idempotency_key, t.message, t.response, t.created
    FROM turns_v0 t JOIN sessions_v0 s ON s.id = t.session_id;
DROP TABLE turns_v0;
DROP TABLE sessions_v0;
"""
APPEND_ONLY = ("shown", "rejected")  # lists a turn only adds to (or removes from): merged item by item


class SessionDatabaseError(RuntimeError):
    """The sessions database cannot be used (corrupt, not a database, not writable); names its path."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"{path}: the sessions database is unusable ({reason}); move it away to start afresh")


class SessionError(PermissionError):
    """Kept for callers that catch it: conversation ids are per user, so no session is refused any more."""


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


def merge_states(base: SessionState, current: SessionState, mine: SessionState) -> SessionState:
    """Apply one turn's change (``base`` -> ``mine``) to the state stored now (``current``), which other
    turns may have changed since ``base`` was read. Append-only lists keep every turn's additions (in
    order) and removals; any other field takes this turn's value only if this turn changed it."""
    merged = SessionState.from_json(current.to_json())
    for name in APPEND_ONLY:
        was, now, stored = getattr(base, name), getattr(mine, name), getattr(current, name)
        removed = set(was) - set(now)
        kept = [i for i in stored if i not in removed]
        setattr(merged, name, kept + [i for i in now if i not in was and i not in kept])
    for name in ("last_list", "constraints", "preferences", "focus", "explanations"):
        if getattr(mine, name) != getattr(base, name):
            setattr(merged, name, getattr(mine, name))
    return merged


@dataclass
class Session:
    id: str
    user_id: str
    state: SessionState
    history: list[dict[str, Any]]  # [{turn, message, response}] oldest first
    base: str = ""  # the state as read when the session was opened (JSON): what this turn started from


class SessionStore:
    """Sessions keyed by (user, session id): the same id sent by two users is two conversations."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connections = ThreadConnections(path, foreign_keys=True)
        try:
            db = self._db()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and "sessions" in tables:
                db.executescript(f"BEGIN IMMEDIATE; {MIGRATE_FROM_0} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version > SCHEMA_VERSION:
                raise SessionDatabaseError(path, f"schema version {version} is newer than this code's {SCHEMA_VERSION}")
            else:
                db.executescript(f"{SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};")
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise SessionDatabaseError(path, f"integrity check: {problem}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise SessionDatabaseError(path, str(exc)) from None

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    def close(self) -> None:
        self._connections.close()

    def open(self, user_id: str, session_id: str | None = None) -> Session:
        """This user's session with this id (created if new)."""
        session_id = session_id or uuid.uuid4().hex
        db = self._db()
        now = time.time()
        db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?, ?)",
                   (user_id, session_id, now, now, SessionState().to_json()))
        row = db.execute("SELECT state FROM sessions WHERE user_id = ? AND id = ?", (user_id, session_id)).fetchone()
        turns = db.execute("SELECT turn, message, response FROM turns WHERE user_id = ? AND session_id = ? ORDER BY turn",
                           (user_id, session_id)).fetchall()
        history = [{"turn": t, "message": m, "response": json.loads(r)} for t, m, r in turns]
        return Session(session_id, user_id, SessionState.from_json(row[0]), history, base=row[0])

    def replay(self, session: Session, idempotency_key: str | None) -> dict[str, Any] | None:
        if not idempotency_key:
            return None
        row = self._db().execute(
            "SELECT response FROM turns WHERE user_id = ? AND session_id = ? AND idempotency_key = ?",
            (session.user_id, session.id, idempotency_key)).fetchone()
        return json.loads(row[0]) if row else None

    def record_turn(self, session: Session, message: str, response: dict[str, Any], state: SessionState,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """Append a turn and apply its change of state atomically: the stored state is re-read inside the
        write transaction and merged (``merge_states``), so a concurrent turn on the same session (in
        this process or another) loses nothing. With a repeated idempotency key, the first stored
        response is returned and nothing is written."""
        db = self._db()
        key = (session.user_id, session.id)
        db.execute("BEGIN IMMEDIATE")
        try:
            if idempotency_key:
                row = db.execute("SELECT response FROM turns WHERE user_id = ? AND session_id = ? AND idempotency_key = ?",
                                 (*key, idempotency_key)).fetchone()
                if row:
                    db.execute("ROLLBACK")
                    return dict(json.loads(row[0]))
            turn = db.execute("SELECT COALESCE(MAX(turn), 0) + 1 FROM turns WHERE user_id = ? AND session_id = ?",
                              key).fetchone()[0]
            current = db.execute("SELECT state FROM sessions WHERE user_id = ? AND id = ?", key).fetchone()[0]
            base = SessionState.from_json(session.base) if session.base else SessionState.from_json(current)
            merged = merge_states(base, SessionState.from_json(current), state)
            merged.turns = state.turns = turn
            db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (*key, turn, idempotency_key, message, json.dumps(response, default=str), time.time()))
            db.execute("UPDATE sessions SET state = ?, updated = ? WHERE user_id = ? AND id = ?",
                       (merged.to_json(), time.time(), *key))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        session.state, session.base = merged, merged.to_json()
        return response

    def count_turns(self, session_id: str, user_id: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM turns WHERE session_id = ?", [session_id]
        if user_id is not None:
            sql, args = sql + " AND user_id = ?", [*args, user_id]
        return int(self._db().execute(sql, args).fetchone()[0])

    def check(self) -> None:
        """Readiness: a write in the health table and a quick integrity check (SessionDatabaseError).
        A connection of its own, so no page cached by a turn's connection hides what the file holds now."""
        try:
            with closing(sqlite3.connect(self.path, timeout=5, isolation_level=None)) as db:
                db.execute("INSERT OR REPLACE INTO health VALUES (1, ?)", (time.time(),))
                problem = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise SessionDatabaseError(self.path, str(exc)) from None
        if problem != "ok":
            raise SessionDatabaseError(self.path, f"integrity check: {problem}")
