"""Telegram Mini App ``initData``: who is calling, proven by Telegram, checked here.

Telegram signs the launch parameters it hands the page: ``hash`` is
HMAC-SHA256(key = HMAC-SHA256(key="WebAppData", msg=bot token), msg = the other fields as
sorted ``key=value`` lines). A page cannot forge it without the bot token, so a valid
``initData`` names the Telegram user who opened the page, and the web API authorises every
call from that user's role in the database, never from anything else the page sends.

- The comparison is constant-time (:func:`hmac.compare_digest`).
- ``auth_date`` must be recent (``max_age``) and not in the future beyond a small skew: a
  copied ``initData`` stops working on its own.
- A replayed submission (the same ``initData`` and the same body) is refused:
  :class:`ReplayGuard` remembers a digest of each accepted one until its ``initData`` would
  be stale anyway, so memory is bounded by what ``max_age`` lets in. The durable guard is
  the web API's single-use record ids; this one also stops a repeated call that spends none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

MAX_INIT_DATA = 4096
DEFAULT_MAX_AGE = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=2)


class InitDataError(Exception):
    """``initData`` is missing, malformed, forged, stale or replayed; the call is refused."""


class ForgedInitData(InitDataError):
    """The hash is missing or does not match: not signed with this bot's token."""


class StaleInitData(InitDataError):
    """``auth_date`` is too old (or in the future): sign in again by reopening the page."""


class ReplayedSubmission(InitDataError):
    """This exact submission was accepted before."""


@dataclass(frozen=True, slots=True)
class WebAppCaller:
    """The Telegram user a valid ``initData`` names. ``user_id`` never leaves memory: the
    web API turns it into the keyed lookup at once, as the chat path does."""

    user_id: int
    auth_date: datetime
    signature: str

    def __repr__(self) -> str:
        return "WebAppCaller(<hidden>)"


def _secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """``fields`` signed as Telegram signs them (tests, and the sandbox's Mini App launch)."""
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    digest = hmac.new(_secret_key(bot_token), check.encode(), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def validate_init_data(
    raw: str,
    bot_token: str,
    *,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> WebAppCaller:
    """The caller named by ``raw``, or :class:`InitDataError` (forged, stale, malformed)."""
    if not raw or len(raw) > MAX_INIT_DATA:
        raise ForgedInitData("no initData")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ForgedInitData("malformed initData") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise ForgedInitData("a field appears twice")
        fields[key] = value
    received = fields.pop("hash", "")
    if not received:
        raise ForgedInitData("initData has no hash")
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    expected = hmac.new(_secret_key(bot_token), check.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise ForgedInitData("initData hash does not match")
    try:
        auth_date = datetime.fromtimestamp(int(fields["auth_date"]), UTC)
        user = json.loads(fields["user"])
        user_id = int(user["id"])
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise ForgedInitData("initData lacks a user or auth_date") from exc
    if auth_date > now + CLOCK_SKEW or now - auth_date > max_age:
        raise StaleInitData("initData is stale")
    return WebAppCaller(user_id=user_id, auth_date=auth_date, signature=received)


class ReplayGuard:
    """Remembers each accepted submission until its ``initData`` would be stale anyway."""

    def __init__(
        self,
        max_age: timedelta = DEFAULT_MAX_AGE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._max_age = max_age
        self._now = now
        self._seen: dict[bytes, datetime] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, caller: WebAppCaller, body: bytes) -> None:
        """Record this submission, or :class:`ReplayedSubmission` if it was seen before."""
        now = self._now()
        for digest in [d for d, until in self._seen.items() if until < now]:
            del self._seen[digest]
        digest = self._digest(caller, body)
        if digest in self._seen:
            raise ReplayedSubmission("this submission was already accepted")
        self._seen[digest] = caller.auth_date + self._max_age + CLOCK_SKEW

    def forget(self, caller: WebAppCaller, body: bytes) -> None:
        """The submission was refused after all (nothing stored): it may be sent again."""
        self._seen.pop(self._digest(caller, body), None)

    @staticmethod
    def _digest(caller: WebAppCaller, body: bytes) -> bytes:
        return hashlib.sha256(caller.signature.encode() + b"|" + body).digest()
