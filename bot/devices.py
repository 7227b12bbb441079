"""Mini App device keys: register, certify, revoke, and who a record is sealed to.

A staff device's key is a reader of members' sealed words, so it receives nothing until it
carries a certificate that chains to the team's verify key (crypto/devices.py), which the
pages have pinned and the server cannot sign with:

- an admin's phone is certified offline by the team key (``saferelay devices trust``, run
  by the coordinator with the team key file, after comparing the fingerprint the phone
  shows): it becomes a *certifier*;
- every other staff phone is approved in a certifier's page: the admin compares the
  fingerprint shown on the new phone with the one their own page computes from the
  registered keys, and their phone signs the certificate. The server checks it too before
  storing it (defence in depth) and records the approval in the audit trail.

The chat only says that a device waits, with an Open button to the admin's page: the
fingerprint a person compares is computed on a phone, never taken from the server's text.
A server (or anyone who can write to the database) that marked its own key approved, or
registered one, gains nothing: no page and no server check accepts a key without a chain.
Revocation, unlike approval, is the server's word alone (README, "End to end").

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
from bot.delivery import WEBAPP_BUTTON, Outgoing, enqueue
from bot.i18n import t
from bot.people import Actor, active_person, active_staff, shown_name_of
from crypto.boxes import MAX_RECIPIENTS, Recipient, key_id
from crypto.devices import (
    PUBLIC_KEY_SIZE,
    SIGNING_KEY_SIZE,
    Certified,
    CertRole,
    DeviceCert,
    check_chain,
    fingerprint,
)
from crypto.errors import BadSignature, InvalidKey
from crypto.keystore import ServerSecrets
from crypto.signing import TeamSigner
from storage.models import DeviceKey, DeviceStatus, Person, Role, new_id

# A caseworker with more phones than this is unusual; the cap keeps a record's recipients
# (team key + these) within one envelope's limit and Telegram's sendData size.
MAX_DEVICES_PER_PERSON = MAX_RECIPIENTS - 1
CERT_ROLES = {Role.ADMIN.value: CertRole.ADMIN, Role.CASEWORKER.value: CertRole.CASEWORKER}


class Registered(enum.Enum):
    PENDING = "pending"  # a staff key, waiting for a certificate
    APPROVED = "approved"  # a member key, or a staff key whose certificate chain holds
    TAKEN = "taken"  # this public key belongs to someone else
    FULL = "full"  # too many devices already
    REFUSED = "refused"  # a revoked key may not come back


@dataclass(frozen=True, slots=True)
class Reader:
    """A device key a record is sealed to, with the certificates a page checks first (none
    for a member's own phone)."""

    device_id: str
    person_id: str
    public_key: bytes
    certified: Certified | None = None
    issuer: Certified | None = None

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.public_key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)


def _certified(device: DeviceKey, role: str) -> Certified | None:
    """The certificate stored with ``device`` as a checkable object (None if it has none)."""
    cert_role = CERT_ROLES.get(role)
    if (
        cert_role is None
        or device.signing_key is None
        or device.cert_issuer is None
        or device.cert_signature is None
    ):
        return None
    try:
        cert = DeviceCert(
            cert_role, device.id, device.public_key, device.signing_key, device.cert_issuer
        )
    except InvalidKey:
        return None
    return Certified(cert, device.cert_signature)


async def _issuer(session: AsyncSession, issuer_key: bytes) -> Certified | None:
    """The certifier whose signing key is ``issuer_key``: an admin's device, whose own
    certificate :func:`check_chain` checks against the team key.

    Revoked or not: the phones an admin approved stay approved when that admin leaves (each
    was compared and signed while the admin was trusted; stranding them would make every
    caseworker compare fingerprints again). Revoking an admin stops their *own* phone at
    once, and with it any new approval (the API needs a live admin and a live certifier);
    to stop a phone they approved, revoke its owner."""
    row = (
        await session.execute(
            select(DeviceKey, Person.role)
            .join(Person, Person.id == DeviceKey.person_id)
            .where(DeviceKey.signing_key == issuer_key, Person.role == Role.ADMIN.value)
        )
    ).first()
    return _certified(row[0], row[1]) if row is not None else None


