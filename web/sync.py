"""Before a request is handled, this process applies what other processes (workers, replicas) stored since it
last looked: catalog edits, then behaviour events (indexing/live_sync.py). The check is two ``MAX(seq)``
queries on the event loop; only when something is new does the work go to a thread."""

from __future__ import annotations

from typing import Any

import anyio

from indexing.live_sync import LiveSync


class LiveSyncMiddleware:
    def __init__(self, app: Any, sync: LiveSync):
        self.app = app
        self.sync = sync

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.sync.behind():
            await anyio.to_thread.run_sync(self.sync)
        await self.app(scope, receive, send)
