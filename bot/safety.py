"""A member's safety settings: how fast the chat clears, the quick-exit word, the duress
word; and what a duress signal sets off.

Words are stored only as Argon2id digests keyed by the pepper and salted by the person
(crypto.words), and as random filler when unset, so neither a copied database nor a log line
shows them, nor whether a member has one. Checking a message costs one derivation, and only
for a short one-line message: it runs in a worker thread so the event loop (the outbox, the
chat upkeep) keeps going meanwhile.
"""

from __future__ import annotations

import asyncio
import enum

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import HelpRequest, open_case
from bot.chat import CLEAR_CHOICES
from bot.core import Core
from bot.people import Actor
from crypto.hashing import normalise_word
from crypto.keystore import ServerSecrets
from crypto.words import MAX_WORD_LENGTH, could_be_word, same_digest, word_digest
from storage.models import Person, word_filler

WORD_LIMIT = MAX_WORD_LENGTH


class WordKind(enum.StrEnum):
    CODE = "code"
    DURESS = "duress"


class WordProblem(enum.Enum):
    INVALID = "invalid"
    SAME_AS_OTHER = "same"


def word_problem(word: str) -> WordProblem | None:
    plain = normalise_word(word)
    if not 1 <= len(plain) <= WORD_LIMIT or "\n" in word.strip() or plain.startswith("/"):
        return WordProblem.INVALID
    return None


async def set_word(
    session: AsyncSession, keys: ServerSecrets, person_id: str, kind: WordKind, word: str | None
) -> WordProblem | None:
    """Set (or with None, remove) a member's code or duress word. Removing writes fresh
    filler, so the row looks the same either way."""
    person = await session.get(Person, person_id)
    if person is None:
        return WordProblem.INVALID
    digest = word_filler()
    if word is not None:
        problem = word_problem(word)
        if problem is not None:
            return problem
        digest = await asyncio.to_thread(word_digest, keys.pepper, person_id, word)
        other = person.duress_word if kind is WordKind.CODE else person.code_word
        if same_digest(other, digest):
            return WordProblem.SAME_AS_OTHER
    if kind is WordKind.CODE:
        person.code_word = digest
    else:
        person.duress_word = digest
    return None


async def set_clear_after(session: AsyncSession, person_id: str, minutes: int) -> bool:
    if minutes not in CLEAR_CHOICES:
        return False
    await session.execute(
        update(Person).where(Person.id == person_id).values(clear_after_minutes=minutes)
    )
    return True


async def matches(keys: ServerSecrets, person: Actor, text: str) -> WordKind | None:
    """Whether a whole message is the member's code word or duress word, compared with the
    digests loaded with the sender by access control (no second read on this per-message
    path). One derivation, and none for what cannot be a word."""
    if not person.is_member or not could_be_word(text):
        return None
    digest = await asyncio.to_thread(word_digest, keys.pepper, person.person_id, text)
    if same_digest(digest, person.code_word):
        return WordKind.CODE
    if same_digest(digest, person.duress_word):
        return WordKind.DURESS
    return None


async def raise_duress(session: AsyncSession, core: Core, person_id: str) -> str | None:
    """An urgent request alerted to every caseworker and admin, escalating until claimed."""
    return await open_case(session, core, person_id, HelpRequest("danger", "now", duress=True))
