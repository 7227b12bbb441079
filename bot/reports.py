"""Reports that need the team private key: the organisation's survey figures per period.

Check-ins are opened in memory one at a time; nothing opened is written anywhere. What a
report keeps while it runs is, per period and member, a count and three sums -- enough for
each member to count once per period (their own mean), or each check-in once. Each plain
yearly run also saves the yearly sums (never an answer) for years with at least five
members, so the figures outlive the records once retention has purged them.

Small numbers stay hidden (README, "Reports"): a figure about fewer than five members is
never shown, nor a share that says what every one of a small group answered, nor a figure
for part of the members whose rest could be worked out from the whole.
"""

from __future__ import annotations

import enum
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import Audience, members_of
from bot.checkins import open_answers
from bot.retention import MIN_GROUP
from bot.schedules import read_plan
from crypto.boxes import TeamOpener
from crypto.keystore import ServerSecrets
from storage.models import Broadcast, BroadcastStatus, CheckIn, Schedule, Tally

# Check-ins read per round trip: memory stays flat however many years are kept.
STREAM_BATCH = 1000
ALL = "all"
# Where a member's prompts are set decides their region (bot/schedules.py keeps the zone
# under the server box: "China time" in the clear would mark someone in hiding).
REGIONS = {
    "china": frozenset({"Asia/Shanghai", "Asia/Urumqi", "Asia/Chongqing", "Asia/Harbin", "PRC"}),
    "korea": frozenset({"Asia/Seoul", "ROK"}),
}


class By(enum.StrEnum):
    YEAR = "year"
    QUARTER = "quarter"
    MONTH = "month"


def period_of(day: datetime | date, by: By) -> str:
    """Periods such as "2016", "2016-Q3" or "2016-08": sortable as text, readable in a table."""
    if by is By.YEAR:
        return f"{day.year}"
    if by is By.QUARTER:
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


@dataclass
class Sums:
    """Everything a period's figures are made from: counts and sums, never an answer.

    ``member_*`` add up each member's own mean over the period (each member once);
    the others add up check-ins (each check-in once). Sums subtract, so the rest of the
    members outside a part is the whole minus the part.
    """

    members: int = 0
    checkins: int = 0
    health_sum: float = 0.0
    health_sq: float = 0.0
    threat_yes: float = 0.0
    member_health_sum: float = 0.0
    member_health_sq: float = 0.0
    member_threat_sum: float = 0.0
    # False for a year saved before the member sums were kept: its per-member figures
    # are the per-check-in ones (marked in the table).
    per_member_known: bool = field(default=True, compare=False)

    def add_member(self, count: int, health: int, health_sq: int, yes: int) -> None:
        mean = health / count
        self.members += 1
        self.checkins += count
        self.health_sum += health
        self.health_sq += health_sq
        self.threat_yes += yes
        self.member_health_sum += mean
        self.member_health_sq += mean * mean
        self.member_threat_sum += yes / count

    def minus(self, part: Sums) -> Sums:
        values: dict[str, Any] = {name: getattr(self, name) - getattr(part, name) for name in SAVED}
        return Sums(**values)


# Tally names: the first four are those saved before the member sums were kept.
SAVED = {
    "members": "survey_members",
    "checkins": "survey_checkins",
    "health_sum": "survey_health_sum",
    "threat_yes": "survey_threat_yes",
    "health_sq": "survey_health_sq",
    "member_health_sum": "survey_member_health_sum",
    "member_health_sq": "survey_member_health_sq",
    "member_threat_sum": "survey_member_threat_sum",
}
OLD_SAVED = tuple(SAVED.values())[:4]


@dataclass(frozen=True)
class Rule:
    """When a figure may be shown. ``PRIVATE`` is for the team; ``PUBLIC`` for print."""

    min_members: int  # fewer answered: no figure at all for that period
    min_for_extremes: int  # fewer answered: no share of 0 % or 100 %
    mean_digits: int
    share_step: float  # shares are rounded to a multiple of this
    count_step: int  # member and check-in counts are rounded to a multiple of this


PRIVATE = Rule(
    min_members=MIN_GROUP, min_for_extremes=10, mean_digits=2, share_step=0.01, count_step=1
)
PUBLIC = Rule(min_members=10, min_for_extremes=20, mean_digits=1, share_step=0.05, count_step=5)


@dataclass(frozen=True)
class Row:
    """One line of the report. None: hidden by the small-number rule (or nothing to show)."""

    period: str
    part: str
    members: int | None
    checkins: int | None
    mean_health: float | None
    health_spread: float | None
    threat_share: float | None
    retreat_people: int | None
    estimated: bool = False


@dataclass(frozen=True)
class Request:
    by: By = By.YEAR
    since: date | None = None
    until: date | None = None  # exclusive
    per_checkin: bool = False
    rule: Rule = PRIVATE


