"""When a member is next asked how they are: the arithmetic of wellbeing prompts (issue 10).

Pure functions: no database, no Telegram, no clock, no global random state. Whatever needs
"now" takes it as a parameter and every random draw comes from the ``rng`` passed in, so the
sweep (and the tests) control both. In production pass ``random.SystemRandom()``: the jitter
exists so that nobody watching a member's phone can learn when the bot speaks, and a seeded
Mersenne Twister can be predicted from its past outputs.

Vocabulary
    *Window*: a local wall-clock range such as 19:00-21:00 (:class:`Window`). A window
    belongs to the local date on which it opens, its *window day*: in 22:00-02:00, 01:30 on
    5 March lies in 4 March's window.
    *Cadence*: how many window days lie between two prompts (:class:`Cadence`), or a plain
    ``timedelta`` (the ``SAFERELAY_CHECKIN_EVERY`` setting). A whole number of days works
    like a cadence (``7d`` is weekly); anything else (``2m``, ``12h``, ``1d12h``) is an
    *interval*: the next prompt falls at a random moment between half and one and a half
    intervals after the last, still inside the window. Intervals let the whole welfare
    ladder be watched in a few minutes with short settings.

How a moment is drawn
    We draw real instants (whole UTC minutes, then a second inside the minute) and keep one
    only if its local wall clock lies inside the window, on the right window day, and not in
    the previous prompt's local minute. Drawing instants instead of wall-clock times settles
    daylight-saving switches by construction, deliberately:

    - a wall-clock time skipped in spring (02:30 in New York on the March switch day) is no
      instant at all, so it is never chosen: that day's window is shorter, and a window that
      is skipped whole (02:00-03:00 there) moves the prompt to the next day's window rather
      than outside the hours the member chose;
    - a wall-clock time repeated in autumn (02:30 in Berlin on the October switch day) is two
      instants, both genuinely inside the window, and either may be chosen: the repeated hour
      lasts twice as long in real time, so it gets twice the weight. Jitter is uniform over
      the real time the window is open;
    - nothing assumes a zone has, or lacks, daylight saving (Asia/Seoul and Asia/Shanghai
      have none today but had it once); the zone database is asked about every instant.

    UTC offsets have been whole minutes in every zone since 1972 (Africa/Monrovia's -0:44:30
    was the last exception), so a UTC minute is wholly inside or wholly outside a window and
    checking its first second suffices.
"""

from __future__ import annotations

import calendar
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TypeAlias
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# Random draws before listing every minute of a span: a window shortened by a
# daylight-saving switch, or a span whose minutes are mostly outside the window, would
# otherwise take many tries; listing is exact but walks every minute (a few ms for a day).
_DRAWS_BEFORE_LISTING = 24
# How many window days to try before giving up. Only a zone that drops whole days
# (Pacific/Apia skipped 30 December 2011) makes us go past the first one or two.
_DAYS_TO_SEARCH = 8

# --------------------------------------------------------------------------- durations

# Largest unit first, each at most once: "1d12h" reads one way only. ASCII digits only:
# `\d` would also take other scripts' digits, which int() accepts but nobody means.
_DURATION_RE = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_DURATION_HINT = (
    "write a number and a unit, largest unit first: d (days), h (hours), m (minutes), "
    "s (seconds), e.g. 7d, 12h, 30m, 90s or 1d12h"
)
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def _quoted(text: str) -> str:
    # Settings values are worth echoing so the admin sees the typo, but the same parser may
    # one day read chat text: keep the echo short so an error line can't carry a paragraph.
    return repr(text if len(text) <= 32 else text[:32] + "…")


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s`` or a combination such as ``1d12h`` as a timedelta.

    Raises :class:`ValueError` saying how to write one for anything else, and for zero.
    """
    cleaned = text.strip()
    match = _DURATION_RE.fullmatch(cleaned)
    if not cleaned or match is None:
        raise ValueError(f"not a duration: {_quoted(text)}; {_DURATION_HINT}")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    try:
        value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {_quoted(text)}") from None
    if value <= timedelta(0):
        raise ValueError(f"a duration must be more than zero: {_quoted(text)}")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest text :func:`parse_duration` reads back as ``value`` (``1d12h``, ``90s``
    comes back as ``1m30s``). Raises :class:`ValueError` for zero, negative or sub-second."""
    if value <= timedelta(0) or value.microseconds:
        raise ValueError(f"not a positive whole number of seconds: {value}")
    remaining = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --------------------------------------------------------------------------- windows