async def chain_of(
    session: AsyncSession, anchor: bytes | None, device: DeviceKey, role: str
) -> tuple[Certified, Certified | None] | None:
    """``device``'s certificate and its issuer's, if the chain holds from ``anchor``."""
    certified = _certified(device, role)
    if anchor is None or certified is None or device.status != DeviceStatus.APPROVED.value:
        return None
    issuer = (
        None if certified.cert.issuer == anchor else await _issuer(session, certified.cert.issuer)
    )
    try:
        check_chain(anchor, certified, issuer)
    except BadSignature:
        return None
    return certified, issuer


def _is_certifier(anchor: bytes, chain: tuple[Certified, Certified | None] | None) -> bool:
    return (
        chain is not None
        and chain[0].cert.issuer == anchor
        and chain[0].cert.role is CertRole.ADMIN
    )


def _waiting_notice(language: str, webapp_url: str) -> Outgoing:
    button = (t(language, "btn_open"), f"{WEBAPP_BUTTON}{webapp_url}staff.{language}.html")
    return Outgoing(t(language, "device_waiting"), [[button]])


async def _tell_admins(session: AsyncSession, keys: ServerSecrets, webapp_url: str) -> None:
    """A neutral line with an Open button to each admin's page, where the fingerprint is
    computed and the approval signed: nothing to compare in the chat, which the server
    writes."""
    for admin in await active_staff(session):
        if admin.role == Role.ADMIN.value:
            enqueue(session, keys, admin.id, _waiting_notice(admin.language, webapp_url))


@dataclass(frozen=True, slots=True)
class Registration:
    outcome: Registered
    device_id: str = ""
    chain: tuple[Certified, Certified | None] | None = None
    certifier: bool = False


async def register_device(
    session: AsyncSession,
    keys: ServerSecrets,
    actor: Actor,
    public_key: bytes,
    signing_key: bytes | None = None,
    *,
    webapp_url: str = "",
) -> Registration:
    """Register ``actor``'s device (idempotent): a member's X25519 key, or a staff phone's
    X25519 and Ed25519 keys; tell every admin when a staff key waits for approval."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError("a device public key is 32 bytes")
    if not actor.is_member and (signing_key is None or len(signing_key) != SIGNING_KEY_SIZE):
        raise ValueError("a staff device registers a 32-byte signing key too")
    if actor.is_member:
        signing_key = None
    existing = await session.scalar(select(DeviceKey).where(DeviceKey.public_key == public_key))
    if existing is not None:
        return await _registered_again(session, keys, actor, existing, signing_key, webapp_url)
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
            return Registration(Registered.FULL)
    device = DeviceKey(
        id=new_id(),
        person_id=actor.person_id,
        public_key=public_key,
        signing_key=signing_key,
        status=(DeviceStatus.APPROVED if actor.is_member else DeviceStatus.PENDING).value,
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError:
        return Registration(Registered.TAKEN)
    if actor.is_member:
        return Registration(Registered.APPROVED, device.id)
    await _tell_admins(session, keys, webapp_url)
    return Registration(Registered.PENDING, device.id)


async def _registered_again(
    session: AsyncSession,
    keys: ServerSecrets,
    actor: Actor,
    device: DeviceKey,
    signing_key: bytes | None,
    webapp_url: str,
) -> Registration:
    if device.person_id != actor.person_id:
        return Registration(Registered.TAKEN)
    if device.status == DeviceStatus.REVOKED.value:
        return Registration(Registered.REFUSED, device.id)
    if actor.is_member:
        return Registration(Registered(device.status), device.id)
    if device.signing_key is None:
        # A key registered before devices had signing keys (migration 0011 sent it back to
        # pending): it takes the one its page now sends, and the admins are told again.
        if await session.scalar(select(DeviceKey.id).where(DeviceKey.signing_key == signing_key)):
            return Registration(Registered.TAKEN)
        device.signing_key = signing_key
        await _tell_admins(session, keys, webapp_url)
    elif device.signing_key != signing_key:
        return Registration(Registered.REFUSED, device.id)
    anchor = keys.team_verify_key
    chain = await chain_of(session, anchor, device, actor.role.value)
    return Registration(
        Registered.APPROVED if chain is not None else Registered.PENDING,
        device.id,
        chain,
        anchor is not None and _is_certifier(anchor, chain),
    )


class Decision(enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    GONE = "gone"  # no such pending key, or its owner is no longer active
    REFUSED = "refused"  # not an admin, or not from a certifier phone
    BAD_SIGNATURE = "bad_signature"  # the certificate does not check


@dataclass(frozen=True, slots=True)
class Pending:
    """A staff device waiting for approval, as an admin's page lists it (the page computes
    the fingerprint from the keys itself)."""

    device_id: str
    name: str
    role: str
    public_key: bytes
    signing_key: bytes


async def pending_devices(
    session: AsyncSession, keys: ServerSecrets, actor: Actor
) -> list[Pending]:
    """The staff device keys waiting for a certificate, for an admin's page."""
    if not actor.is_admin:
        return []
    rows = await session.execute(
        select(DeviceKey, Person)
        .join(Person, Person.id == DeviceKey.person_id)
        .where(
            DeviceKey.status == DeviceStatus.PENDING.value,
            DeviceKey.signing_key.is_not(None),
            Person.revoked_at.is_(None),
            Person.role != Role.MEMBER.value,
        )
        .order_by(DeviceKey.created_at, DeviceKey.id)
        .limit(50)
    )
    return [
        Pending(d.id, shown_name_of(p, keys), p.role, d.public_key, d.signing_key)
        for d, p in rows
        if d.signing_key is not None
    ]


