"""Who is told about a member, and the alert texts (in each recipient's language)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.chat import About
from bot.delivery import (
    PRIORITY_ESCALATION,
    PRIORITY_NORMAL,
    PRIORITY_URGENT,
    WEBAPP_BUTTON,
    Outgoing,
    enqueue,
)
from bot.i18n import day_text, t

if TYPE_CHECKING:
    from bot.cases import HelpRequest
from bot.people import active_staff, member_and_caseworker
from crypto.keystore import ServerSecrets
from storage.models import Person


async def recipients_for(
    session: AsyncSession, member_id: str, *, everyone: bool = False
) -> tuple[Person, list[Person]] | None:
    """The active member and who hears from them: their active caseworker, or every
    caseworker and admin if there is none (or if ``everyone`` is asked for, as for a
    "right now" request). None if the member is no longer active."""
    found = await member_and_caseworker(session, member_id)
    if found is None:
        return None
    member, caseworker = found
    if caseworker is not None and not everyone:
        return member, [caseworker]
    return member, await active_staff(session)


def case_buttons(
    language: str, case_id: str, *, claimable: bool = True
) -> list[list[tuple[str, str]]]:
    row = [
        (t(language, "btn_reply"), "rp"),
        (t(language, "btn_resolve"), f"case:resolve:{case_id}"),
    ]
    if claimable:
        row.insert(0, (t(language, "btn_claim"), f"case:claim:{case_id}"))
    return [row]


def reply_button(language: str) -> list[list[tuple[str, str]]]:
    return [[(t(language, "btn_reply"), "rp")]]


def case_alert_text(
    language: str,
    pseudonym: str,
    request: HelpRequest,
    *,
    escalation: int = 0,
    minutes_open: int = 0,
) -> str:
    lines = []
    if escalation:
        lines.append(t(language, "alert_escalated", minutes=minutes_open))
    if request.welfare:
        lines.append(welfare_text(language, pseudonym, request))
        return "\n".join(lines)
    if request.duress:
        lines.append(t(language, "alert_duress", pseudonym=pseudonym))
    else:
        lines.append(
            t(
                language,
                "alert_case",
                pseudonym=pseudonym,
                category=t(language, f"cat_{request.category}"),
                urgency=t(language, f"urg_{request.urgency}"),
            )
        )
    if request.text:
        lines.append(request.text)
    return "\n".join(lines)


def welfare_text(language: str, pseudonym: str, request: HelpRequest) -> str:
    """A welfare alert (bot/welfare.py): who, and since when nothing was heard."""
    if request.category == "unreachable":
        return t(language, "alert_unreachable", pseudonym=pseudonym)
    if request.text:
        since = day_text(language, date.fromisoformat(request.text))
        return t(language, "alert_silent", pseudonym=pseudonym, since=since)
    return t(language, "alert_silent_never", pseudonym=pseudonym)


def alert_case(
    session: AsyncSession,
    keys: ServerSecrets,
    recipients: list[Person],
    member: Person,
    case_id: str,
    request: HelpRequest,
    *,
    escalation: int = 0,
    minutes_open: int = 0,
    urgent: bool | None = None,
    open_url: str | None = None,
) -> None:
    """Queue the alert for each recipient. A re-alert (``escalation``) goes after first
    alerts and replaces any re-alert of the same request still waiting for that reader.
    ``open_url``: the request was sealed on the member's phone, and each reader gets an
    Open button to their own page (the Mini App), where their phone opens it."""
    urgent = request.urgent if urgent is None else urgent
    if escalation:
        priority, collapse = PRIORITY_ESCALATION, f"esc:{case_id}"
    else:
        priority, collapse = (PRIORITY_URGENT if urgent else PRIORITY_NORMAL), None
    for staff in recipients:
        buttons = case_buttons(staff.language, case_id)
        if open_url is not None:
            url = f"{WEBAPP_BUTTON}{open_url}staff.{staff.language}.html"
            buttons.insert(0, [(t(staff.language, "btn_open"), url)])
        body = case_alert_text(
            staff.language,
            member.pseudonym,
            request,
            escalation=escalation,
            minutes_open=minutes_open,
        )
        enqueue(
            session,
            keys,
            staff.id,
            Outgoing(
                body,
                buttons,
                link=About(member.id, case_id, "alert"),
                priority=priority,
            ),
            collapse_key=collapse,
        )
