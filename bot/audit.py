"""The audit trail: an append-only, hash-chained record of what staff did.

Each entry says which day, who (a person id; None for the shell), what (an
:class:`AuditAction`) and on which row (a case, invite, broadcast or person id) -- never
what was written, a name, a label or a pseudonym. Entries are written by the service that
acts, in its transaction: an action rolled back leaves no entry, and no entry exists for an
action that did not happen.

Each entry's ``hash`` covers its fields and the hash of the entry before it, so changing,
removing or reordering an entry breaks every link after it (:func:`check_chain`). That
alone stops no one who can write the database: they can recompute every hash after their
change. What they cannot make is the *anchor*: a statement "entry N's hash is H", signed
with a key derived from the team private key (crypto.signing), which lives off the server.
``saferelay audit verify --key`` checks the last anchor and writes a new one; entries up to
an anchor can then no longer be rewritten unnoticed. See README, "Audit trail".
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crypto.errors import BadSignature
from crypto.hashing import CHAIN_LINK_SIZE, chain_link
from crypto.signing import TeamSigner
from storage.models import AuditEntry, day, utcnow

# What the first entry follows.
GENESIS = bytes(CHAIN_LINK_SIZE)
ANCHOR_FORMAT = "saferelay-audit-anchor"


class AuditAction(enum.StrEnum):
    INVITE = "invite"  # object: the invite
    ENROL = "enrol"  # actor: who made the invite; object: the newcomer
    REVOKE = "revoke"  # object: the person revoked
    CLAIM = "claim"  # object: the case
    RESOLVE = "resolve"  # object: the case
    BROADCAST = "broadcast"  # object: the broadcast
    CANCEL = "cancel"  # object: the broadcast stopped
    ERASE = "erase"  # object: the member erased (actor: an admin, or the member)
    TAG = "tag"  # object: the member (the label itself can name a place: not kept)
    UNTAG = "untag"  # object: the member
    REPORT = "report"  # a `saferelay report` run; no object
    DEVICE_APPROVE = "device_approve"  # object: the device key approved (Mini App)
    DEVICE_REJECT = "device_reject"  # object: the device key refused
    DEVICE_TRUST = "device_trust"  # object: an admin's phone certified by the team key (CLI)


def _link_of(
    seq: int,
    on: datetime,
    actor_id: str | None,
    action: str,
    object_id: str | None,
    prev_hash: bytes,
) -> bytes:
    fields = (str(seq), on.date().isoformat(), actor_id or "", action, object_id or "")
    return chain_link(fields, prev_hash)


def _expected_hash(entry: AuditEntry) -> bytes:
    return _link_of(
        entry.seq, entry.day, entry.actor_id, entry.action, entry.object_id, entry.prev_hash
    )


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor_id: str | None,
    object_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Append one entry to the chain, in the caller's transaction."""
    # The head is read after a flush, so inside the write: once this transaction has
    # written (every caller has, by now), SQLite holds its one write lock and no other
    # writer can append between this read and the insert. (A hash cannot be computed in
    # SQL, so INSERT ... SELECT is no option.) Should a transaction get here without having
    # written, or on a database that lets writers overlap, two writers may read the same
    # head: ``seq`` is the primary key, so the second entry N+1 is refused and its action
    # rolls back -- a race fails loudly, it never forks the chain.
    await session.flush()
    head = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).one_or_none()
    seq, prev_hash = (head.seq + 1, head.hash) if head is not None else (1, GENESIS)
    on = day(now or utcnow())
    session.add(
        AuditEntry(
            seq=seq,
            day=on,
            actor_id=actor_id,
            action=action.value,
            object_id=object_id,
            prev_hash=prev_hash,
            hash=_link_of(seq, on, actor_id, action.value, object_id, prev_hash),
        )
    )