async def _pending_of_active_staff(
    session: AsyncSession, device_id: str
) -> tuple[DeviceKey, Person] | None:
    device = await session.scalar(
        select(DeviceKey)
        .where(DeviceKey.id == device_id, DeviceKey.status == DeviceStatus.PENDING.value)
        .with_for_update()
    )
    owner = await active_person(session, device.person_id) if device is not None else None
    if device is None or owner is None or owner.role == Role.MEMBER.value:
        return None
    return device, owner


async def approve_device(
    session: AsyncSession,
    keys: ServerSecrets,
    actor: Actor,
    caller_key: bytes,
    device_id: str,
    signature: bytes,
) -> Decision:
    """Store a certificate an admin's phone signed for a pending staff device, after
    checking here what every page will check: the caller's phone is a certifier (certified
    by the team key) and its signature covers this device's role, id and keys."""
    anchor = keys.team_verify_key
    if not actor.is_admin or anchor is None:
        return Decision.REFUSED
    caller = await session.scalar(
        select(DeviceKey).where(
            DeviceKey.public_key == caller_key, DeviceKey.person_id == actor.person_id
        )
    )
    chain = await chain_of(session, anchor, caller, actor.role.value) if caller else None
    if caller is None or caller.signing_key is None or not _is_certifier(anchor, chain):
        return Decision.REFUSED
    found = await _pending_of_active_staff(session, device_id)
    if found is None:
        return Decision.GONE
    device, owner = found
    if device.signing_key is None:
        return Decision.GONE
    try:
        cert = DeviceCert(
            CERT_ROLES[owner.role],
            device.id,
            device.public_key,
            device.signing_key,
            caller.signing_key,
        )
        check_chain(anchor, Certified(cert, signature), chain[0] if chain else None)
    except (BadSignature, InvalidKey):
        return Decision.BAD_SIGNATURE
    device.cert_issuer, device.cert_signature = caller.signing_key, signature
    device.status = DeviceStatus.APPROVED.value
    device.approved_by = actor.person_id
    await record(session, AuditAction.DEVICE_APPROVE, actor_id=actor.person_id, object_id=device.id)
    return Decision.APPROVED


async def reject_device(session: AsyncSession, actor: Actor, device_id: str) -> Decision:
    """An admin refuses a pending staff key: it never comes back (its page must make a new
    one)."""
    if not actor.is_admin:
        return Decision.REFUSED
    found = await _pending_of_active_staff(session, device_id)
    if found is None:
        return Decision.GONE
    device, _owner = found
    device.status = DeviceStatus.REVOKED.value
    device.approved_by = None
    await record(session, AuditAction.DEVICE_REJECT, actor_id=actor.person_id, object_id=device.id)
    return Decision.REJECTED