_WINDOW_RE = re.compile(r"([0-9]{1,2}):([0-9]{2})\s*[-–]\s*([0-9]{1,2}):([0-9]{2})")
_WINDOW_HINT = "write it as HH:MM-HH:MM in the member's local time, e.g. 19:00-21:00"


@dataclass(frozen=True)
class Window:
    """A daily local wall-clock range in which prompts may fall.

    ``start`` is the minute after local midnight at which it opens (0-1439), ``minutes`` how
    long it stays open (1-1440). A window may cross midnight (22:00-02:00 is ``start=1320,
    minutes=240``): members in hiding may only be alone late at night, and the arithmetic
    costs nothing extra because a window belongs to the day it opens. 00:00-24:00 is the
    only window open all day, so that every day has exactly one window.
    """

    start: int
    minutes: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < MINUTES_PER_DAY:
            raise ValueError(f"a window opens between 00:00 and 23:59, not at minute {self.start}")
        if not 1 <= self.minutes <= MINUTES_PER_DAY:
            raise ValueError(f"a window lasts 1 to {MINUTES_PER_DAY} minutes, not {self.minutes}")
        if self.minutes == MINUTES_PER_DAY and self.start != 0:
            raise ValueError("a window open all day is written 00:00-24:00")

    @property
    def any_time(self) -> bool:
        """Open all day (00:00-24:00)."""
        return self.minutes == MINUTES_PER_DAY

    @property
    def crosses_midnight(self) -> bool:
        """Opens on one local date and closes on the next (22:00-02:00)."""
        return self.start + self.minutes > MINUTES_PER_DAY

    def contains(self, wall: time) -> bool:
        """Whether a local wall-clock time (seconds ignored) lies inside the window."""
        return self._since_open(wall.hour * 60 + wall.minute) < self.minutes

    def _since_open(self, minute_of_day: int) -> int:
        return (minute_of_day - self.start) % MINUTES_PER_DAY

    def __str__(self) -> str:
        end = self.start + self.minutes
        # 24:00 only for a window that closes exactly at midnight without crossing it.
        shown_end = end if end == MINUTES_PER_DAY else end % MINUTES_PER_DAY
        return f"{_hhmm(self.start)}-{_hhmm(shown_end)}"


ANY_TIME = Window(0, MINUTES_PER_DAY)


def _hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def parse_window(text: str) -> Window:
    """``19:00-21:00`` as a :class:`Window`; ``00:00-24:00`` means any time; ``22:00-02:00``
    crosses midnight and closes at 02:00 the next day.

    Raises :class:`ValueError` saying how to write one for anything else, including an empty
    window (``19:00-19:00``: is that nothing or everything? we refuse to guess).
    """
    match = _WINDOW_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a time window: {_quoted(text)}; {_WINDOW_HINT}")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59:
        raise ValueError(f"a window opens between 00:00 and 23:59: {_quoted(text)}")
    if end_h > 24 or end_m > 59 or (end_h == 24 and end_m != 0):
        raise ValueError(f"a window closes between 00:01 and 24:00: {_quoted(text)}")
    start = start_h * 60 + start_m
    end = end_h * 60 + end_m
    if end % MINUTES_PER_DAY == start:
        if start == 0 and end == MINUTES_PER_DAY:
            return ANY_TIME
        raise ValueError(
            f"a window must close at another time than it opens: {_quoted(text)}; "
            "for any time of day write 00:00-24:00"
        )
    return Window(start, (end - start) % MINUTES_PER_DAY)


# --------------------------------------------------------------------------- cadence


