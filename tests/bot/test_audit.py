"""The audit trail as a coordinator relies on it: every staff action leaves one entry of ids,
and any change to an entry -- or, with the signed anchor, to the whole chain -- is found."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError

from bot.audit import (
    GENESIS,
    Anchor,
    AnchorError,
    anchor_of,
    anchor_problem,
    check_chain,
)
from bot.broadcasts import tag, untag
from bot.cases import HelpRequest, claim_case, open_case, resolve_case
from bot.core import Core
from bot.erasure import erase_member
from bot.people import actor_of, create_invite, redeem_invite
from bot.staff import revoke
from crypto.hashing import chain_link
from crypto.keyfile import generate_team_key
from crypto.keystore import unlock_team_signer
from crypto.signing import TeamSigner
from storage.models import AuditEntry, Person, Role
from tests.conftest import PASSPHRASE, bare_people, team_key_of


async def entries(core: Core) -> list[AuditEntry]:
    async with core.sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


async def verdict(core: Core) -> tuple[int, int | None, str]:
    """(entries found intact, first broken entry, why)."""
    async with core.sessions() as session:
        check = await check_chain(session)
    broken = check.broken
    return check.count, broken.seq if broken else None, broken.reason if broken else ""


async def invites(core: Core, count: int) -> None:
    async with core.sessions() as session, session.begin():
        for _ in range(count):
            await create_invite(session, core.secrets, Role.MEMBER)


async def rehash_from(core: Core, seq: int) -> None:
    """What someone with write access to the database can do: recompute every hash from
    entry ``seq`` on, so the chain holds again."""
    async with core.sessions() as session, session.begin():
        rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        prev = GENESIS
        for row in rows:
            if row.seq >= seq:
                fields = (
                    str(row.seq),
                    row.day.date().isoformat(),
                    row.actor_id or "",
                    row.action,
                    row.object_id or "",
                )
                row.prev_hash, row.hash = prev, chain_link(fields, prev)
            prev = row.hash


async def test_staff_actions_leave_ids_only_and_erasure_keeps_the_chain(core: Core) -> None:
    keys = core.secrets
    # Given an admin and a caseworker
    (admin,) = bare_people(1, Role.ADMIN)
    (worker,) = bare_people(1, Role.CASEWORKER, start=1)
    async with core.sessions() as session, session.begin():
        session.add_all([admin, worker])
    boss, caseworker = actor_of(admin, keys), actor_of(worker, keys)
    # When the caseworker invites a member who enrols, labels them, handles their request,
    # and the admin revokes the caseworker and erases the member
    async with core.sessions() as session, session.begin():
        made = await create_invite(session, keys, Role.MEMBER, created_by=worker.id)
    async with core.sessions() as session, session.begin():
        member = await redeem_invite(
            session, keys, made.token, telegram_user_id=777001, chat_id=777001, language="en"
        )
    assert member is not None
    async with core.sessions() as session, session.begin():
        assert await tag(session, keys, worker.id, member.person_id, "Yanji north gate")
        assert await untag(session, keys, worker.id, member.person_id, "yanji north gate")
        case_id = await open_case(session, core, member.person_id, HelpRequest("medical", "week"))
    assert case_id is not None
    async with core.sessions() as session, session.begin():
        await claim_case(session, keys, caseworker, case_id)
        await resolve_case(session, keys, caseworker, case_id)
    async with core.sessions() as session, session.begin():
        target = await session.get(Person, worker.id)
        assert target is not None
        await revoke(session, boss, target)
        assert await erase_member(session, keys, member.person_id, actor_id=admin.id)
    # ... and the chat upkeep deletes the erased member's row
    async with core.sessions() as session, session.begin():
        await session.execute(delete(Person).where(Person.id == member.person_id))

    # Then the trail says who did what to which row, in order, and nothing more
    rows = await entries(core)
    assert [(r.seq, r.actor_id, r.action, r.object_id) for r in rows] == [
        (1, worker.id, "invite", made.invite_id),
        (2, worker.id, "enrol", member.person_id),
        (3, worker.id, "tag", member.person_id),
        (4, worker.id, "untag", member.person_id),
        (5, worker.id, "claim", case_id),
        (6, worker.id, "resolve", case_id),
        (7, admin.id, "revoke", worker.id),
        (8, admin.id, "erase", member.person_id),
    ]
    assert {r.day.time().isoformat() for r in rows} == {"00:00:00"}
    # ... no label, no pseudonym anywhere in the table
    async with core.sessions() as session:
        raw = repr(list(await session.execute(text("SELECT * FROM audit"))))
    for secret in ("Yanji", "yanji", member.pseudonym, "medical"):
        assert secret not in raw
    # ... and the chain still holds with the member gone
    assert await verdict(core) == (8, None, "")


async def test_an_action_that_did_not_happen_leaves_no_entry(core: Core) -> None:
    keys = core.secrets
    (worker,) = bare_people(1, Role.CASEWORKER)
    (member,) = bare_people(1)
    async with core.sessions() as session, session.begin():
        session.add_all([worker, member])
    # A rolled-back transaction
    with pytest.raises(RuntimeError):
        async with core.sessions() as session, session.begin():
            await create_invite(session, keys, Role.MEMBER, created_by=worker.id)
            raise RuntimeError("the handler failed after the service")
    # Removing a label nobody has
    async with core.sessions() as session, session.begin():
        assert not await untag(session, keys, worker.id, member.id, "north")
    assert await entries(core) == []


@pytest.mark.parametrize(
    ("tampering", "broken_at", "reason"),
    [
        (update(AuditEntry).where(AuditEntry.seq == 3).values(action="resolve"), 3, "altered"),
        (update(AuditEntry).where(AuditEntry.seq == 3).values(actor_id="x" * 22), 3, "altered"),
        (update(AuditEntry).where(AuditEntry.seq == 3).values(prev_hash=GENESIS), 3, "altered"),
        (delete(AuditEntry).where(AuditEntry.seq == 3), 3, "missing"),
        (delete(AuditEntry).where(AuditEntry.seq == 1), 1, "missing"),
    ],
)
async def test_verify_names_the_first_entry_changed_by_hand(
    core: Core, tampering: object, broken_at: int, reason: str
) -> None:
    # Given five entries
    await invites(core, 5)
    assert await verdict(core) == (5, None, "")
    # When one is changed or deleted by hand
    async with core.sessions() as session, session.begin():
        await session.execute(tampering)  # type: ignore[call-overload]
    # Then the check names it, and says what happened
    count, seq, why = await verdict(core)
    assert (count, seq) == (broken_at - 1, broken_at)
    assert why.startswith(reason)


async def test_an_entry_rehashed_alone_breaks_the_link_after_it(core: Core) -> None:
    await invites(core, 5)
    rows = await entries(core)
    async with core.sessions() as session, session.begin():
        # Entry 3 gets entry 2's object, and a hash that matches its new fields
        fields = ("3", rows[2].day.date().isoformat(), "", "invite", rows[1].object_id or "")
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == 3)
            .values(object_id=rows[1].object_id, hash=chain_link(fields, rows[1].hash))
        )
    count, seq, why = await verdict(core)
    assert (count, seq) == (3, 4) and "does not follow entry 3" in why


def signer_of(data_dir: Path) -> TeamSigner:
    return unlock_team_signer(team_key_of(data_dir), PASSPHRASE)


async def test_the_signed_anchor_catches_a_chain_rewritten_whole(
    core: Core, data_dir: Path
) -> None:
    # Given five entries, anchored by the coordinator with the team key
    await invites(core, 5)
    signer = signer_of(data_dir)
    async with core.sessions() as session:
        anchor = anchor_of(await check_chain(session))
    assert anchor is not None and anchor.seq == 5
    anchor = Anchor.read(anchor.signed(signer), signer)
    # When someone with the database changes entry 2 and recomputes every hash after it
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(action="report", object_id=None)
        )
    await rehash_from(core, 2)
    # Then the chain alone looks whole, but it no longer matches the anchor
    assert await verdict(core) == (5, None, "")
    async with core.sessions() as session:
        problem = await anchor_problem(session, anchor)
    assert problem is not None and "entry 5 no longer has the hash" in problem
    # ... and new entries after the anchor do not hide it
    await invites(core, 2)
    async with core.sessions() as session:
        assert await anchor_problem(session, anchor) == problem


async def test_the_anchor_catches_entries_cut_from_the_end(core: Core, data_dir: Path) -> None:
    await invites(core, 5)
    async with core.sessions() as session:
        anchor = anchor_of(await check_chain(session))
    assert anchor is not None
    async with core.sessions() as session, session.begin():
        await session.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    assert await verdict(core) == (3, None, "")
    async with core.sessions() as session:
        problem = await anchor_problem(session, anchor)
    assert problem is not None and "entry 5" in problem and "missing" in problem


def test_an_anchor_file_opens_only_unchanged_and_with_its_own_team_key(data_dir: Path) -> None:
    signer = signer_of(data_dir)
    anchor = Anchor(12, bytes(range(32)), date(2026, 1, 2))
    signed = anchor.signed(signer)
    assert Anchor.read(signed, signer) == anchor
    # Another team's key
    with pytest.raises(AnchorError, match="signature"):
        Anchor.read(signed, TeamSigner(generate_team_key().private_key))
    # A changed number inside the signed statement
    document = signed.replace(b'"signed": "', b'"signed": "A', 1)
    with pytest.raises(AnchorError):
        Anchor.read(document, signer)
    with pytest.raises(AnchorError, match="damaged"):
        Anchor.read(b"not json", signer)


async def test_concurrent_appends_fail_loudly_rather_than_fork(core: Core) -> None:
    (worker,) = bare_people(1, Role.CASEWORKER)
    async with core.sessions() as session, session.begin():
        session.add(worker)

    async def one_invite() -> None:
        async with core.sessions() as session, session.begin():
            await create_invite(session, core.secrets, Role.MEMBER, created_by=worker.id)

    outcomes = await asyncio.gather(*(one_invite() for _ in range(12)), return_exceptions=True)
    made = sum(1 for outcome in outcomes if outcome is None)
    assert made >= 1
    # Each invite made has its entry, each failure left none, and the chain is one line
    assert await verdict(core) == (made, None, "")
    async with core.sessions() as session:
        kept = await session.scalar(text("SELECT count(*) FROM invites"))
    assert kept == made
    # ... and a writer that read a stale head cannot append a second entry with its number
    first = (await entries(core))[0]
    with pytest.raises(IntegrityError):
        async with core.sessions() as session, session.begin():
            session.add(
                AuditEntry(
                    seq=first.seq,
                    day=first.day,
                    action="invite",
                    prev_hash=GENESIS,
                    hash=first.hash,
                )
            )