Progress = Callable[[int, int], None]
# Per period, per member: [check-ins, health sum, sum of squared health, threat yes].
PerMember = dict[str, dict[str, list[int]]]


# --------------------------------------------------------------------------- reading


async def collect(
    session: AsyncSession,
    opener: TeamOpener,
    request: Request,
    *,
    progress: Progress | None = None,
) -> PerMember:
    """Open every check-in in range once: per period, per member, their four sums."""
    where = _within(CheckIn.created_at.expression, request)
    counted = select(func.count()).select_from(CheckIn).where(*where)
    total: int = await session.scalar(counted) or 0
    per_member: PerMember = defaultdict(dict)
    # Only the columns a report needs, in batches, in no particular order (sums do not
    # depend on it): no row objects, and no sort of the whole table.
    checkins = await session.stream(
        select(CheckIn.id, CheckIn.person_id, CheckIn.created_at, CheckIn.sealed)
        .where(*where)
        .execution_options(yield_per=STREAM_BATCH)
    )
    done = 0
    async for batch in checkins.partitions():
        for checkin_id, person_id, created_at, sealed in batch:
            answers = open_answers(opener, checkin_id, sealed)
            members = per_member[period_of(created_at, request.by)]
            tally = members.get(person_id)
            if tally is None:
                tally = members[person_id] = [0, 0, 0, 0]
            tally[0] += 1
            tally[1] += answers.health
            tally[2] += answers.health * answers.health
            tally[3] += answers.threat
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return per_member


def _within(when: ColumnElement[datetime], request: Request) -> list[ColumnElement[bool]]:
    """The conditions for ``when`` to fall in the requested dates (``until`` excluded)."""
    where: list[ColumnElement[bool]] = []
    if request.since is not None:
        where.append(when >= _midnight(request.since))
    if request.until is not None:
        where.append(when < _midnight(request.until))
    return where


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def sums_of(
    per_member: PerMember,
    only: frozenset[str] | None = None,
) -> dict[str, Sums]:
    """Per period, the sums over all members (or only those in ``only``)."""
    result: dict[str, Sums] = {}
    for period, members in per_member.items():
        sums = result[period] = Sums()
        for person, tally in members.items():
            if only is None or person in only:
                sums.add_member(*tally)
    return result


async def members_labelled(
    session: AsyncSession, keys: ServerSecrets, label: str
) -> frozenset[str]:
    """Members with a group label, matched by its keyed hash as broadcasts match them."""
    return frozenset(await session.scalars(members_of(keys, Audience(labels=(label,)))))


async def members_in(session: AsyncSession, keys: ServerSecrets, region: str) -> frozenset[str]:
    """Members whose prompts are set to a time zone of ``region`` (opened with the server
    key, in memory): where they are now, not where they were at each check-in."""
    zones = REGIONS[region]
    found = set()
    for schedule in await session.scalars(select(Schedule)):
        if read_plan(keys, schedule).zone in zones:
            found.add(schedule.person_id)
    return frozenset(found)


async def retreat_attendance(session: AsyncSession, request: Request) -> dict[str, int]:
    """Per period, the people expected at notices that asked for an RSVP (a notice with an
    RSVP is an event; the head count includes children), by the event's date."""
    when = func.coalesce(Broadcast.event_at, Broadcast.send_at)
    query = select(when, Broadcast.people).where(
        Broadcast.rsvp.is_(True),
        Broadcast.status != BroadcastStatus.CANCELLED.value,
        *_within(when, request),
    )
    people: dict[str, int] = defaultdict(int)
    for at, count in await session.execute(query):
        people[period_of(at, request.by)] += count
    return dict(people)


# --------------------------------------------------------------------------- saved years


async def saved_years(session: AsyncSession) -> dict[str, Sums]:
    """The yearly sums an earlier run saved (years with at least five members)."""
    values: dict[str, dict[str, float]] = defaultdict(dict)
    for tally in await session.scalars(select(Tally).where(Tally.name.in_(SAVED.values()))):
        if tally.period.isdigit():
            values[tally.period][tally.name] = tally.value
    return {
        year: _from_saved(v)
        for year, v in values.items()
        if all(name in v for name in OLD_SAVED) and v["survey_checkins"] > 0
    }


def _from_saved(values: dict[str, float]) -> Sums:
    if all(name in values for name in SAVED.values()):
        saved: dict[str, Any] = {f: values[name] for f, name in SAVED.items()}
        return Sums(
            **saved | {"members": int(saved["members"]), "checkins": int(saved["checkins"])}
        )
    # Saved before member sums were kept: each check-in's figure stands in for the member's.
    members, checkins = int(values["survey_members"]), int(values["survey_checkins"])
    health, yes = values["survey_health_sum"], values["survey_threat_yes"]
    return Sums(
        members=members,
        checkins=checkins,
        health_sum=health,
        threat_yes=yes,
        member_health_sum=health / checkins * members,
        member_threat_sum=yes / checkins * members,
        per_member_known=False,
    )