class Cadence(StrEnum):
    """How often a member is prompted: the values are what the database stores."""

    DAILY = "daily"
    WEEKLY = "weekly"
    FORTNIGHTLY = "fortnightly"  # every two weeks ("biweekly" also means twice a week)
    MONTHLY = "monthly"
    OFF = "off"

    @property
    def days(self) -> int | None:
        """Window days between two prompts; ``None`` for monthly (months differ) and off."""
        return _CADENCE_DAYS.get(self)

    def next_day(self, day: date) -> date | None:
        """The window day of the prompt after one on ``day``; ``None`` when off.

        Monthly is the same day of the next month, clamped to its length (31 January →
        28 or 29 February). Clamping is not undone later (→ 28 March): we keep only the last
        prompt, not the day the member enrolled, and a drift of a few days is harmless.
        """
        if self is Cadence.MONTHLY:
            return add_months(day, 1)
        days = self.days
        return None if days is None else day + timedelta(days=days)


_CADENCE_DAYS = {Cadence.DAILY: 1, Cadence.WEEKLY: 7, Cadence.FORTNIGHTLY: 14}
DEFAULT_CADENCE = Cadence.WEEKLY

# A member's schedule is a Cadence; the SAFERELAY_CHECKIN_EVERY setting is a timedelta.
Every: TypeAlias = Cadence | timedelta


def cadence_for(every: timedelta) -> Every:
    """The named cadence a duration setting means (``7d`` → weekly), else the duration."""
    for cadence, days in _CADENCE_DAYS.items():
        if every == timedelta(days=days):
            return cadence
    return every


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the target month's length."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    last = calendar.monthrange(year, month_index + 1)[1]
    return date(year, month_index + 1, min(day.day, last))


# --------------------------------------------------------------------------- prompts


def next_prompt(
    after: datetime,
    cadence: Every,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    previous: datetime | None = None,
) -> datetime | None:
    """The member's next prompt (aware, UTC, whole seconds), strictly after ``after``;
    ``None`` when the cadence is off.

    With a day cadence the prompt falls at a uniformly random moment inside the member's
    local window on the window day ``cadence`` after the previous prompt's window day; with
    no previous prompt (a new member), or when that day's window has already closed by
    ``after`` (the bot was down, a pause ran long), in the first window with time left after
    ``after`` -- never a backlog. A previous prompt sent outside the window (a late sweep
    just after it closed, or a window the member has since changed) counts for the nearer
    window: the one that just closed, or the one about to open, so the cadence neither skips
    a day nor brings the following prompt within minutes.

    The prompt never falls in the previous prompt's local minute, unless the window is one
    minute long: a phone that buzzes at 19:42 every week is a pattern someone can notice.
    """
    _require_aware(after, "after")
    if previous is not None:
        _require_aware(previous, "previous")
    if cadence is Cadence.OFF:
        return None
    if isinstance(cadence, timedelta):
        if cadence <= timedelta(0):
            raise ValueError(f"a cadence must be more than zero, not {cadence}")
        if cadence % _DAY:
            return _next_by_interval(after, cadence, window, tz, rng, previous)
    avoid = _minute_to_avoid(previous, window, tz)
    first_day = _window_day_of(window, _wall(after, tz))
    if previous is not None:
        due_day = _step(cadence, _window_day_counted(window, _wall(previous, tz)))
        first_day = max(first_day, due_day)
    return _in_first_window(first_day, _first_minute_after(after), window, tz, rng, avoid)


@dataclass(frozen=True)
class CatchUp:
    """What the sweep does with one member: send a prompt now or not, and what to store as
    their next prompt time (``None``: no prompt is scheduled, the cadence is off)."""

    send_now: bool
    next_at: datetime | None


