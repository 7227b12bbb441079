"""Device keys: a staff key receives nothing until its certificate chains to the team key
(an admin's phone trusted offline, then other phones approved by that phone); a key the
database calls approved without one receives nothing; revoking a person revokes their keys;
a member's new phone replaces the old key."""

from __future__ import annotations

from pathlib import Path

import nacl.public
import nacl.signing
from sqlalchemy import delete, select

from bot.core import Core
from bot.delivery import WEBAPP_BUTTON, payload_place
from bot.devices import (
    Decision,
    Registered,
    approve_device,
    approved_readers,
    register_device,
    reject_device,
    trust_admin_device,
)
from bot.people import actor_of
from bot.staff import RevokeOutcome, revoke
from crypto.devices import CertRole, DeviceCert, fingerprint
from crypto.keystore import unlock_team_signer
from crypto.signing import TeamSigner
from storage.models import DeviceKey, DeviceStatus, OutboxItem, Person, Role
from tests.conftest import PASSPHRASE, bare_people, team_key_of

URL = "http://127.0.0.1/app/"


def _public() -> bytes:
    return bytes(nacl.public.PrivateKey.generate().public_key)


class Phone:
    """A staff phone's two key pairs, as its page makes them."""

    def __init__(self) -> None:
        self.public_key = _public()
        self.signer = nacl.signing.SigningKey.generate()
        self.signing_key = bytes(self.signer.verify_key)

    def certify(self, role: CertRole, device_id: str, other: Phone) -> bytes:
        cert = DeviceCert(role, device_id, other.public_key, other.signing_key, self.signing_key)
        return cert.sign(self.signer)


def _team(data_dir: Path) -> TeamSigner:
    return unlock_team_signer(team_key_of(data_dir), PASSPHRASE)


async def _readers(core: Core, person_ids: list[str]) -> list[bytes]:
    async with core.sessions() as session:
        found = await approved_readers(session, core.secrets.team_verify_key, person_ids)
    return [r.public_key for r in found]


async def test_a_staff_key_reads_nothing_until_a_certifier_phone_approves_it(
    core: Core, data_dir: Path
) -> None:
    # Given an admin, a caseworker and her member; the admin's phone trusted offline
    [admin] = bare_people(1, Role.ADMIN)
    [caseworker] = bare_people(1, Role.CASEWORKER, start=1)
    [member] = bare_people(1, start=2)
    member.caseworker_id = caseworker.id
    async with core.sessions() as session, session.begin():
        session.add_all([admin, caseworker, member])
    admin_phone, mina_phone = Phone(), Phone()
    as_admin, as_caseworker = actor_of(admin, core.secrets), actor_of(caseworker, core.secrets)
    async with core.sessions() as session, session.begin():
        mine = await register_device(
            session, core.secrets, as_admin, admin_phone.public_key, admin_phone.signing_key
        )
        assert mine.outcome is Registered.PENDING
        assert await trust_admin_device(session, core.secrets, _team(data_dir), mine.device_id)
    assert await _readers(core, [admin.id]) == [admin_phone.public_key]
    async with core.sessions() as session, session.begin():
        await session.execute(delete(OutboxItem))  # the notice about the admin's own phone

    # When the caseworker's page registers its keys
    async with core.sessions() as session, session.begin():
        done = await register_device(
            session,
            core.secrets,
            as_caseworker,
            mina_phone.public_key,
            mina_phone.signing_key,
            webapp_url=URL,
        )
    device_id = done.device_id
    # Then it is pending, the admin is told in a neutral line with an Open button to their
    # page (no fingerprint in the chat: the server writes it), and it reads nothing
    assert done.outcome is Registered.PENDING
    assert await _readers(core, [caseworker.id]) == []
    async with core.sessions() as session:
        asked = (await session.scalars(select(OutboxItem))).all()
    assert [item.recipient_id for item in asked] == [admin.id]
    payload = core.secrets.server_box.open(asked[0].payload, payload_place(asked[0].id))
    assert f"{WEBAPP_BUTTON}{URL}staff.en.html".encode() in payload
    assert fingerprint(mina_phone.public_key, mina_phone.signing_key).encode() not in payload

    good = admin_phone.certify(CertRole.CASEWORKER, device_id, mina_phone)
    async with core.sessions() as session, session.begin():
        # A caseworker cannot approve it, not even with a valid-looking signature
        refused = await approve_device(
            session, core.secrets, as_caseworker, mina_phone.public_key, device_id, good
        )
        # An admin's phone not trusted by the team key cannot either
        rogue = Phone()
        other = bare_people(1, Role.ADMIN, start=3)[0]
        session.add(other)
        await session.flush()
        as_other = actor_of(other, core.secrets)
        await register_device(session, core.secrets, as_other, rogue.public_key, rogue.signing_key)
        untrusted = await approve_device(
            session,
            core.secrets,
            as_other,
            rogue.public_key,
            device_id,
            rogue.certify(CertRole.CASEWORKER, device_id, mina_phone),
        )
        # A certificate with a flipped byte, or for another role, is refused
        flipped = bytes([good[0] ^ 1]) + good[1:]
        bad = await approve_device(
            session, core.secrets, as_admin, admin_phone.public_key, device_id, flipped
        )
        posing = admin_phone.certify(CertRole.ADMIN, device_id, mina_phone)
        wrong_role = await approve_device(
            session, core.secrets, as_admin, admin_phone.public_key, device_id, posing
        )
    assert (refused, untrusted) == (Decision.REFUSED, Decision.REFUSED)
    assert (bad, wrong_role) == (Decision.BAD_SIGNATURE, Decision.BAD_SIGNATURE)
    assert await _readers(core, [caseworker.id]) == []

    # When the admin's phone signs it, it is a reader
    async with core.sessions() as session, session.begin():
        decided = await approve_device(
            session, core.secrets, as_admin, admin_phone.public_key, device_id, good
        )
    assert decided is Decision.APPROVED
    assert await _readers(core, [caseworker.id]) == [mina_phone.public_key]

    # A second press finds nothing pending
    async with core.sessions() as session, session.begin():
        again = await reject_device(session, as_other, device_id)
    assert again is Decision.GONE

    # When the admin who approved it leaves, it stays a reader (it was compared and signed
    # while the admin was trusted); the admin's own phone reads nothing more
    async with core.sessions() as session, session.begin():
        gone = await session.get(Person, admin.id)
        assert gone is not None
        assert await revoke(session, as_other, gone) is RevokeOutcome.DONE
    assert await _readers(core, [caseworker.id]) == [mina_phone.public_key]
    assert await _readers(core, [admin.id]) == []

    # When the caseworker is revoked, her key reads nothing more, and cannot come back
    async with core.sessions() as session, session.begin():
        target = await session.get(Person, caseworker.id)
        assert target is not None
        assert await revoke(session, as_other, target) is RevokeOutcome.DONE
    assert await _readers(core, [caseworker.id]) == []
    async with core.sessions() as session:
        status = await session.scalar(
            select(DeviceKey.status).where(DeviceKey.person_id == caseworker.id)
        )
    assert status == "revoked"


