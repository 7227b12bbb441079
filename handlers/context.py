"""The callback context every handler gets: the wiring (core) and the identified sender."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import Application, CallbackContext, ExtBot

from bot.core import Core
from bot.limits import RateLimiter
from bot.people import Actor
from bot.safety import WordKind
from handlers.unit import current_unit

CORE_KEY = "core"
SENDER_KEY = "sender"
CLEANER_KEY = "cleaner"
LIMITER_KEY = "limiter"
PACE_KEY = "pace"
SCRUBBER_KEY = "scrubber"
STRANGERS_KEY = "strangers"
WORD_LIMITER_KEY = "word_limiter"


class SafeContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB builds one context per update and reuses it across handler groups, so the
    access-control handler in group -1 can leave the sender here for the others."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)
        self.actor: Actor | None = None
        # Set by access control when the message was the member's clear or safety word.
        self.word: WordKind | None = None

    @property
    def core(self) -> Core:
        core = self.application.bot_data[CORE_KEY]
        assert isinstance(core, Core)
        return core

    def wake_outbox(self) -> None:
        """Something was queued: have the sender look now rather than at its next poll."""
        sender = self.application.bot_data.get(SENDER_KEY)
        if sender is not None:
            sender.wake()

    def wake_cleaner(self) -> None:
        """Messages are due for deletion now (quick exit, revealing media): do not wait
        for the next sweep."""
        wake = self.application.bot_data.get(CLEANER_KEY)
        if wake is not None:
            wake()

    def scrub(self) -> None:
        """Readable text just left the database (a claim, an erasure): have the write-ahead
        log forget it soon (bot/scrubber.py)."""
        scrubber = self.application.bot_data.get(SCRUBBER_KEY)
        if scrubber is not None:
            scrubber.request()

    @property
    def limiter(self) -> RateLimiter:
        limiter = self.application.bot_data[LIMITER_KEY]
        assert isinstance(limiter, RateLimiter)
        return limiter

    @property
    def word_limiter(self) -> RateLimiter:
        """How many messages a minute may be checked for a member's words: twice the flood
        limit, so words still work past it, within bounds."""
        limiter = self.application.bot_data[WORD_LIMITER_KEY]
        assert isinstance(limiter, RateLimiter)
        return limiter

    def session(self) -> AsyncSession:
        """This update's session (handlers/unit.py): one transaction for the whole update."""
        unit = current_unit()
        if unit is None:
            raise RuntimeError("no unit of work outside an update")
        return unit.session()

    async def commit(self) -> None:
        """Commit the update's work so far: before telling the person it is done."""
        unit = current_unit()
        if unit is not None:
            await unit.commit()

    def forget_recipient(self, person_id: str) -> None:
        """A revoked or erased person: the outbox sender drops the chat id it kept."""
        sender = self.application.bot_data.get(SENDER_KEY)
        if sender is not None:
            sender.forget(person_id)

    def require_actor(self) -> Actor:
        """The sender; access control guarantees one for every handler after group -1."""
        if self.actor is None:
            raise PermissionError("no enrolled sender for this update")
        return self.actor
