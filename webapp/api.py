"""The Mini App's web API: thin adapters from HTTP to the services in ``bot/``.

Every call carries Telegram's signed ``initData`` (``Authorization: tma <initData>``), which
is validated here (webapp/initdata.py) and turned into the enrolled person it names; what
that person may do is then decided from their role in the database, as on the chat path.
Anyone else gets the same short refusal, whatever the reason (I4). Bodies are small JSON
(a record is one 2 KiB block, base64) and capped; answers are JSON, never HTML.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import Core
from bot.devices import (
    Decision,
    Reader,
    Registered,
    approve_device,
    pending_devices,
    register_device,
    reject_device,
)
from bot.limits import RateLimiter, Verdict
from bot.people import Actor, find_actor
from bot.sealed import (
    Kind,
    Refusal,
    Refused,
    SealedRecord,
    Shown,
    accept_member_record,
    accept_reply,
    approved_device,
    mark_read,
    member_inbox,
    member_readers,
    readers_of_member,
    staff_inbox,
)
from crypto.devices import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Certified, fingerprint
from webapp.initdata import InitDataError, ReplayedSubmission, ReplayGuard, validate_init_data

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024
_STATUS = {
    Refusal.NOT_ALLOWED: 403,
    Refusal.NO_DEVICE: 403,
    Refusal.NO_READER: 409,
    Refusal.BAD_ENVELOPE: 422,
    Refusal.TAKEN: 409,
}

CALLS_PER_USE = 4
# Calls that change something: each accepted body is remembered and a replay refused.
CHANGES = frozenset({"submit", "reply", "read", "approve", "reject"})

Handler = Callable[[AsyncSession, Actor, dict[str, Any]], Awaitable[dict[str, Any]]]


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _hex_key(body: dict[str, Any], name: str = "public_key") -> bytes:
    try:
        raw = bytes.fromhex(str(body[name]))
    except (KeyError, ValueError) as exc:
        raise Refused(Refusal.BAD_ENVELOPE) from exc
    if len(raw) != PUBLIC_KEY_SIZE:
        raise Refused(Refusal.BAD_ENVELOPE)
    return raw


def _signature(body: dict[str, Any]) -> bytes:
    try:
        raw = bytes.fromhex(str(body["signature"]))
    except (KeyError, ValueError) as exc:
        raise Refused(Refusal.BAD_ENVELOPE) from exc
    if len(raw) != SIGNATURE_SIZE:
        raise Refused(Refusal.BAD_ENVELOPE)
    return raw


def cert_json(certified: Certified) -> dict[str, Any]:
    """A certificate as pages get it (the page checks it; see certs.mjs)."""
    cert = certified.cert
    return {
        "id": cert.device_id,
        "role": cert.role.name.lower(),
        "pk": cert.public_key.hex(),
        "spk": cert.signing_key.hex(),
        "iss": cert.issuer.hex(),
        "sig": certified.signature.hex(),
    }


def _reader(reader: Reader) -> dict[str, Any]:
    """A reader as a page gets it: its key and, for a staff phone, the certificates the
    page checks against its pinned team verify key before sealing anything to it."""
    shown: dict[str, Any] = {"pk": reader.public_key.hex(), "kid": reader.key_id.hex()}
    if reader.certified is not None:
        shown["cert"] = cert_json(reader.certified)
        shown["issuer"] = cert_json(reader.issuer) if reader.issuer is not None else None
    return shown


def _envelope(body: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(body["envelope"]), validate=True)
    except (KeyError, ValueError, binascii.Error) as exc:
        raise Refused(Refusal.BAD_ENVELOPE) from exc


def _shown(body: dict[str, Any]) -> Shown:
    """What of a help request the member left unlocked: ``{"category": ..., "urgency": ...}``,
    each optional, each one of the chat's own choices."""
    shown = body.get("shown", {})
    if not isinstance(shown, dict) or not set(shown) <= {"category", "urgency"}:
        raise Refused(Refusal.BAD_ENVELOPE)
    category, urgency = shown.get("category"), shown.get("urgency")
    if not all(v is None or isinstance(v, str) for v in (category, urgency)):
        raise Refused(Refusal.BAD_ENVELOPE)
    return Shown(category, urgency)


