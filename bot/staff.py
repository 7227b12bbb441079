"""Staff administration: who may invite whom, and revoking people."""

from __future__ import annotations

import enum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AuditAction, record
from bot.chat import clear_all_now
from bot.devices import revoke_devices_of
from bot.people import Actor, expire_invites_of
from storage import outbox
from storage.models import (
    Case,
    CaseStatus,
    ChatMessage,
    Label,
    Person,
    Role,
    Schedule,
    day,
    utcnow,
)


def may_invite(actor: Actor, role: Role) -> bool:
    """Caseworkers invite members; only admins invite staff."""
    if role is Role.MEMBER:
        return actor.is_staff
    return actor.is_admin


class RevokeOutcome(enum.Enum):
    DONE = "done"
    SELF = "self"
    REFUSED = "refused"


async def revoke(session: AsyncSession, actor: Actor, target: Person) -> RevokeOutcome:
    """Remove someone at once: from now on they are a stranger and receive nothing.

    Everything they made or hold is cut: their Mini App device keys are revoked, every
    invite they made is deleted (with its link message), nothing more is queued for them,
    and everything still in their chat is due for deletion now -- the chat upkeep clears it
    and their command menu even though they are revoked. A caseworker's members lose their
    caseworker (their alerts go to everyone); the cases they had claimed, and their
    members' unclaimed ones, are re-alerted to everyone at the next sweep.
    """
    if not actor.is_admin:
        return RevokeOutcome.REFUSED
    if target.id == actor.person_id:
        return RevokeOutcome.SELF
    now = utcnow()
    target.revoked_at = day(now)
    await outbox.drop_for_recipient(session, target.id)
    await expire_invites_of(session, target.id)
    await clear_all_now(session, target.id)
    # Their Mini App keys receive nothing more, from this transaction on.
    await revoke_devices_of(session, target.id)
    # No more prompts or notices; their window, zone and group labels are not kept.
    for model, column in ((Schedule, Schedule.person_id), (Label, Label.person_id)):
        await session.execute(delete(model).where(column == target.id))
    if target.role != Role.MEMBER.value:
        # Their members' unclaimed requests may have been alerted to them alone.
        theirs = select(Person.id).where(Person.caseworker_id == target.id)
        await session.execute(
            update(Case)
            .where(Case.status == CaseStatus.OPEN.value, Case.member_id.in_(theirs))
            .values(escalate_at=now)
        )
        await session.execute(
            update(Person).where(Person.caseworker_id == target.id).values(caseworker_id=None)
        )
        await session.execute(
            update(Case)
            .where(Case.claimed_by == target.id, Case.status == CaseStatus.CLAIMED.value)
            .values(status=CaseStatus.OPEN.value, claimed_by=None, escalate_at=now)
        )
        # Their copies stop counting as "told about it" and stop routing replies.
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.person_id == target.id)
            .values(about_member_id=None, case_id=None)
        )
    await record(session, AuditAction.REVOKE, actor_id=actor.person_id, object_id=target.id)
    return RevokeOutcome.DONE