def catch_up(
    due: datetime,
    now: datetime,
    cadence: Every,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    previous: datetime | None = None,
    on_time: timedelta = timedelta(minutes=10),
) -> CatchUp:
    """Decide about a stored next-prompt time ``due`` at ``now``; the sweep calls this for
    every due row, on time or missed, and stores ``next_at``.

    - ``due`` still ahead: nothing to send, ``next_at`` is ``due`` unchanged.
    - ``due`` passed (by any number of missed periods): one prompt now, and the next one
      counted from now -- never one per missed period, because the stored time is replaced
      by a future one in the same step.
    - except that a prompt missed by more than ``on_time`` (the bot was down) is not sent
      outside the member's window: the member chose those hours as the ones when the phone
      is safe to buzz, and 03:00 after a restart is not one of them. It moves to a random
      moment in the next window instead, where this function sends it (once) when it falls
      due. ``on_time`` covers an ordinary late sweep just after a window closes.

    ``previous`` is the last prompt actually sent, so a moved prompt avoids its minute too.
    """
    _require_aware(due, "due")
    _require_aware(now, "now")
    if cadence is Cadence.OFF:
        return CatchUp(send_now=False, next_at=None)
    if due > now:
        return CatchUp(send_now=False, next_at=due)
    if now - due <= on_time or window.contains(_wall(now, tz).time()):
        return CatchUp(send_now=True, next_at=next_prompt(now, cadence, window, tz, rng, now))
    avoid = _minute_to_avoid(previous, window, tz)
    next_window_day = _window_day_of(window, _wall(now, tz))
    moved = _in_first_window(next_window_day, _first_minute_after(now), window, tz, rng, avoid)
    return CatchUp(send_now=False, next_at=moved)


def prompt_after_pause(
    paused_until: datetime,
    now: datetime,
    cadence: Every,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    previous: datetime | None = None,
) -> datetime | None:
    """The first prompt once a pause ends (or is lifted early: pass ``paused_until=now``).

    It falls after both ``paused_until`` and ``now`` (a pause that ended while the bot was
    down yields no prompt in the past) and no sooner than the cadence allows after
    ``previous``: a pause postpones prompts, it never adds one, so a monthly member who
    pauses for a week is still asked on their usual day.
    """
    _require_aware(paused_until, "paused_until")
    _require_aware(now, "now")
    return next_prompt(max(paused_until, now), cadence, window, tz, rng, previous)


# --------------------------------------------------------------------------- internals


def _require_aware(value: datetime, name: str) -> None:
    # A naive datetime would be read as the server's local time by astimezone(): exactly
    # the silent zone bug this module exists to prevent.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC), not naive: {value}")


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an instant in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _minute_of_day(wall: datetime) -> int:
    return wall.hour * 60 + wall.minute


def _window_day_and_offset(window: Window, wall: datetime) -> tuple[date, int]:
    """The window day of the most recent opening at or before ``wall``, and the minutes
    since it opened (inside the window exactly when fewer than ``window.minutes``)."""
    minute = _minute_of_day(wall)
    opened_on = wall.date() if minute >= window.start else wall.date() - _DAY
    return opened_on, window._since_open(minute)


def _window_day_of(window: Window, wall: datetime) -> date:
    """The first window day with time left at ``wall``: the window it lies in, or else the
    next window to open."""
    day, since_open = _window_day_and_offset(window, wall)
    return day if since_open < window.minutes else day + _DAY


def _window_day_counted(window: Window, wall: datetime) -> date:
    """The window day a prompt sent at ``wall`` counts for, when cadence is reckoned from
    it: the window it lies in, or else the nearer of the one that closed before it and the
    one that opens after it (ties go to the later)."""
    day, since_open = _window_day_and_offset(window, wall)
    since_close = since_open - window.minutes
    if since_close < 0 or since_close < MINUTES_PER_DAY - since_open:
        return day
    return day + _DAY


def _step(cadence: Every, day: date) -> date:
    if isinstance(cadence, timedelta):
        return day + timedelta(days=cadence.days)
    next_day = cadence.next_day(day)
    if next_day is None:  # pragma: no cover - OFF returns before any day is computed
        raise ValueError("cadence is off")
    return next_day


def _minute_to_avoid(previous: datetime | None, window: Window, tz: ZoneInfo) -> int | None:
    if previous is None or window.minutes == 1:
        return None
    return _minute_of_day(_wall(previous, tz))


def _floor_minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


def _ceil_minute(instant: datetime) -> datetime:
    floor = _floor_minute(instant)
    return floor if floor == instant else floor + _MINUTE


def _first_minute_after(instant: datetime) -> datetime:
    # Whole minutes starting strictly after the instant, so any second in them is later.
    return _floor_minute(instant.astimezone(UTC)) + _MINUTE