def _record(record: SealedRecord) -> dict[str, Any]:
    return {
        "kind": record.kind.value,
        "record_id": record.record_id,
        "member_id": record.member_id,
        "pseudonym": record.pseudonym,
        "day": record.day,
        "envelope": base64.b64encode(record.envelope).decode("ascii"),
    }


class WebappApi:
    """The API's handlers, bound to the bot's core (sessions, keys, settings)."""

    def __init__(
        self,
        core: Core,
        wake: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        token = core.settings.telegram_bot_token
        if token is None or not core.settings.webapp_url:
            raise RuntimeError("the Mini App needs TELEGRAM_BOT_TOKEN and SAFERELAY_WEBAPP_URL")
        self._core = core
        self._token = token
        self._url = core.settings.webapp_url
        self._now = now
        self._wake = wake  # the outbox sender: an alert queued here goes out at once
        self._replays = ReplayGuard(now=now)
        # Per person, like the chat's flood limit: a page makes a few calls per use (its key,
        # what is waiting, the readers, the record), hence the factor.
        self._limiter = RateLimiter(core.settings.messages_per_minute * CALLS_PER_USE)

    @property
    def _anchor(self) -> bytes | None:
        return self._core.secrets.team_verify_key

    def routes(self, prefix: str) -> list[web.RouteDef]:
        calls: dict[str, Handler] = {
            "device": self.device,
            "pending": self.pending,
            "approve": self.approve,
            "reject": self.reject,
            "recipients": self.recipients,
            "submit": self.submit,
            "inbox": self.inbox,
            "reply-keys": self.reply_keys,
            "reply": self.reply,
            "replies": self.replies,
            "read": self.read,
        }
        return [
            web.post(f"{prefix}api/{name}", self._wrap(h, changes=name in CHANGES))
            for name, h in calls.items()
        ]

    def _wrap(
        self, handler: Handler, *, changes: bool
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def call(request: web.Request) -> web.Response:
            if request.content_length is None or request.content_length > MAX_BODY:
                return _refuse(413, "too_large")
            raw = await request.read()
            auth = request.headers.get("Authorization", "")
            try:
                caller = validate_init_data(
                    auth.removeprefix("tma "), self._token.get(), now=self._now()
                )
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except InitDataError:
                return _refuse(401, "unauthorised")
            except ValueError:
                return _refuse(400, "bad_request")
            core = self._core
            seen = request.path.encode() + b"|" + raw
            try:
                async with core.sessions() as session, session.begin():
                    actor = await find_actor(session, core.secrets, caller.user_id)
                    if actor is None:
                        return _refuse(401, "unauthorised")
                    if self._limiter.check(actor.person_id, time.monotonic()) is not Verdict.OK:
                        return _refuse(429, "slow_down")
                    if changes:
                        # A replayed call is refused before it can do anything twice.
                        self._replays.accept(caller, seen)
                    answer = await handler(session, actor, body)
            except ReplayedSubmission:
                return _refuse(409, "replayed")
            except Refused as refused:
                if changes:
                    self._replays.forget(caller, seen)
                return _refuse(_STATUS[refused.refusal], refused.refusal.value)
            if changes:
                self._wake()
            return web.json_response(answer)

        return call

    async def device(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Register this device's public keys (idempotent); say whether it is approved and,
        for a staff phone, give its certificates (its page checks them itself)."""
        key = _hex_key(body)
        signing = None if actor.is_member else _hex_key(body, "signing_key")
        done = await register_device(
            session, self._core.secrets, actor, key, signing, webapp_url=self._url
        )
        if done.outcome in (Registered.TAKEN, Registered.REFUSED, Registered.FULL):
            raise Refused(Refusal.NO_DEVICE)
        answer: dict[str, Any] = {
            "status": done.outcome.value,
            "fingerprint": fingerprint(key, signing or b""),
            "role": actor.role.value,
            "device_id": done.device_id,
        }
        if done.chain is not None:
            certified, issuer = done.chain
            answer["cert"] = cert_json(certified)
            answer["issuer"] = cert_json(issuer) if issuer is not None else None
        return answer

    async def pending(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        """An admin's page: the staff phones waiting, with their keys (the page computes
        their fingerprints; nothing to compare is taken from the server's text)."""
        if not actor.is_admin:
            raise Refused(Refusal.NOT_ALLOWED)
        waiting = await pending_devices(session, self._core.secrets, actor)
        return {
            "devices": [
                {
                    "id": p.device_id,
                    "name": p.name,
                    "role": p.role,
                    "pk": p.public_key.hex(),
                    "spk": p.signing_key.hex(),
                }
                for p in waiting
            ]
        }

    async def approve(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A certificate signed on a certifier's phone, checked here too before it is kept."""
        decision = await approve_device(
            session,
            self._core.secrets,
            actor,
            _hex_key(body),
            str(body.get("device_id", "")),
            _signature(body),
        )
        if decision is Decision.REFUSED:
            raise Refused(Refusal.NOT_ALLOWED)
        if decision is Decision.BAD_SIGNATURE:
            raise Refused(Refusal.BAD_ENVELOPE)
        return {"decision": decision.value}

    async def reject(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        decision = await reject_device(session, actor, str(body.get("device_id", "")))
        if decision is Decision.REFUSED:
            raise Refused(Refusal.NOT_ALLOWED)
        return {"decision": decision.value}

    async def recipients(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A member's page: the approved device keys to seal to, beside the pinned team key."""
        if not actor.is_member:
            raise Refused(Refusal.NOT_ALLOWED)
        # A "right now" help request left unlocked reaches every caseworker and admin (and
        # escalates to them), so it is sealed to all their approved devices. A member learns
        # only staff devices' public keys by this, which say nothing about other members.
        everyone = body.get("urgent") is True
        readers = await readers_of_member(
            session, self._core.secrets.team_verify_key, actor.person_id, everyone=everyone
        )
        return {"readers": [_reader(r) for r in readers]}

    async def submit(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            kind = Kind(str(body.get("kind")))
        except ValueError as exc:
            raise Refused(Refusal.BAD_ENVELOPE) from exc
        await accept_member_record(
            session,
            self._core.secrets,
            self._url,
            actor,
            kind,
            str(body.get("record_id", "")),
            _envelope(body),
            notify=body.get("notify") is True,
            shown=_shown(body) if kind is Kind.HELP else None,
            core=self._core,
        )
        return {"ok": True}

    async def inbox(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        device = await approved_device(session, self._anchor, actor, _hex_key(body))
        return {"records": [_record(r) for r in await staff_inbox(session, actor, device)]}

    async def reply_keys(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        await approved_device(session, self._anchor, actor, _hex_key(body))
        readers = await member_readers(session, actor, str(body.get("member_id", "")))
        return {"readers": [_reader(r) for r in readers]}

    async def reply(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        await approved_device(session, self._anchor, actor, _hex_key(body))
        await accept_reply(
            session,
            self._core.secrets,
            self._core.settings,
            actor,
            str(body.get("member_id", "")),
            str(body.get("record_id", "")),
            _envelope(body),
        )
        return {"ok": True}

    async def replies(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        device = await approved_device(session, self._anchor, actor, _hex_key(body))
        return {"records": [_record(r) for r in await member_inbox(session, actor, device)]}

    async def read(
        self, session: AsyncSession, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        return {"deleted": await mark_read(session, actor, str(body.get("record_id", "")))}
