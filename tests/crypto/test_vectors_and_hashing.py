"""Known-answer vectors (checked in): the formats must keep opening across versions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.boxes import RecordPlace, ServerBox, TeamOpener
from crypto.errors import InvalidKey
from crypto.hashing import Pepper

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())
PLACE = RecordPlace(*VECTORS["place"])
PEPPER = Pepper(bytes.fromhex(VECTORS["pepper"]))


def test_user_lookup_known_answer() -> None:
    v = VECTORS["user_lookup"]
    assert PEPPER.user_lookup(v["telegram_user_id"]).hex() == v["digest"]


def test_invite_lookup_known_answer() -> None:
    v = VECTORS["invite_lookup"]
    assert PEPPER.invite_lookup(v["token"]).hex() == v["digest"]


def test_server_envelope_known_answer() -> None:
    v = VECTORS["server_envelope"]
    box = ServerBox(bytes.fromhex(VECTORS["server_key"]))
    assert box.open(bytes.fromhex(v["envelope"]), PLACE).decode() == v["plaintext"]


def test_team_envelope_known_answer() -> None:
    v = VECTORS["team_envelope"]
    opener = TeamOpener([bytes.fromhex(VECTORS["team_private_key"])])
    assert opener.open(bytes.fromhex(v["envelope"]), PLACE).decode() == v["plaintext"]


@given(a=st.integers(min_value=1, max_value=2**52), b=st.integers(min_value=1, max_value=2**52))
def test_lookups_are_distinct_per_id(a: int, b: int) -> None:
    assert (PEPPER.user_lookup(a) == PEPPER.user_lookup(b)) == (a == b)


def test_lookup_depends_on_the_pepper_and_the_kind() -> None:
    other = Pepper(bytes(32))
    assert PEPPER.user_lookup(42) != other.user_lookup(42)
    # A user id and an invite token with the same text never collide.
    assert PEPPER.user_lookup(42) != PEPPER.invite_lookup("42")


def test_pepper_length_is_checked_and_hidden() -> None:
    with pytest.raises(InvalidKey):
        Pepper(b"short")
    assert VECTORS["pepper"] not in repr(PEPPER)


def test_webhook_secret_is_stable_per_pepper_and_telegram_shaped() -> None:
    first, second = Pepper(bytes(32)), Pepper(bytes([1]) * 32)
    assert first.webhook_secret() == Pepper(bytes(32)).webhook_secret()  # same after restart
    assert first.webhook_secret() != second.webhook_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", first.webhook_secret())  # Telegram: [A-Za-z0-9_-]{1,256}