def _opening_bounds(day: date, window: Window, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC bounds that surely contain every instant of ``day``'s window.

    An opening or closing wall time can be skipped or repeated by a switch; taking the
    earlier of its two readings (fold 0 and 1) for the opening and the later for the close
    keeps every real instant of the window inside, and the draw checks each instant anyway.
    """
    opens = datetime.combine(day, time()) + timedelta(minutes=window.start)
    closes = opens + timedelta(minutes=window.minutes)
    return min(_readings(opens, tz)), max(_readings(closes, tz))


def _readings(wall: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        wall.replace(tzinfo=tz, fold=0).astimezone(UTC),
        wall.replace(tzinfo=tz, fold=1).astimezone(UTC),
    )


def _in_window_check(
    window: Window, tz: ZoneInfo, day: date | None, avoid: int | None
) -> Callable[[datetime], bool]:
    """Whether a UTC minute lies inside the window (on ``day``'s window when given) and
    outside the local minute to avoid."""

    def check(minute: datetime) -> bool:
        wall = _wall(minute, tz)
        opened_on, since_open = _window_day_and_offset(window, wall)
        return (
            since_open < window.minutes
            and (day is None or opened_on == day)
            and (avoid is None or _minute_of_day(wall) != avoid)
        )

    return check


def _draw(
    low: datetime, high: datetime, keep: Callable[[datetime], bool], rng: random.Random
) -> datetime | None:
    """A uniformly random second among the UTC minutes starting in [low, high) that ``keep``
    accepts, or ``None`` if it accepts none.

    Rejection sampling, then an exact listing if the draws keep missing: both pick uniformly
    among accepted minutes, so the mixture does too, and the rng alone decides the result.
    """
    first = _ceil_minute(low)
    count = -((first - high) // _MINUTE)  # minute starts in [first, high)
    if count <= 0:
        return None
    for _ in range(_DRAWS_BEFORE_LISTING):
        minute = first + rng.randrange(count) * _MINUTE
        if keep(minute):
            return minute + timedelta(seconds=rng.randrange(60))
    accepted = [first + k * _MINUTE for k in range(count) if keep(first + k * _MINUTE)]
    if not accepted:
        return None
    return accepted[rng.randrange(len(accepted))] + timedelta(seconds=rng.randrange(60))


def _in_first_window(
    first_day: date,
    not_before: datetime,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    avoid: int | None,
) -> datetime:
    """A random moment in the first window, from ``first_day`` on, with time left at or
    after ``not_before`` (a whole UTC minute)."""
    for offset in range(_DAYS_TO_SEARCH):
        day = first_day + offset * _DAY
        opens, closes = _opening_bounds(day, window, tz)
        if closes <= not_before:
            continue
        check = _in_window_check(window, tz, day, avoid)
        moment = _draw(max(opens, not_before), closes, check, rng)
        if moment is not None:
            return moment
    # Unreachable with real zone data: every zone has a window's worth of time within a
    # week. Raise rather than return a time outside the window the member chose.
    raise RuntimeError(f"no moment inside {window} in {tz.key} within {_DAYS_TO_SEARCH} days")


def _next_by_interval(
    after: datetime,
    every: timedelta,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    previous: datetime | None,
) -> datetime:
    """A prompt between half and one and a half intervals after the previous one (so the
    mean spacing is the interval), or within one interval for a first prompt, inside the
    window; if the window is closed all that time, in the next window to open."""
    if previous is None:
        earliest, latest = after, after + every
    else:
        earliest, latest = previous + every / 2, previous + every * 3 / 2
    if latest <= after:  # the whole span passed while the bot was down: start afresh
        earliest, latest = after, after + every
    low = max(_ceil_minute(earliest.astimezone(UTC)), _first_minute_after(after))
    # Prompts are placed to the minute and must not repeat the previous one's minute, so an
    # interval shorter than two minutes (a test setting) is stretched to two.
    high = max(latest.astimezone(UTC), low + 2 * _MINUTE)
    avoid = _minute_to_avoid(previous, window, tz)
    moment = _draw(low, high, _in_window_check(window, tz, None, avoid), rng)
    if moment is not None:
        return moment
    return _in_first_window(_window_day_of(window, _wall(low, tz)), low, window, tz, rng, avoid)
