"""Safety and clear words at rest: Argon2id under a per-member salt, filler when unset, and
derived only for messages that could be a word.

Before: words were a fast keyed BLAKE2b whose key sat beside the database, and NULL when
unset, so a copy showed who had a word and allowed billions of guesses a second.
"""

from __future__ import annotations

from pathlib import Path

import nacl.pwhash
import nacl.utils
import pytest
from sqlalchemy import select

from bot.safety import WordKind, set_word
from crypto.hashing import Pepper
from crypto.keystore import SecretsDir
from crypto.words import WORD_COST, could_be_word, word_digest
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import Person
from tests.conftest import bare_people, secrets_of

PEPPER = Pepper(nacl.utils.random(32))


def test_the_cost_is_memory_hard() -> None:
    assert WORD_COST.memlimit >= 32 * 1024 * 1024
    assert WORD_COST.opslimit >= nacl.pwhash.argon2id.OPSLIMIT_MIN


def test_the_same_word_differs_between_members_and_needs_the_pepper() -> None:
    mine = word_digest(PEPPER, "person-a", "Sunflower")
    assert word_digest(PEPPER, "person-a", " sunflower ") == mine  # normalised
    assert word_digest(PEPPER, "person-b", "Sunflower") != mine  # per-member salt
    assert word_digest(Pepper(nacl.utils.random(32)), "person-a", "Sunflower") != mine
    assert len(mine) == 32


@pytest.mark.parametrize(
    ("text", "derived"),
    [
        ("sunflower", True),
        ("  two words  ", True),
        ("x" * 33, False),
        ("first line\nsecond line", False),
        ("/settings", False),
        ("", False),
    ],
)
def test_only_short_one_line_texts_are_ever_derived(text: str, derived: bool) -> None:
    assert could_be_word(text) is derived


async def test_rows_with_and_without_words_look_alike(data_dir: Path) -> None:
    keys = SecretsDir(secrets_of(data_dir)).load()
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'w.db'}")
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        people = bare_people(3)
        session.add_all(people)
        await session.flush()
        # one member sets both words, one sets and removes them, one never sets any
        await set_word(session, keys, people[0].id, WordKind.CODE, "kettle")
        await set_word(session, keys, people[0].id, WordKind.DURESS, "marigold")
        await set_word(session, keys, people[1].id, WordKind.DURESS, "marigold")
        await set_word(session, keys, people[1].id, WordKind.DURESS, None)
    async with sessions() as session:
        rows = [(p.code_word, p.duress_word) for p in await session.scalars(select(Person))]
    await engine.dispose()
    values = [value for row in rows for value in row]
    assert all(isinstance(v, bytes) and len(v) == 32 for v in values)
    assert len(set(values)) == len(values)  # no shared "unset" value, no equal digests
