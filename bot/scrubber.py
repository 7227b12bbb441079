"""Readable text must not outlive its row in the database's other files.

SQLite's write-ahead log keeps every version of a page written since the last checkpoint: an
outbox row holding a message under the server key is deleted once Telegram accepted it, and
secure_delete zeroes it in the main file, but the frames that held it stay in
``saferelay.db-wal`` until the log is checkpointed and truncated. So whenever something
readable leaves the database (a message sent, a request claimed or resolved, a member
erased) the scrubber runs ``PRAGMA wal_checkpoint(TRUNCATE)`` soon after -- debounced, so a
burst of sends costs one checkpoint, not one per message -- and retries while a reader keeps
part of the log in use.

SQLite only: PostgreSQL has no truncating checkpoint that would scrub its own write-ahead
log, and no secure_delete; README, "PostgreSQL", says what an operator does there instead.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import truncate_wal

log = logging.getLogger(__name__)

# Long enough to fold a burst of sends into one checkpoint, short enough that a copy taken a
# moment later holds nothing.
DEBOUNCE_SECONDS = 0.25
RETRY_SECONDS = 1.0


class WalScrubber:
    """Runs a truncating checkpoint soon after each :meth:`request`. One per process."""

    def __init__(self, engine: AsyncEngine, *, debounce: float = DEBOUNCE_SECONDS) -> None:
        self._engine = engine
        self._debounce = debounce
        self._requested = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def request(self) -> None:
        """Readable text just left the database: scrub the log soon."""
        self._requested.set()

    def start(self) -> None:
        if self._task is None and self._engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._run(), name="wal-scrubber")

    async def stop(self) -> None:
        """Scrub once more if asked to, then stop."""
        self._stopping = True
        self._requested.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._requested.wait()
            if not self._stopping:
                await asyncio.sleep(self._debounce)  # collect the rest of a burst
            self._requested.clear()
            try:
                done = await truncate_wal(self._engine)
            except Exception as exc:  # a busy database must not end scrubbing for good
                log.warning("log scrub failed, will retry: %s", type(exc).__name__)
                done = False
            self.runs += 1
            if self._stopping:
                return
            if not done:
                self._requested.set()
                await asyncio.sleep(RETRY_SECONDS)
