"""Mini App device keys: register, approve after a fingerprint comparison, revoke, and who
a record is sealed to.

A staff device's key is a reader of members' sealed words, so it receives nothing until an
admin approves it: the staff member's page shows its fingerprint (computed on that phone),
the admin's chat shows the registered key's fingerprint with "Approve?", and the admin
presses Approve only when the two match, side by side or read over a call. A server (or
anyone who can write to the database) that registered its own key would show a fingerprint
the staff member's phone does not. What this does not stop -- a server changed to approve
a key by itself, or to serve pages that seal to another key -- is in the README ("End to
end"): the approval lives in the same database the server writes.

A member's device key (for replies sealed to them) is approved at registration: a member
cannot be asked to compare fingerprints with anyone, and a new phone simply replaces the old
key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AuditAction, record
from bot.delivery import Outgoing, enqueue
from bot.i18n import t
from bot.people import Actor, active_person, active_staff, shown_name_of
from crypto.boxes import MAX_RECIPIENTS, Recipient, key_id
from crypto.devices import PUBLIC_KEY_SIZE, fingerprint
from crypto.keystore import ServerSecrets
from storage.models import DeviceKey, DeviceStatus, Person, Role, new_id

# A caseworker with more phones than this is unusual; the cap keeps a record's recipients
# (team key + these) within one envelope's limit and Telegram's sendData size.
MAX_DEVICES_PER_PERSON = MAX_RECIPIENTS - 1


class Registered(enum.Enum):
    PENDING = "pending"  # a staff key, waiting for an admin
    APPROVED = "approved"  # a member key, or a staff key already approved
    TAKEN = "taken"  # this public key belongs to someone else
    FULL = "full"  # too many devices already
    REFUSED = "refused"  # a revoked key may not come back


@dataclass(frozen=True, slots=True)
class Reader:
    """A device key a record is sealed to."""

    device_id: str
    person_id: str
    public_key: bytes

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.public_key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)


def approval_buttons(language: str, device_id: str) -> list[list[tuple[str, str]]]:
    return [
        [
            (t(language, "btn_device_approve"), f"dev:ok:{device_id}"),
            (t(language, "btn_device_reject"), f"dev:no:{device_id}"),
        ]
    ]


async def register_device(
    session: AsyncSession, keys: ServerSecrets, actor: Actor, public_key: bytes
) -> tuple[Registered, str]:
    """Register ``public_key`` for ``actor``'s device; ask every admin to approve a staff key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError("a device public key is 32 bytes")
    existing = await session.scalar(select(DeviceKey).where(DeviceKey.public_key == public_key))
    if existing is not None:
        if existing.person_id != actor.person_id:
            return Registered.TAKEN, ""
        if existing.status == DeviceStatus.REVOKED.value:
            return Registered.REFUSED, existing.id
        return Registered(existing.status), existing.id
    if actor.is_member:
        # One phone per member: a new key retires the one before.
        await session.execute(
            update(DeviceKey)
            .where(DeviceKey.person_id == actor.person_id)
            .values(status=DeviceStatus.REVOKED.value)
        )
    else:
        live = await session.scalars(
            select(DeviceKey.id).where(
                DeviceKey.person_id == actor.person_id,
                DeviceKey.status != DeviceStatus.REVOKED.value,
            )
        )
        if len(live.all()) >= MAX_DEVICES_PER_PERSON:
            return Registered.FULL, ""
    device = DeviceKey(
        id=new_id(),
        person_id=actor.person_id,
        public_key=public_key,
        status=(DeviceStatus.APPROVED if actor.is_member else DeviceStatus.PENDING).value,
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError:
        return Registered.TAKEN, ""
    if actor.is_member:
        return Registered.APPROVED, device.id
    for admin in await active_staff(session):
        if admin.role != Role.ADMIN.value:
            continue
        text = t(
            admin.language,
            "device_approve_question",
            name=actor.shown_name,
            role=t(admin.language, f"role_{actor.role.value}"),
            fingerprint=fingerprint(public_key),
        )
        enqueue(
            session, keys, admin.id, Outgoing(text, approval_buttons(admin.language, device.id))
        )
    return Registered.PENDING, device.id


class Decision(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    GONE = "gone"  # no such pending key, or its owner is no longer active
    REFUSED = "refused"  # not an admin


async def decide_device(
    session: AsyncSession, actor: Actor, device_id: str, *, approve: bool
) -> tuple[Decision, str]:
    """An admin's answer to an approval question, checked again here; the key's fingerprint
    and its owner's shown name for the answer."""
    if not actor.is_admin:
        return Decision.REFUSED, ""
    device = await session.scalar(
        select(DeviceKey)
        .where(DeviceKey.id == device_id, DeviceKey.status == DeviceStatus.PENDING.value)
        .with_for_update()
    )
    owner = await active_person(session, device.person_id) if device is not None else None
    if device is None or owner is None:
        return Decision.GONE, ""
    device.status = (DeviceStatus.APPROVED if approve else DeviceStatus.REVOKED).value
    device.approved_by = actor.person_id if approve else None
    await record(
        session,
        AuditAction.DEVICE_APPROVE if approve else AuditAction.DEVICE_REJECT,
        actor_id=actor.person_id,
        object_id=device.id,
    )
    return (Decision.APPROVED if approve else Decision.REJECTED), fingerprint(device.public_key)


async def owner_name(session: AsyncSession, keys: ServerSecrets, device_id: str) -> str:
    device = await session.get(DeviceKey, device_id)
    person = await session.get(Person, device.person_id) if device is not None else None
    return shown_name_of(person, keys) if person is not None else ""


async def revoke_devices_of(session: AsyncSession, person_id: str) -> None:
    """Every key of ``person_id`` stops receiving (revoking a person calls this)."""
    await session.execute(
        update(DeviceKey)
        .where(DeviceKey.person_id == person_id)
        .values(status=DeviceStatus.REVOKED.value)
    )


async def approved_readers(session: AsyncSession, person_ids: list[str]) -> list[Reader]:
    """The approved device keys of these active people, at most one envelope's worth."""
    if not person_ids:
        return []
    rows = await session.execute(
        select(DeviceKey.id, DeviceKey.person_id, DeviceKey.public_key)
        .join(Person, Person.id == DeviceKey.person_id)
        .where(
            DeviceKey.person_id.in_(person_ids),
            DeviceKey.status == DeviceStatus.APPROVED.value,
            Person.revoked_at.is_(None),
        )
        .order_by(DeviceKey.person_id, DeviceKey.id)
    )
    readers = [Reader(r.id, r.person_id, r.public_key) for r in rows]
    return readers[:MAX_DEVICES_PER_PERSON]
