"""A member's safety settings: how fast the chat clears, the quick-exit word, the duress
word; and what a duress signal sets off.

Words are stored only as keyed hashes salted by the person (crypto.hashing.word_lookup), so
neither a copied database nor a log line shows them.
"""

from __future__ import annotations

import enum

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import HelpRequest, open_case
from bot.chat import CLEAR_CHOICES
from bot.core import Core
from bot.people import Actor
from crypto.hashing import normalise_word
from crypto.keystore import ServerSecrets
from storage.models import Person

WORD_LIMIT = 32


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
    """Set (or with None, remove) a member's code or duress word."""
    person = await session.get(Person, person_id)
    if person is None:
        return WordProblem.INVALID
    digest = None
    if word is not None:
        problem = word_problem(word)
        if problem is not None:
            return problem
        digest = keys.pepper.word_lookup(person_id, word)
        other = person.duress_word if kind is WordKind.CODE else person.code_word
        if other == digest:
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


def matches(keys: ServerSecrets, person: Actor, text: str) -> WordKind | None:
    """Whether a whole message is the member's code word or duress word (as loaded with
    the sender by access control: no second read on this per-message path)."""
    if (
        not text
        or len(text) > WORD_LIMIT * 4
        or (person.code_word is None and person.duress_word is None)
    ):
        return None
    digest = keys.pepper.word_lookup(person.person_id, text)
    if person.code_word is not None and digest == person.code_word:
        return WordKind.CODE
    if person.duress_word is not None and digest == person.duress_word:
        return WordKind.DURESS
    return None


async def raise_duress(session: AsyncSession, core: Core, person_id: str) -> str | None:
    """An urgent request alerted to every caseworker and admin, escalating until claimed."""
    return await open_case(session, core, person_id, HelpRequest("danger", "now", duress=True))
