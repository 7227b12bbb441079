"""Device keys: a staff key receives nothing until an admin approves it; revoking a person
revokes their keys; a member's new phone replaces the old key."""

from __future__ import annotations

import nacl.public
from sqlalchemy import select

from bot.core import Core
from bot.delivery import payload_place
from bot.devices import Decision, Registered, approved_readers, decide_device, register_device
from bot.people import actor_of
from bot.staff import RevokeOutcome, revoke
from crypto.devices import fingerprint
from storage.models import DeviceKey, OutboxItem, Role
from tests.conftest import bare_people


def _public() -> bytes:
    return bytes(nacl.public.PrivateKey.generate().public_key)


async def test_a_staff_key_reads_nothing_until_an_admin_approves_it(core: Core) -> None:
    # Given an admin, a caseworker and her member
    [admin] = bare_people(1, Role.ADMIN)
    [caseworker] = bare_people(1, Role.CASEWORKER, start=1)
    [member] = bare_people(1, start=2)
    member.caseworker_id = caseworker.id
    async with core.sessions() as session, session.begin():
        session.add_all([admin, caseworker, member])
    key = _public()

    # When the caseworker's page registers its key
    async with core.sessions() as session, session.begin():
        outcome, device_id = await register_device(
            session, core.secrets, actor_of(caseworker, core.secrets), key
        )
    # Then it is pending, the admin is asked with its fingerprint, and it reads nothing
    assert outcome is Registered.PENDING
    async with core.sessions() as session:
        assert await approved_readers(session, [caseworker.id]) == []
        asked = (await session.scalars(select(OutboxItem))).all()
    assert [item.recipient_id for item in asked] == [admin.id]
    payload = core.secrets.server_box.open(
        asked[0].payload, payload_place(asked[0].id)
    )
    assert fingerprint(key).encode() in payload and f"dev:ok:{device_id}".encode() in payload

    # A caseworker cannot approve it, not even her own
    async with core.sessions() as session, session.begin():
        refused, _ = await decide_device(
            session, actor_of(caseworker, core.secrets), device_id, approve=True
        )
    assert refused is Decision.REFUSED

    # When the admin approves, it is a reader
    async with core.sessions() as session, session.begin():
        decided, shown = await decide_device(
            session, actor_of(admin, core.secrets), device_id, approve=True
        )
    assert (decided, shown) == (Decision.APPROVED, fingerprint(key))
    async with core.sessions() as session:
        readers = await approved_readers(session, [caseworker.id])
    assert [r.public_key for r in readers] == [key]

    # A second press finds nothing pending
    async with core.sessions() as session, session.begin():
        again, _ = await decide_device(
            session, actor_of(admin, core.secrets), device_id, approve=False
        )
    assert again is Decision.GONE

    # When the caseworker is revoked, her key reads nothing more, and cannot come back
    async with core.sessions() as session, session.begin():
        target = await session.get(type(caseworker), caseworker.id)
        assert target is not None
        assert await revoke(session, actor_of(admin, core.secrets), target) is RevokeOutcome.DONE
    async with core.sessions() as session:
        assert await approved_readers(session, [caseworker.id]) == []
        statuses = (await session.scalars(select(DeviceKey.status))).all()
    assert statuses == ["revoked"]


async def test_a_rejected_key_stays_out_and_a_key_is_never_shared(core: Core) -> None:
    [admin] = bare_people(1, Role.ADMIN)
    caseworkers = bare_people(2, Role.CASEWORKER, start=1)
    async with core.sessions() as session, session.begin():
        session.add_all([admin, *caseworkers])
    key = _public()
    async with core.sessions() as session, session.begin():
        _, device_id = await register_device(
            session, core.secrets, actor_of(caseworkers[0], core.secrets), key
        )
        decided, _ = await decide_device(
            session, actor_of(admin, core.secrets), device_id, approve=False
        )
    assert decided is Decision.REJECTED
    async with core.sessions() as session, session.begin():
        again, _ = await register_device(
            session, core.secrets, actor_of(caseworkers[0], core.secrets), key
        )
        other, _ = await register_device(
            session, core.secrets, actor_of(caseworkers[1], core.secrets), key
        )
    assert (again, other) == (Registered.REFUSED, Registered.TAKEN)
    async with core.sessions() as session:
        assert await approved_readers(session, [c.id for c in caseworkers]) == []


async def test_a_members_new_phone_replaces_the_old_key(core: Core) -> None:
    [member] = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    old, new = _public(), _public()
    async with core.sessions() as session, session.begin():
        first, _ = await register_device(
            session, core.secrets, actor_of(member, core.secrets), old
        )
        second, _ = await register_device(
            session, core.secrets, actor_of(member, core.secrets), new
        )
    assert first is second is Registered.APPROVED
    async with core.sessions() as session:
        readers = await approved_readers(session, [member.id])
        asked = (await session.scalars(select(OutboxItem))).all()
    assert [r.public_key for r in readers] == [new]
    assert asked == []  # nobody is asked about a member's phone


async def test_erasing_a_member_deletes_their_phone_key(core: Core) -> None:
    from bot.erasure import erase_member

    [member] = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    async with core.sessions() as session, session.begin():
        await register_device(session, core.secrets, actor_of(member, core.secrets), _public())
    async with core.sessions() as session, session.begin():
        assert await erase_member(session, core.secrets, member.id, actor_id=member.id)
    async with core.sessions() as session:
        assert (await session.scalars(select(DeviceKey))).all() == []
