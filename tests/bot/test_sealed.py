"""Answers sealed to a member's phone leave the server when read, or when not read in time
(and their writer is told); records are checked before they are stored."""

from __future__ import annotations

from datetime import timedelta

import nacl.public
import pytest
from sqlalchemy import select

from bot.core import Core
from bot.delivery import payload_place
from bot.devices import register_device
from bot.people import actor_of
from bot.sealed import (
    REPLY_WAITS_AT_LEAST,
    Kind,
    Refused,
    accept_member_record,
    accept_reply,
    mark_read,
    place_of,
    purge_unread_replies,
)
from crypto.boxes import Recipient, seal_multi
from storage.models import Note, OutboxItem, Person, Role, SealedReply, new_id, utcnow
from tests.conftest import bare_people


async def _pair(core: Core) -> tuple[Person, Person, bytes]:
    [caseworker] = bare_people(1, Role.CASEWORKER)
    [member] = bare_people(1, start=1)
    member.caseworker_id = caseworker.id
    phone = bytes(nacl.public.PrivateKey.generate().public_key)
    async with core.sessions() as session, session.begin():
        session.add_all([caseworker, member])
        await session.flush()
        await register_device(session, core.secrets, actor_of(member, core.secrets), phone)
    return caseworker, member, phone


async def _reply(core: Core, caseworker: Person, member: Person, phone: bytes) -> str:
    record_id = new_id()
    team = Recipient(core.secrets.team_sealer.public_key)
    envelope = seal_multi(b"see you", place_of(Kind.REPLY, record_id), team, [Recipient(phone)])
    async with core.sessions() as session, session.begin():
        await accept_reply(
            session,
            core.secrets,
            core.settings,
            actor_of(caseworker, core.secrets),
            member.id,
            record_id,
            envelope,
        )
    return record_id


async def test_an_unread_answer_is_deleted_in_time_and_its_writer_told(core: Core) -> None:
    # Given a caseworker's answer sealed to her member's phone
    caseworker, member, phone = await _pair(core)
    record_id = await _reply(core, caseworker, member, phone)
    async with core.sessions() as session:
        waiting = await session.get(SealedReply, record_id)
    assert waiting is not None
    assert waiting.delete_at >= utcnow() + REPLY_WAITS_AT_LEAST - timedelta(minutes=1)

    # When the sweep runs before its time, nothing goes; after it, the answer goes
    async with core.sessions() as session, session.begin():
        assert await purge_unread_replies(session, core.secrets, utcnow()) == 0
    async with core.sessions() as session, session.begin():
        later = utcnow() + REPLY_WAITS_AT_LEAST + timedelta(minutes=1)
        assert await purge_unread_replies(session, core.secrets, later) == 1
    async with core.sessions() as session:
        assert await session.get(Note, record_id) is None
        told = [
            core.secrets.server_box.open(item.payload, payload_place(item.id))
            for item in (await session.scalars(select(OutboxItem))).all()
            if item.recipient_id == caseworker.id
        ]
    assert any(b"not opened in time" in payload for payload in told)


async def test_reading_deletes_the_answer_and_only_its_member_may(core: Core) -> None:
    caseworker, member, phone = await _pair(core)
    [other] = bare_people(1, start=5)
    async with core.sessions() as session, session.begin():
        session.add(other)
    record_id = await _reply(core, caseworker, member, phone)
    async with core.sessions() as session, session.begin():
        assert not await mark_read(session, actor_of(other, core.secrets), record_id)
        assert await mark_read(session, actor_of(member, core.secrets), record_id)
    async with core.sessions() as session:
        assert await session.get(Note, record_id) is None
        assert await session.get(SealedReply, record_id) is None


async def test_a_record_sealed_to_an_unapproved_key_is_refused(core: Core) -> None:
    # Given a member whose caseworker has no approved phone, and a page that seals to a key
    # the server never approved (a tampered page, or a stale list of readers)
    _caseworker, member, _phone = await _pair(core)
    stranger = Recipient(bytes(nacl.public.PrivateKey.generate().public_key))
    team = Recipient(core.secrets.team_sealer.public_key)
    record_id = new_id()
    envelope = seal_multi(b"hello", place_of(Kind.MESSAGE, record_id), team, [stranger])
    # Then it is refused, and nothing is stored
    async with core.sessions() as session, session.begin():
        with pytest.raises(Refused):
            await accept_member_record(
                session,
                core.secrets,
                "http://127.0.0.1/app/",
                actor_of(member, core.secrets),
                Kind.MESSAGE,
                record_id,
                envelope,
                notify=True,
            )
    async with core.sessions() as session:
        assert await session.get(Note, record_id) is None