@dataclass(frozen=True, slots=True)
class AdminDevice:
    """An admin's phone as ``saferelay devices list`` / ``trust`` shows it."""

    device_id: str
    name: str
    pseudonym: str
    role: str
    status: str
    fingerprint: str
    trust: str  # "team" (a certifier), "admin" (a reader, approved by an admin's phone), ""


async def staff_devices(session: AsyncSession, keys: ServerSecrets) -> list[AdminDevice]:
    """Every live staff device, with whether its certificate chain holds and from whom."""
    anchor = keys.team_verify_key
    rows = await session.execute(
        select(DeviceKey, Person)
        .join(Person, Person.id == DeviceKey.person_id)
        .where(
            DeviceKey.status != DeviceStatus.REVOKED.value,
            Person.revoked_at.is_(None),
            Person.role != Role.MEMBER.value,
        )
        .order_by(Person.role, DeviceKey.created_at, DeviceKey.id)
    )
    shown = []
    for device, person in rows:
        chain = await chain_of(session, anchor, device, person.role)
        trust = ""
        if chain is not None and anchor is not None:
            trust = "team" if _is_certifier(anchor, chain) else "admin"
        shown.append(
            AdminDevice(
                device.id,
                shown_name_of(person, keys),
                person.pseudonym,
                person.role,
                device.status,
                fingerprint(device.public_key, device.signing_key or b""),
                trust,
            )
        )
    return shown


async def trust_admin_device(
    session: AsyncSession, keys: ServerSecrets, signer: TeamSigner, device_id: str
) -> bool:
    """Certify an admin's phone with the team key (offline, by the coordinator): it becomes
    a certifier. False if it is not a live admin device with a signing key."""
    device = await session.scalar(
        select(DeviceKey).where(
            DeviceKey.id == device_id, DeviceKey.status != DeviceStatus.REVOKED.value
        )
    )
    owner = await active_person(session, device.person_id) if device is not None else None
    if (
        device is None
        or owner is None
        or owner.role != Role.ADMIN.value
        or device.signing_key is None
    ):
        return False
    cert = DeviceCert(
        CertRole.ADMIN, device.id, device.public_key, device.signing_key, signer.verify_key
    )
    device.cert_issuer, device.cert_signature = signer.verify_key, cert.sign(signer.signing_key)
    device.status = DeviceStatus.APPROVED.value
    device.approved_by = None
    await record(session, AuditAction.DEVICE_TRUST, actor_id=None, object_id=device.id)
    return True


async def revoke_devices_of(session: AsyncSession, person_id: str) -> None:
    """Every key of ``person_id`` stops receiving (revoking a person calls this). This, unlike
    approval, is the server's word alone: see the README ("End to end")."""
    await session.execute(
        update(DeviceKey)
        .where(DeviceKey.person_id == person_id)
        .values(status=DeviceStatus.REVOKED.value)
    )


async def approved_readers(
    session: AsyncSession, anchor: bytes | None, person_ids: list[str]
) -> list[Reader]:
    """The device keys of these active people that may receive, at most one envelope's
    worth: a member's own phone (approved at registration), and staff phones whose
    certificate chain holds from ``anchor`` (none while no anchor is known)."""
    if not person_ids:
        return []
    rows = await session.execute(
        select(DeviceKey, Person.role)
        .join(Person, Person.id == DeviceKey.person_id)
        .where(
            DeviceKey.person_id.in_(person_ids),
            DeviceKey.status == DeviceStatus.APPROVED.value,
            Person.revoked_at.is_(None),
        )
        .order_by(DeviceKey.person_id, DeviceKey.id)
    )
    readers = []
    for device, role in rows:
        if role == Role.MEMBER.value:
            readers.append(Reader(device.id, device.person_id, device.public_key))
            continue
        chain = await chain_of(session, anchor, device, role)
        if chain is not None:
            readers.append(Reader(device.id, device.person_id, device.public_key, *chain))
    return readers[:MAX_DEVICES_PER_PERSON]