def with_saved(live: dict[str, Sums], saved: dict[str, Sums], request: Request) -> dict[str, Sums]:
    """Whichever saw more check-ins per whole year in range: records purged since a save
    are only in the save."""
    if request.by is not By.YEAR:
        return live
    merged = dict(live)
    for year, sums in saved.items():
        whole = (request.since is None or request.since <= date(int(year), 1, 1)) and (
            request.until is None or date(int(year) + 1, 1, 1) <= request.until
        )
        if whole and (year not in live or sums.checkins > live[year].checkins):
            merged[year] = sums
    return merged


async def save_yearly(session: AsyncSession, years: dict[str, Sums]) -> None:
    """Keep the sums of years with at least five members (never smaller groups)."""
    for year, sums in years.items():
        if sums.members < MIN_GROUP or not sums.per_member_known:
            continue
        for attribute, name in SAVED.items():
            value = float(getattr(sums, attribute))
            tally = await session.get(Tally, (year, name))
            if tally is None:
                session.add(Tally(period=year, name=name, value=value))
            else:
                tally.value = value


# --------------------------------------------------------------------------- figures


def figures(
    period: str,
    part: str,
    sums: Sums,
    rest: Sums | None,
    request: Request,
    retreat: int | None = None,
) -> Row:
    """A row with every figure the small-number rule allows. For part of the members,
    each figure is shown only where the same figure for the rest would be shown too (or
    there is no rest): else the whole minus the part would give it away."""
    rule = request.rule
    people = _shown_count(retreat, rule)
    if not _enough(sums, rule) or (rest is not None and rest.members and not _enough(rest, rule)):
        return Row(period, part, None, None, None, None, None, people)
    mean, spread, share = _raw(sums, request.per_checkin)
    rest_share = None if rest is None or not rest.members else _raw(rest, request.per_checkin)[2]
    share_ok = _share_shown(share, sums.members, rule) and (
        rest_share is None or _share_shown(rest_share, rest.members if rest else 0, rule)
    )
    return Row(
        period,
        part,
        _round_count(sums.members, rule),
        _round_count(sums.checkins, rule),
        round(mean, rule.mean_digits),
        round(spread, rule.mean_digits),
        _round_share(share, rule) if share_ok else None,
        people,
        estimated=not (request.per_checkin or sums.per_member_known),
    )


def _raw(sums: Sums, per_checkin: bool) -> tuple[float, float, float]:
    if per_checkin:
        n, total, squares, share = sums.checkins, sums.health_sum, sums.health_sq, sums.threat_yes
    else:
        n, total, squares = sums.members, sums.member_health_sum, sums.member_health_sq
        share = sums.member_threat_sum
    mean = total / n
    # The spread is the standard deviation of what is averaged (members' means, or answers).
    spread = math.sqrt(max(0.0, squares / n - mean * mean))
    return mean, spread, share / n


def _enough(sums: Sums, rule: Rule) -> bool:
    return sums.members >= rule.min_members


def _share_shown(share: float, members: int, rule: Rule) -> bool:
    """0 % or 100 % of a small group says what each one of them answered."""
    rounded = _round_share(share, rule)
    return members >= rule.min_for_extremes or 0.0 < rounded < 1.0


def _round_share(share: float, rule: Rule) -> float:
    steps = round(share / rule.share_step)
    return round(steps * rule.share_step, 4)


def _round_count(count: int, rule: Rule) -> int:
    return int(round(count / rule.count_step) * rule.count_step)


def _shown_count(people: int | None, rule: Rule) -> int | None:
    if people is None or people < rule.min_members:
        return None
    return _round_count(people, rule)


def report_rows(
    whole: dict[str, Sums],
    parts: dict[str, dict[str, Sums]],
    retreats: dict[str, int],
    request: Request,
) -> list[Row]:
    """The report: per period, the whole (with retreats) and then each part."""
    rows: list[Row] = []
    for period in sorted(set(whole) | set(retreats)):
        sums = whole.get(period)
        if sums is None or not sums.members:
            rows.append(figures(period, ALL, Sums(), None, request, retreats.get(period)))
            continue
        rows.append(figures(period, ALL, sums, None, request, retreats.get(period)))
        for name, by_period in parts.items():
            part = by_period.get(period, Sums())
            rows.append(figures(period, name, part, sums.minus(part), request))
    return rows


# --------------------------------------------------------------------------- progress


def progress_line(stream: TextIO = sys.stderr) -> Progress | None:
    """A line on the terminal updated in place while records open; nothing when stderr is
    not a terminal (a log or a pipe should not fill with carriage returns)."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        end = "\n" if done >= total else ""
        stream.write(f"\ropening sealed check-ins [{bar:<30}] {done:,}/{total:,}{end}")
        stream.flush()

    return show
