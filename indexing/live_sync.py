"""One process's view of the shared database kept current: several worker processes (``fusionrec serve
--workers N``) or replicas share one sessions database, and each applies what the others stored before it
answers a request.

Order matters: catalog edits first (an event may name an item another process added), then behaviour events
(storage/events.py ``catch_up``). When nothing is new this costs two ``MAX(seq)`` queries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fusion.recommender import Recommender
from indexing.live_items import replay_catalog_edits
from storage.catalog_edits import CatalogEditStore
from storage.events import EventStore, catch_up


class LiveSync:
    def __init__(self, recommender: Recommender, events: EventStore | None, edits: CatalogEditStore | None,
                 edits_through: int = 0):
        self.recommender = recommender
        self.events = events
        self.edits = edits
        self.edits_through = edits_through  # the last stored catalog edit applied in this process
        self._edits_lock = threading.RLock()

    def behind(self) -> bool:
        """Has another process stored something this one has not applied? (Two ``MAX(seq)`` queries.)"""
        return bool((self.edits is not None and self.edits.last_seq() > self.edits_through)
                    or (self.events is not None and self.events.last_seq() > self.recommender.stores.live.last_seq))

    def __call__(self) -> None:
        if self.edits is not None and self.edits.last_seq() > self.edits_through:
            with self._edits_lock:
                self._catch_up_edits()
        if self.events is not None:
            catch_up(self.events, self.recommender.stores)

    def _catch_up_edits(self) -> None:
        assert self.edits is not None
        fresh = self.edits.read(after=self.edits_through)
        if fresh:
            replay_catalog_edits(self.recommender, fresh)  # idempotent: the same put / withdraw as the API
            self.edits_through = fresh[-1].seq

    @contextmanager
    def editing(self) -> Iterator[None]:
        """Around one edit made in this process: the others' edits first, then this one, serialised."""
        with self._edits_lock:
            if self.edits is not None:
                self._catch_up_edits()
            yield

    def stored_own(self, seq: int) -> None:
        """This process stored an edit it has already applied (inside ``editing``): no need to replay it, unless
        another process stored one in between (then the next catch-up replays both, in order)."""
        if seq == self.edits_through + 1:
            self.edits_through = seq