@dataclass(frozen=True, slots=True)
class Break:
    """The first entry where the chain does not hold, and why, in words for the shell."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChainCheck:
    count: int
    head_seq: int  # 0 for an empty chain
    head_hash: bytes
    broken: Break | None


CHECK_BATCH = 1000


async def check_chain(session: AsyncSession) -> ChainCheck:
    """Walk the chain from its first entry; stop at the first that does not hold."""
    count, expected_seq, prev_hash = 0, 1, GENESIS
    entries = await session.stream_scalars(
        select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=CHECK_BATCH)
    )
    async for entry in entries:
        broken = _first_fault(entry, expected_seq, prev_hash)
        if broken is not None:
            return ChainCheck(count, expected_seq - 1, prev_hash, broken)
        count, expected_seq, prev_hash = count + 1, entry.seq + 1, entry.hash
    return ChainCheck(count, expected_seq - 1, prev_hash, None)


def _first_fault(entry: AuditEntry, expected_seq: int, prev_hash: bytes) -> Break | None:
    if entry.seq != expected_seq:
        return Break(expected_seq, "missing (deleted)")
    if entry.hash != _expected_hash(entry):
        return Break(entry.seq, "altered (its fields do not match its hash)")
    if entry.prev_hash != prev_hash:
        return Break(
            entry.seq,
            f"does not follow entry {entry.seq - 1} (entries reordered, or "
            f"entry {entry.seq - 1} replaced)",
        )
    return None


async def recent(session: AsyncSession, limit: int) -> Sequence[AuditEntry]:
    """The last ``limit`` entries, oldest first."""
    newest = await session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit))
    return list(reversed(list(newest)))


# --------------------------------------------------------------------------- the anchor


class AnchorError(Exception):
    """The anchor file is damaged, or was not signed with this team key."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """The statement "entry ``seq`` had hash ``head_hash``", signed on ``made_on``."""

    seq: int
    head_hash: bytes
    made_on: date

    def signed(self, signer: TeamSigner) -> bytes:
        """The anchor file's contents."""
        statement = json.dumps(
            {"seq": self.seq, "hash": self.head_hash.hex(), "made_on": self.made_on.isoformat()},
            sort_keys=True,
        ).encode("utf-8")
        document = {
            "format": ANCHOR_FORMAT,
            "v": 1,
            "signed": base64.b64encode(signer.sign(statement)).decode("ascii"),
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def read(cls, data: bytes, signer: TeamSigner) -> Anchor:
        """The anchor in a file written by :meth:`signed` with the same team key."""
        try:
            document = json.loads(data)
            if document["format"] != ANCHOR_FORMAT or document["v"] != 1:
                raise AnchorError("this is not a saferelay audit anchor")
            fields = json.loads(signer.open(base64.b64decode(document["signed"], validate=True)))
            return cls(
                int(fields["seq"]),
                bytes.fromhex(fields["hash"]),
                date.fromisoformat(fields["made_on"]),
            )
        except BadSignature as exc:
            raise AnchorError("its signature does not match this team key") from exc
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise AnchorError("it is damaged") from exc


def anchor_of(check: ChainCheck, today: date | None = None) -> Anchor | None:
    """An anchor for the head of a chain found intact; None for an empty chain."""
    if check.broken is not None or check.head_seq == 0:
        return None
    return Anchor(check.head_seq, check.head_hash, today or utcnow().date())


async def anchor_problem(session: AsyncSession, anchor: Anchor) -> str | None:
    """Why the chain no longer agrees with ``anchor``, or None when it does. Call after
    :func:`check_chain` found the chain intact: the stored hash is then the true one."""
    stored = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == anchor.seq))
    made_on = anchor.made_on.isoformat()
    if stored is None:
        return (
            f"entry {anchor.seq}, anchored on {made_on}, is missing: entries were deleted "
            "from the end of the chain"
        )
    if stored != anchor.head_hash:
        return (
            f"entry {anchor.seq} no longer has the hash anchored on {made_on}: entries up to "
            f"{anchor.seq} were rewritten and their hashes recomputed"
        )
    return None
