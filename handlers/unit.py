"""One unit of work per update: one session, one transaction, one commit.

Access control reads the sender and notes their message for deletion; the handler's service
call and the bookkeeping of the messages it sends go into the same session, and the whole
is committed once. Before that, every update paid for a separate transaction and commit per
step (the access check alone wrote and committed before the handler ran).

A handler that confirms something to the person commits first (``context.commit()``):
"your request was sent" is only said once the request is stored, and the database write
lock is never held across a call to Telegram. What comes after (the confirmation's own
message id) is committed when the update is done.

If the handler fails, its writes are rolled back -- but the person's own message is still
noted for deletion in a fresh transaction: a failure must not leave their words on the
phone. Outside an update (jobs, the outbox sender) there is no unit, and code opens its
own sessions as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.chat import remember
from bot.core import Core
from storage.models import Person

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Incoming:
    person_id: str
    message_id: int
    at_once: bool


class Unit:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._session: AsyncSession | None = None
        self._incoming: Incoming | None = None
        self._closed = False
        # The sender's row, as access control loaded it, held for the whole update: the
        # session's identity map keeps rows only while something else does, and without
        # this every later look-up of the sender (noting their message, their caseworker's
        # alert) went to the database again.
        self.sender: Person | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def session(self) -> AsyncSession:
        """The update's session; SQLAlchemy begins its transaction at the first statement."""
        if self._closed:
            # A task started during the update and still running after it: it must open
            # its own session, not one nobody would commit.
            raise RuntimeError("the update's unit of work is already closed")
        if self._session is None:
            self._session = self._core.sessions()
        return self._session

    async def note_incoming(self, person_id: str, message_id: int, *, at_once: bool) -> None:
        """The person's own message, to be deleted after their delay (or at once)."""
        self._incoming = Incoming(person_id, message_id, at_once)
        await self._remember_incoming(self.session(), fresh=True)

    async def _remember_incoming(self, session: AsyncSession, *, fresh: bool) -> None:
        incoming = self._incoming
        if incoming is None:
            return
        await remember(
            session,
            self._core.settings,
            incoming.person_id,
            [incoming.message_id],
            outgoing=False,
            at_once=incoming.at_once,
            fresh=fresh,
        )

    async def commit(self) -> None:
        if self._session is not None and self._session.in_transaction():
            await self._session.commit()

    async def rollback(self) -> None:
        """Drop the handler's writes; keep the note that deletes the person's message."""
        if self._session is None:
            return
        await self._session.rollback()
        # Not "fresh": an update Telegram delivers again (after a crash) has its note already.
        await self._remember_incoming(self._session, fresh=False)
        await self._session.commit()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


_CURRENT: ContextVar[Unit | None] = ContextVar("saferelay_unit", default=None)


def current_unit() -> Unit | None:
    """The unit of the update being handled, or None outside one (jobs, the sender, a task
    that outlived its update)."""
    unit = _CURRENT.get()
    return unit if unit is not None and not unit.closed else None


@asynccontextmanager
async def unit_of_work(core: Core) -> AsyncIterator[Unit]:
    """Around one update's handling: commit what is left at the end (the error handler has
    already rolled back a failed handler's writes)."""
    unit = Unit(core)
    token = _CURRENT.set(unit)
    try:
        yield unit
        try:
            await unit.commit()
        except Exception as exc:
            log.error("update's final commit failed: %s", type(exc).__name__, exc_info=exc)
            await unit.rollback()
    finally:
        _CURRENT.reset(token)
        await unit.close()