async def test_a_key_marked_approved_in_the_database_reads_nothing(
    core: Core, data_dir: Path
) -> None:
    # Given an admin's trusted phone and a caseworker's pending one
    [admin] = bare_people(1, Role.ADMIN)
    [caseworker] = bare_people(1, Role.CASEWORKER, start=1)
    async with core.sessions() as session, session.begin():
        session.add_all([admin, caseworker])
    admin_phone, server_key = Phone(), Phone()
    async with core.sessions() as session, session.begin():
        mine = await register_device(
            session,
            core.secrets,
            actor_of(admin, core.secrets),
            admin_phone.public_key,
            admin_phone.signing_key,
        )
        await trust_admin_device(session, core.secrets, _team(data_dir), mine.device_id)
        # When a compromised server adds its own key as approved, with a made-up certificate
        session.add(
            DeviceKey(
                person_id=caseworker.id,
                public_key=server_key.public_key,
                signing_key=server_key.signing_key,
                status=DeviceStatus.APPROVED.value,
                cert_issuer=admin_phone.signing_key,
                cert_signature=bytes(64),
            )
        )
    # Then it is no reader
    assert await _readers(core, [caseworker.id]) == []
    # Nor when the server has no team verify key to check against
    async with core.sessions() as session:
        assert [r.public_key for r in await approved_readers(session, None, [admin.id])] == []


async def test_a_rejected_key_stays_out_and_a_key_is_never_shared(core: Core) -> None:
    [admin] = bare_people(1, Role.ADMIN)
    caseworkers = bare_people(2, Role.CASEWORKER, start=1)
    async with core.sessions() as session, session.begin():
        session.add_all([admin, *caseworkers])
    phone = Phone()
    first, second = (actor_of(c, core.secrets) for c in caseworkers)
    async with core.sessions() as session, session.begin():
        done = await register_device(
            session, core.secrets, first, phone.public_key, phone.signing_key
        )
        decided = await reject_device(session, actor_of(admin, core.secrets), done.device_id)
    assert decided is Decision.REJECTED
    async with core.sessions() as session, session.begin():
        again = await register_device(
            session, core.secrets, first, phone.public_key, phone.signing_key
        )
        other = await register_device(
            session, core.secrets, second, phone.public_key, phone.signing_key
        )
    assert (again.outcome, other.outcome) == (Registered.REFUSED, Registered.TAKEN)
    assert await _readers(core, [c.id for c in caseworkers]) == []


async def test_a_members_new_phone_replaces_the_old_key(core: Core) -> None:
    [member] = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add(member)
    old, new = _public(), _public()
    as_member = actor_of(member, core.secrets)
    async with core.sessions() as session, session.begin():
        first = await register_device(session, core.secrets, as_member, old)
        second = await register_device(session, core.secrets, as_member, new)
    assert first.outcome is second.outcome is Registered.APPROVED
    assert await _readers(core, [member.id]) == [new]
    async with core.sessions() as session:
        asked = (await session.scalars(select(OutboxItem))).all()
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
