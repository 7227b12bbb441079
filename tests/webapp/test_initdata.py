"""initData: forged, stale, replayed and hash-less launches are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from webapp.initdata import (
    DEFAULT_MAX_AGE,
    ForgedInitData,
    ReplayedSubmission,
    ReplayGuard,
    StaleInitData,
    sign_init_data,
    validate_init_data,
)

TOKEN = "123456:TEST-token-for-the-sandbox"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _fields(user_id: int = 4242, at: datetime = NOW) -> dict[str, str]:
    return {
        "auth_date": str(int(at.timestamp())),
        "query_id": "AAE-test",
        "user": json.dumps({"id": user_id, "first_name": "A", "language_code": "ko"}),
    }


def test_a_launch_signed_with_the_bot_token_names_its_user() -> None:
    caller = validate_init_data(sign_init_data(_fields(), TOKEN), TOKEN, now=NOW)
    assert caller.user_id == 4242
    assert "4242" not in repr(caller)


def test_signed_with_another_token_is_forged() -> None:
    with pytest.raises(ForgedInitData):
        validate_init_data(sign_init_data(_fields(), "999:other"), TOKEN, now=NOW)


def test_a_changed_user_id_is_forged() -> None:
    raw = sign_init_data(_fields(4242), TOKEN).replace("4242", "4243")
    with pytest.raises(ForgedInitData):
        validate_init_data(raw, TOKEN, now=NOW)


@pytest.mark.parametrize("raw", ["", "auth_date=1&user=%7B%22id%22%3A1%7D", "hash=", "%%%"])
def test_missing_or_empty_hash_or_garbage_is_forged(raw: str) -> None:
    with pytest.raises(ForgedInitData):
        validate_init_data(raw, TOKEN, now=NOW)


def test_a_repeated_field_is_refused() -> None:
    raw = sign_init_data(_fields(), TOKEN) + "&user=%7B%22id%22%3A1%7D"
    with pytest.raises(ForgedInitData):
        validate_init_data(raw, TOKEN, now=NOW)


def test_stale_and_future_launches_are_refused() -> None:
    old = sign_init_data(_fields(at=NOW - DEFAULT_MAX_AGE - timedelta(seconds=1)), TOKEN)
    with pytest.raises(StaleInitData):
        validate_init_data(old, TOKEN, now=NOW)
    future = sign_init_data(_fields(at=NOW + timedelta(hours=1)), TOKEN)
    with pytest.raises(StaleInitData):
        validate_init_data(future, TOKEN, now=NOW)


def test_a_replayed_submission_is_refused_until_it_would_be_stale() -> None:
    clock = [NOW]
    guard = ReplayGuard(now=lambda: clock[0])
    caller = validate_init_data(sign_init_data(_fields(), TOKEN), TOKEN, now=NOW)
    guard.accept(caller, b"envelope-1")
    guard.accept(caller, b"envelope-2")  # another submission from the same page is fine
    with pytest.raises(ReplayedSubmission):
        guard.accept(caller, b"envelope-1")
    # Once the initData is stale, validation refuses it, and the guard forgets it.
    clock[0] = NOW + DEFAULT_MAX_AGE + timedelta(minutes=5)
    guard.accept(caller, b"other")
    assert len(guard) == 1
