"""One process at a time runs each periodic sweep (issue 13).

Every process runs the same jobs (bot/app.py); before a sweep does anything, it takes that
sweep's lease in the database (storage.leases), and a process that finds it held skips that
run. So escalations, prompts, the welfare watch, broadcasts, chat upkeep and retention act
on each due row once, however many processes run: a sweep reads its due rows and acts on
them while no other process runs it. That is one mechanism for SQLite (which has no row
locks) and PostgreSQL alike; a per-row ``FOR UPDATE SKIP LOCKED`` would spread one sweep
over processes, but the sweeps are short and the binding limit is Telegram's, not theirs.

Chat deletions are the exception: quick exit and revocation delete at once, outside any
sweep, so their rows are claimed one by one instead (bot.chat.delete_due).

The lease is renewed while the sweep runs and given back when it ends; a process that dies
holding one lets it run out after :data:`LEASE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.core import Core
from storage import leases
from storage.models import new_id

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0


@asynccontextmanager
async def exclusive(core: Core, name: str) -> AsyncIterator[bool]:
    """``async with exclusive(core, "prompts") as mine: if mine: ...`` -- True while this
    run holds the sweep, False if another run (here or in another process) does."""
    owner = new_id()  # per run: two runs in one process exclude each other too
    now = time.time()
    async with core.sessions() as session, session.begin():
        mine = await leases.take(session, name, owner, now, now + LEASE_SECONDS)
    if not mine:
        yield False
        return
    renewer = asyncio.create_task(_renew(core, name, owner), name=f"lease-{name}")
    try:
        yield True
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            async with core.sessions() as session, session.begin():
                await leases.give_back(session, name, owner)
        except Exception as exc:  # it runs out by itself
            log.warning("sweep lease not given back: %s", type(exc).__name__)


async def _renew(core: Core, name: str, owner: str) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            async with core.sessions() as session, session.begin():
                kept = await leases.renew(session, name, owner, time.time() + LEASE_SECONDS)
        except Exception as exc:  # tried again at the next renewal
            log.warning("sweep lease not renewed: %s", type(exc).__name__)
            continue
        if not kept:
            log.error("sweep lease lost while running: %s", name)
            return
