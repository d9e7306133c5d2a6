"""The lock that lets the live catalog API change the per-item arrays while requests read them.

Requests *read* for as long as they combine per-item arrays (a turn, a structured request); a catalog edit
builds its new arrays without blocking anyone, then *publishes* them (assigns the attributes) in a short
exclusive section. So a request sees the whole catalog either before or after an edit, never arrays of two
lengths. Edits are serialised by a separate plain lock held for the whole edit (prepare, vector store,
publish). Reading is re-entrant per thread; a waiting publisher goes first (new readers wait for it), so a
steady stream of requests cannot starve an edit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CatalogLock:
    def __init__(self) -> None:
        self.edits = threading.Lock()  # one catalog edit at a time
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._publishing = False
        self._waiting_publishers = 0
        self._local = threading.local()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the catalog still (shared; re-entrant in one thread)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._publishing or self._waiting_publishers:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Exclusive: no request is reading while the new arrays are assigned. Must not be entered while
        this thread reads (it would wait for itself)."""
        if getattr(self._local, "depth", 0):
            raise RuntimeError("a catalog edit cannot be published from inside a read")
        with self._cond:
            self._waiting_publishers += 1
            try:
                while self._publishing or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_publishers -= 1
            self._publishing = True
        try:
            yield
        finally:
            with self._cond:
                self._publishing = False
                self._cond.notify_all()
