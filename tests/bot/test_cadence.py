"""Wellbeing-prompt schedules (issue 10): jitter inside the member's own window in their own
zone, never the same minute twice, cadence, daylight-saving switches, monthly clamping,
prompts missed while the bot was down, pauses, and the settings' parsers.

Every test controls the clock (instants are parameters) and seeds the rng; the Hypothesis
tests are derandomized, so a run is the same every time.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cadence import (
    ANY_TIME,
    DEFAULT_CADENCE,
    MINUTES_PER_DAY,
    Cadence,
    CatchUp,
    Every,
    Window,
    add_months,
    cadence_for,
    catch_up,
    format_duration,
    next_prompt,
    parse_duration,
    parse_window,
    prompt_after_pause,
)

SEOUL = ZoneInfo("Asia/Seoul")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
EVENING = Window(19 * 60, 120)  # 19:00-21:00, the default

# The members' zones, and zones whose switches are unusual: half-hour DST (Lord Howe),
# a +12:45 offset (Chatham), southern-hemisphere DST (Santiago, Sydney), DST at midnight
# (Havana, Beirut historically), a zone that skipped a whole day (Apia, 30 Dec 2011).
ZONES = [
    SEOUL,
    SHANGHAI,
    NEW_YORK,
    BERLIN,
    ZoneInfo("UTC"),
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("Pacific/Chatham"),
    ZoneInfo("America/Santiago"),
    ZoneInfo("Australia/Sydney"),
    ZoneInfo("America/Havana"),
    ZoneInfo("Asia/Beirut"),
    ZoneInfo("Pacific/Apia"),
    ZoneInfo("Asia/Kathmandu"),
]
DAY_CADENCES: list[Every] = [
    Cadence.DAILY,
    Cadence.WEEKLY,
    Cadence.FORTNIGHTLY,
    Cadence.MONTHLY,
    timedelta(days=3),
]
DERANDOMIZED = settings(derandomize=True, max_examples=150, deadline=None)

zones = st.sampled_from(ZONES)
instants = st.datetimes(
    min_value=datetime(2005, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def windows(draw: st.DrawFn) -> Window:
    if draw(st.integers(0, 9)) == 0:
        return ANY_TIME
    start = draw(st.integers(0, MINUTES_PER_DAY - 1))
    # Short windows too: they are where DST switches and minute avoidance bite.
    minutes = draw(st.one_of(st.integers(1, 5), st.integers(1, MINUTES_PER_DAY - 1)))
    return Window(start, minutes)


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz)


def minute_of_day(instant: datetime, tz: ZoneInfo) -> int:
    wall = local(instant, tz)
    return wall.hour * 60 + wall.minute


def window_day(instant: datetime, window: Window, tz: ZoneInfo) -> date:
    """The local date on which the window holding ``instant`` opened."""
    wall = local(instant, tz)
    opened_today = wall.hour * 60 + wall.minute >= window.start
    return wall.date() if opened_today else wall.date() - timedelta(days=1)


def assert_in_window(instant: datetime, window: Window, tz: ZoneInfo) -> None:
    assert instant.tzinfo is UTC
    assert window.contains(local(instant, tz).time()), f"{local(instant, tz)} is outside {window}"


def prompts(
    start: datetime,
    cadence: Every,
    window: Window,
    tz: ZoneInfo,
    rng: random.Random,
    count: int,
) -> list[datetime]:
    """A member's successive prompts, each computed when the previous one is sent."""
    sent: list[datetime] = []
    after, previous = start, None
    for _ in range(count):
        moment = next_prompt(after, cadence, window, tz, rng, previous)
        assert moment is not None
        sent.append(moment)
        after = previous = moment
    return sent


# --------------------------------------------------------------------------- properties


@DERANDOMIZED
@given(
    tz=zones,
    window=windows(),
    after=instants,
    seed=seeds,
    cadence=st.sampled_from([*DAY_CADENCES, timedelta(minutes=2), timedelta(hours=12)]),
    gap=st.one_of(st.none(), st.timedeltas(timedelta(0), timedelta(days=40))),
)
def test_every_prompt_falls_inside_the_local_window_after_the_clock(
    tz: ZoneInfo,
    window: Window,
    after: datetime,
    seed: int,
    cadence: Every,
    gap: timedelta | None,
) -> None:
    # Given a member whose last prompt was `gap` ago (or who is new)
    previous = None if gap is None else after - gap
    # When the next prompt is computed
    moment = next_prompt(after, cadence, window, tz, random.Random(seed), previous)
    # Then it is later, in the member's window in their own zone, at a new minute
    assert moment is not None
    assert moment > after
    assert moment.microsecond == 0
    assert_in_window(moment, window, tz)
    if previous is not None and window.minutes > 1:
        assert minute_of_day(moment, tz) != minute_of_day(previous, tz)


@DERANDOMIZED
@given(
    tz=zones,
    window=windows(),
    start=instants,
    seed=seeds,
    cadence=st.sampled_from(DAY_CADENCES),
)
def test_successive_prompts_keep_the_cadence_in_window_days(
    tz: ZoneInfo, window: Window, start: datetime, seed: int, cadence: Every
) -> None:
    sent = prompts(start, cadence, window, tz, random.Random(seed), count=4)
    for earlier, later in itertools.pairwise(sent):
        assert_in_window(later, window, tz)
        expected = (
            add_months(window_day(earlier, window, tz), 1)
            if cadence is Cadence.MONTHLY
            else window_day(earlier, window, tz) + timedelta(days=_days(cadence))
        )
        got = window_day(later, window, tz)
        if clocks_move_near(tz, expected):
            # A window wholly skipped by a switch (or Apia's lost day) moves to the next day.
            assert expected <= got <= expected + timedelta(days=2)
        else:
            assert got == expected


def clocks_move_near(tz: ZoneInfo, day: date) -> bool:
    offsets = {
        datetime.combine(day + timedelta(days=k), time(12), tz).utcoffset() for k in (-2, 0, 2)
    }
    return len(offsets) > 1


def _days(cadence: Every) -> int:
    if isinstance(cadence, timedelta):
        return cadence.days
    days = cadence.days
    assert days is not None
    return days


@DERANDOMIZED
@given(tz=zones, start=instants, seed=seeds, width=st.integers(2, 4))
def test_never_the_same_local_minute_twice_in_a_row(
    tz: ZoneInfo, start: datetime, seed: int, width: int
) -> None:
    # A window only a few minutes wide makes a repeat likely if it were allowed.
    window = Window(20 * 60, width)
    sent = prompts(start, Cadence.DAILY, window, tz, random.Random(seed), count=20)
    minutes = [minute_of_day(moment, tz) for moment in sent]
    assert all(a != b for a, b in itertools.pairwise(minutes))


def test_a_one_minute_window_may_repeat_its_only_minute() -> None:
    window = parse_window("20:15-20:16")
    sent = prompts(datetime(2024, 5, 1, tzinfo=UTC), Cadence.DAILY, window, SEOUL, rng(), 3)
    assert {local(moment, SEOUL).strftime("%H:%M") for moment in sent} == {"20:15"}


def test_jitter_spreads_evenly_over_the_window() -> None:
    # Given 4,000 new members in Seoul with the default window
    after = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)  # 09:00 in Seoul: the window is ahead
    generator = rng()
    quarters = [0, 0, 0, 0]
    for _ in range(4000):
        moment = next_prompt(after, Cadence.WEEKLY, EVENING, SEOUL, generator)
        assert moment is not None
        quarters[(minute_of_day(moment, SEOUL) - EVENING.start) // 30] += 1
    # Then each half hour gets about a quarter of them (expected 1000, sd ~27)
    assert all(880 < count < 1120 for count in quarters), quarters


def test_seconds_are_jittered_too() -> None:
    generator = rng()
    after = datetime(2024, 5, 1, tzinfo=UTC)
    seconds = {
        moment.second
        for _ in range(500)
        if (moment := next_prompt(after, Cadence.DAILY, EVENING, SEOUL, generator))
    }
    assert len(seconds) > 50


# --------------------------------------------------------------------------- first prompts


def rng(seed: int = 10) -> random.Random:
    return random.Random(seed)


def at(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, second: int = 0
) -> datetime:
    """A local wall-clock time in ``tz`` (the first, if it is repeated) as a UTC instant."""
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)


def test_new_member_enrolled_before_the_window_is_asked_the_same_evening() -> None:
    moment = next_prompt(at(SEOUL, 2024, 5, 1, 9, 0), Cadence.WEEKLY, EVENING, SEOUL, rng())
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 5, 1)
    assert_in_window(moment, EVENING, SEOUL)


def test_new_member_enrolled_inside_the_window_is_asked_in_what_is_left_of_it() -> None:
    enrolled = at(SEOUL, 2024, 5, 1, 20, 30)
    for seed in range(200):
        moment = next_prompt(enrolled, Cadence.WEEKLY, EVENING, SEOUL, rng(seed))
        assert moment is not None
        assert enrolled < moment < at(SEOUL, 2024, 5, 1, 21, 0)


def test_new_member_enrolled_after_the_window_is_asked_the_next_evening() -> None:
    moment = next_prompt(at(SEOUL, 2024, 5, 1, 21, 0), Cadence.WEEKLY, EVENING, SEOUL, rng())
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 5, 2)
    assert_in_window(moment, EVENING, SEOUL)


def test_off_schedules_nothing() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert next_prompt(now, Cadence.OFF, EVENING, SEOUL, rng()) is None
    assert next_prompt(now, Cadence.OFF, EVENING, SEOUL, rng(), previous=now) is None
    assert catch_up(now, now, Cadence.OFF, EVENING, SEOUL, rng()) == CatchUp(False, None)
    assert prompt_after_pause(now, now, Cadence.OFF, EVENING, SEOUL, rng()) is None


def test_the_same_instant_means_each_members_own_evening() -> None:
    # Seoul is UTC+9 and Shanghai UTC+8, neither with daylight saving today.
    after = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    seoul = next_prompt(after, Cadence.WEEKLY, EVENING, SEOUL, rng())
    shanghai = next_prompt(after, Cadence.WEEKLY, EVENING, SHANGHAI, rng())
    assert seoul is not None and shanghai is not None
    assert datetime(2024, 5, 1, 10, tzinfo=UTC) <= seoul < datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert datetime(2024, 5, 1, 11, tzinfo=UTC) <= shanghai < datetime(2024, 5, 1, 13, tzinfo=UTC)


def test_zones_that_once_had_daylight_saving_are_asked_about_it() -> None:
    # Seoul kept summer time in 1987-88 (UTC+10); a fixed +9 would put this prompt at 20:xx.
    window = parse_window("19:00-19:30")
    moment = next_prompt(at(SEOUL, 1988, 7, 1, 9, 0), Cadence.DAILY, window, SEOUL, rng())
    assert moment is not None
    assert local(moment, SEOUL).utcoffset() == timedelta(hours=10)
    assert_in_window(moment, window, SEOUL)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_prompt(datetime(2024, 5, 1), Cadence.WEEKLY, EVENING, SEOUL, rng())
    with pytest.raises(ValueError, match="previous must be an aware"):
        next_prompt(
            datetime(2024, 5, 1, tzinfo=UTC),
            Cadence.WEEKLY,
            EVENING,
            SEOUL,
            rng(),
            previous=datetime(2024, 4, 1),
        )


# --------------------------------------------------------------------------- cadence


def test_weekly_prompts_are_seven_local_days_apart_all_year_in_berlin() -> None:
    # A year crosses both switches (last Sundays of March and October).
    sent = prompts(at(BERLIN, 2024, 1, 1, 12, 0), Cadence.WEEKLY, EVENING, BERLIN, rng(), 53)
    days = [local(moment, BERLIN).date() for moment in sent]
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(days))
    for moment in sent:
        assert_in_window(moment, EVENING, BERLIN)
    offsets = {local(moment, BERLIN).utcoffset() for moment in sent}
    assert offsets == {timedelta(hours=1), timedelta(hours=2)}


def test_weekly_across_the_new_york_switches_keeps_the_wall_clock_window() -> None:
    window = parse_window("18:00-18:10")
    for start in (at(NEW_YORK, 2024, 3, 5, 12, 0), at(NEW_YORK, 2024, 10, 30, 12, 0)):
        first, second = prompts(start, Cadence.WEEKLY, window, NEW_YORK, rng(), 2)
        assert local(second, NEW_YORK).date() - local(first, NEW_YORK).date() == timedelta(7)
        assert_in_window(first, window, NEW_YORK)
        assert_in_window(second, window, NEW_YORK)
        # The real gap is a week plus or minus the hour the clocks moved, not a fixed 7 x 24 h.
        assert local(first, NEW_YORK).utcoffset() != local(second, NEW_YORK).utcoffset()


@pytest.mark.parametrize(
    ("cadence", "days"),
    [(Cadence.DAILY, 1), (Cadence.WEEKLY, 7), (Cadence.FORTNIGHTLY, 14), (timedelta(days=3), 3)],
)
def test_day_cadences_land_that_many_local_days_later(cadence: Every, days: int) -> None:
    previous = at(SHANGHAI, 2024, 5, 1, 19, 45)
    moment = next_prompt(previous, cadence, EVENING, SHANGHAI, rng(), previous)
    assert moment is not None
    assert local(moment, SHANGHAI).date() == date(2024, 5, 1) + timedelta(days=days)
    assert_in_window(moment, EVENING, SHANGHAI)


@pytest.mark.parametrize(
    ("previous_day", "expected"),
    [
        (date(2024, 1, 31), date(2024, 2, 29)),  # leap year
        (date(2023, 1, 31), date(2023, 2, 28)),
        (date(2024, 3, 31), date(2024, 4, 30)),
        (date(2024, 12, 31), date(2025, 1, 31)),  # across the year
        (date(2024, 5, 15), date(2024, 6, 15)),
    ],
)
def test_monthly_is_the_same_day_next_month_clamped(previous_day: date, expected: date) -> None:
    previous = at(SEOUL, previous_day.year, previous_day.month, previous_day.day, 20, 0)
    moment = next_prompt(previous, Cadence.MONTHLY, EVENING, SEOUL, rng(), previous)
    assert moment is not None
    assert local(moment, SEOUL).date() == expected
    assert_in_window(moment, EVENING, SEOUL)


def test_add_months_clamps_and_crosses_years() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 1, 31), 13) == date(2025, 2, 28)
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 30), 2) == date(2025, 1, 30)


def test_cadence_spacing_and_names() -> None:
    assert DEFAULT_CADENCE is Cadence.WEEKLY
    assert [c.days for c in Cadence] == [1, 7, 14, None, None]
    assert Cadence("fortnightly") is Cadence.FORTNIGHTLY
    assert Cadence.OFF.next_day(date(2024, 1, 1)) is None
    assert cadence_for(parse_duration("7d")) is Cadence.WEEKLY
    assert cadence_for(parse_duration("1d")) is Cadence.DAILY
    assert cadence_for(parse_duration("14d")) is Cadence.FORTNIGHTLY
    assert cadence_for(parse_duration("2m")) == timedelta(minutes=2)


def test_a_whole_number_of_days_works_like_the_named_cadence() -> None:
    start = at(SEOUL, 2024, 5, 1, 12, 0)
    named = prompts(start, Cadence.WEEKLY, EVENING, SEOUL, rng(3), 5)
    as_duration = prompts(start, timedelta(days=7), EVENING, SEOUL, rng(3), 5)
    assert named == as_duration


def test_a_non_positive_cadence_is_refused() -> None:
    with pytest.raises(ValueError, match="more than zero"):
        next_prompt(datetime(2024, 5, 1, tzinfo=UTC), timedelta(0), EVENING, SEOUL, rng())


# --------------------------------------------------------------------------- short settings


def test_short_intervals_let_the_ladder_be_watched_in_minutes() -> None:
    # SAFERELAY_CHECKIN_EVERY=2m, SAFERELAY_CHECKIN_WINDOW=00:00-24:00
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    sent = prompts(start, parse_duration("2m"), ANY_TIME, SEOUL, rng(), 100)
    assert sent[0] - start <= timedelta(minutes=3)
    for earlier, later in itertools.pairwise(sent):
        # Between half and one and a half intervals, to the minute (plus the drawn second).
        assert timedelta(seconds=1) <= later - earlier < timedelta(minutes=4)
        assert minute_of_day(later, SEOUL) != minute_of_day(earlier, SEOUL)
    mean = (sent[-1] - sent[0]) / (len(sent) - 1)
    assert timedelta(minutes=1, seconds=30) < mean < timedelta(minutes=3)


def test_sub_minute_intervals_are_stretched_not_stuck() -> None:
    sent = prompts(
        datetime(2024, 5, 1, tzinfo=UTC), timedelta(seconds=20), ANY_TIME, SEOUL, rng(), 50
    )
    minutes = [minute_of_day(moment, SEOUL) for moment in sent]
    assert all(a != b for a, b in itertools.pairwise(minutes))
    assert sent[-1] - sent[0] < timedelta(minutes=50 * 3)


def test_an_interval_that_ends_outside_the_window_waits_for_it() -> None:
    # Every 12 hours, but only 19:00-21:00: the morning half always waits for the evening.
    sent = prompts(at(SEOUL, 2024, 5, 1, 12, 0), timedelta(hours=12), EVENING, SEOUL, rng(), 20)
    for moment in sent:
        assert_in_window(moment, EVENING, SEOUL)
    assert all(later > earlier for earlier, later in itertools.pairwise(sent))


def test_an_interval_member_back_from_a_long_pause_gets_a_fresh_interval() -> None:
    # Every 12 h; the last prompt was three days ago (a pause): the next falls anywhere in
    # the coming 12 h, not bunched up right after the pause ends.
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    previous = now - timedelta(days=3)
    delays = []
    for seed in range(200):
        moment = prompt_after_pause(
            now, now, timedelta(hours=12), ANY_TIME, SEOUL, rng(seed), previous
        )
        assert moment is not None
        delays.append(moment - now)
    assert all(timedelta(0) < delay <= timedelta(hours=12, minutes=1) for delay in delays)
    assert max(delays) > timedelta(hours=10)


# --------------------------------------------------------------------------- daylight saving


def test_a_window_squeezed_to_two_minutes_by_a_switch_uses_both_evenly() -> None:
    # New York, 10 March 2024: of 01:58-02:59 only 01:58 and 01:59 exist. Random draws
    # mostly miss, so this exercises the exact listing that follows them.
    window = parse_window("01:58-02:59")
    before = at(NEW_YORK, 2024, 3, 9, 12, 0)
    counts = {58: 0, 59: 0}
    for seed in range(1000):
        moment = next_prompt(before, Cadence.DAILY, window, NEW_YORK, rng(seed))
        assert moment is not None
        wall = local(moment, NEW_YORK)
        assert (wall.date(), wall.hour) == (date(2024, 3, 10), 1)
        counts[wall.minute] += 1
    assert all(420 < count < 580 for count in counts.values()), counts


def test_a_window_wholly_skipped_in_spring_moves_to_the_next_day() -> None:
    # New York skips 02:00-03:00 on 10 March 2024: that night has no 02:xx at all.
    window = parse_window("02:00-03:00")
    previous = at(NEW_YORK, 2024, 3, 9, 2, 30)
    for seed in range(50):
        moment = next_prompt(previous, Cadence.DAILY, window, NEW_YORK, rng(seed), previous)
        assert moment is not None
        assert local(moment, NEW_YORK).date() == date(2024, 3, 11)
        assert_in_window(moment, window, NEW_YORK)


def test_a_window_partly_skipped_in_spring_uses_the_part_that_exists() -> None:
    window = parse_window("01:30-03:00")
    previous = at(NEW_YORK, 2024, 3, 9, 1, 40)
    seen: set[int] = set()
    for seed in range(300):
        moment = next_prompt(previous, Cadence.DAILY, window, NEW_YORK, rng(seed), previous)
        assert moment is not None
        wall = local(moment, NEW_YORK)
        assert wall.date() == date(2024, 3, 10)
        # 02:00-03:00 does not exist that night, so every prompt is 01:30-01:59 (EST).
        assert time(1, 30) <= wall.time() < time(2, 0)
        seen.add(wall.minute)
    assert len(seen) > 20


@pytest.mark.parametrize(
    ("tz", "day"),
    [(BERLIN, date(2024, 10, 27)), (NEW_YORK, date(2024, 11, 3))],
)
def test_a_repeated_hour_in_autumn_is_used_twice_and_stays_in_the_window(
    tz: ZoneInfo, day: date
) -> None:
    # Berlin repeats 02:00-03:00, New York 01:00-02:00: both readings are inside the window.
    window = parse_window("02:00-03:00") if tz is BERLIN else parse_window("01:00-02:00")
    before = datetime.combine(day - timedelta(days=1), time(12), tz).astimezone(UTC)
    offsets: dict[timedelta | None, int] = {}
    for seed in range(1000):
        moment = next_prompt(before, Cadence.DAILY, window, tz, rng(seed))
        assert moment is not None
        assert local(moment, tz).date() == day
        assert_in_window(moment, window, tz)
        offset = local(moment, tz).utcoffset()
        offsets[offset] = offsets.get(offset, 0) + 1
    # Uniform over real time: the window lasted two real hours, one under each offset.
    assert len(offsets) == 2
    assert all(400 < count < 600 for count in offsets.values()), offsets


def test_window_edges_moved_by_a_switch_keep_all_their_real_time() -> None:
    # New York, 10 March 2024: 02:30 never happens, so 02:30-04:00 really opens at 03:00 EDT.
    spring = parse_window("02:30-04:00")
    # Berlin, 27 October 2024: 02:30 happens twice, so 01:30-02:30 closes at the second one.
    autumn = parse_window("01:30-02:30")
    cases = [
        (NEW_YORK, spring, date(2024, 3, 10)),
        (BERLIN, autumn, date(2024, 10, 27)),
    ]
    for tz, window, day in cases:
        before = datetime.combine(day - timedelta(days=1), time(12), tz).astimezone(UTC)
        walls = []
        for seed in range(400):
            moment = next_prompt(before, Cadence.DAILY, window, tz, rng(seed))
            assert moment is not None
            assert local(moment, tz).date() == day
            assert_in_window(moment, window, tz)
            walls.append(local(moment, tz))
        if tz is NEW_YORK:
            assert any(wall.hour == 3 and wall.minute < 30 for wall in walls)
        else:
            # 02:00-02:30 comes once in summer time and once more in winter time.
            late = {wall.utcoffset() for wall in walls if wall.hour == 2}
            assert late == {timedelta(hours=1), timedelta(hours=2)}


def test_a_whole_day_dropped_by_the_zone_is_skipped() -> None:
    # Samoa moved across the date line: 30 December 2011 never happened in Pacific/Apia.
    apia = ZoneInfo("Pacific/Apia")
    previous = at(apia, 2011, 12, 29, 19, 30)
    moment = next_prompt(previous, Cadence.DAILY, EVENING, apia, rng(), previous)
    assert moment is not None
    assert local(moment, apia).date() == date(2011, 12, 31)
    assert_in_window(moment, EVENING, apia)


# ------------------------------------------------------------------- windows across midnight


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    window = parse_window("22:00-02:00")
    # 01:30 on 5 March is in 4 March's window, so the daily prompt after it is in 5 March's.
    previous = at(SEOUL, 2024, 3, 5, 1, 30)
    for seed in range(200):
        moment = next_prompt(previous, Cadence.DAILY, window, SEOUL, rng(seed), previous)
        assert moment is not None
        assert at(SEOUL, 2024, 3, 5, 22, 0) <= moment < at(SEOUL, 2024, 3, 6, 2, 0)
        assert_in_window(moment, window, SEOUL)


def test_a_window_across_midnight_reaches_both_sides_of_it() -> None:
    window = parse_window("23:00-01:00")
    after = at(SEOUL, 2024, 3, 5, 12, 0)
    hours = {
        local(moment, SEOUL).hour
        for seed in range(200)
        if (moment := next_prompt(after, Cadence.DAILY, window, SEOUL, rng(seed)))
    }
    assert hours == {23, 0}


# --------------------------------------------------------------------------- missed while down


def test_a_prompt_not_yet_due_is_left_alone() -> None:
    due = at(SEOUL, 2024, 5, 8, 20, 0)
    decision = catch_up(due, due - timedelta(seconds=1), Cadence.WEEKLY, EVENING, SEOUL, rng())
    assert decision == CatchUp(send_now=False, next_at=due)


def test_a_prompt_due_now_is_sent_and_the_next_is_a_cadence_later() -> None:
    due = at(SEOUL, 2024, 5, 8, 20, 0)
    now = due + timedelta(seconds=20)  # an ordinary sweep
    decision = catch_up(due, now, Cadence.WEEKLY, EVENING, SEOUL, rng())
    assert decision.send_now
    assert decision.next_at is not None
    assert local(decision.next_at, SEOUL).date() == date(2024, 5, 15)
    assert_in_window(decision.next_at, EVENING, SEOUL)


@pytest.mark.parametrize(("cadence", "days"), [(Cadence.DAILY, 1), (Cadence.WEEKLY, 7)])
def test_a_prompt_due_at_the_close_and_swept_just_after_is_sent_on_cadence(
    cadence: Cadence, days: int
) -> None:
    # Given a prompt due ten seconds before the window closes and a sweep 30 s later
    due = at(SEOUL, 2024, 5, 8, 20, 59, 50)
    decision = catch_up(due, due + timedelta(seconds=30), cadence, EVENING, SEOUL, rng())
    # Then it is sent, and it counts for the evening that just closed: no day is skipped
    assert decision.send_now
    assert decision.next_at is not None
    assert local(decision.next_at, SEOUL).date() == date(2024, 5, 8) + timedelta(days=days)


def test_a_prompt_just_before_a_changed_window_counts_for_that_window() -> None:
    # Given a member asked at 18:30 who then moved their window to 19:00-21:00
    previous = at(SEOUL, 2024, 5, 8, 18, 30)
    for seed in range(20):
        moment = next_prompt(previous, Cadence.DAILY, EVENING, SEOUL, rng(seed), previous)
        # Then the next daily prompt is tomorrow evening, not half an hour later
        assert moment is not None
        assert local(moment, SEOUL).date() == date(2024, 5, 9)


def test_weeks_missed_while_down_give_exactly_one_prompt() -> None:
    # Given a weekly member whose prompt fell due five weeks ago, while the bot was down
    due = at(SEOUL, 2024, 4, 3, 19, 40)
    restart = at(SEOUL, 2024, 5, 8, 19, 5)  # back up inside the member's window
    stored = due
    sent: list[datetime] = []
    generator = rng()
    # When the sweep runs every 30 s for the next six hours
    now = restart
    while now < restart + timedelta(hours=6):
        decision = catch_up(stored, now, Cadence.WEEKLY, EVENING, SEOUL, generator)
        if decision.send_now:
            sent.append(now)
        assert decision.next_at is not None
        stored = decision.next_at
        now += timedelta(seconds=30)
    # Then one prompt went out, at the restart, and the next is a week on, in the window
    assert sent == [restart]
    assert local(stored, SEOUL).date() == date(2024, 5, 15)
    assert_in_window(stored, EVENING, SEOUL)


def test_a_prompt_missed_while_down_waits_for_the_window_instead_of_buzzing_at_night() -> None:
    # Given the bot comes back at 03:00 Seoul time, long after the member's prompt fell due
    due = at(SEOUL, 2024, 5, 1, 20, 0)
    previous = at(SEOUL, 2024, 4, 24, 20, 10)
    restart = at(SEOUL, 2024, 5, 8, 3, 0)
    generator = rng()
    stored, sent = due, []
    now = restart
    # When the sweep runs every 30 s for a day
    while now < restart + timedelta(days=1):
        decision = catch_up(stored, now, Cadence.WEEKLY, EVENING, SEOUL, generator, previous)
        if decision.send_now:
            sent.append(now)
            previous = now
        assert decision.next_at is not None
        stored = decision.next_at
        now += timedelta(seconds=30)
    # Then the one missed prompt goes out that evening inside the window, not at 03:00
    assert len(sent) == 1
    assert local(sent[0], SEOUL).date() == date(2024, 5, 8)
    assert_in_window(sent[0], EVENING, SEOUL)
    assert local(stored, SEOUL).date() == date(2024, 5, 15)


@DERANDOMIZED
@given(
    tz=zones,
    window=windows(),
    due=instants,
    down=st.timedeltas(timedelta(0), timedelta(days=120)),
    seed=seeds,
    cadence=st.sampled_from([*DAY_CADENCES, timedelta(hours=5)]),
)
def test_catch_up_never_sends_twice_for_one_due_time(
    tz: ZoneInfo, window: Window, due: datetime, down: timedelta, seed: int, cadence: Every
) -> None:
    now = due + down
    generator = random.Random(seed)
    decision = catch_up(due, now, cadence, window, tz, generator)
    assert decision.next_at is not None
    assert decision.next_at > now
    assert_in_window(decision.next_at, window, tz)
    # The stored time is now in the future: the same sweep instant sends nothing more.
    again = catch_up(decision.next_at, now, cadence, window, tz, generator)
    assert again == CatchUp(send_now=False, next_at=decision.next_at)


def test_catch_up_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="due must be an aware"):
        catch_up(datetime(2024, 5, 1), datetime.now(UTC), Cadence.WEEKLY, EVENING, SEOUL, rng())


# --------------------------------------------------------------------------- pause


def test_a_pause_holds_prompts_until_it_ends() -> None:
    # Given a weekly member asked on 1 May who pauses for a month on 3 May
    previous = at(SEOUL, 2024, 5, 1, 20, 0)
    now = at(SEOUL, 2024, 5, 3, 10, 0)
    paused_until = at(SEOUL, 2024, 6, 3, 10, 0)
    # Then the first prompt is the first evening after the pause, not the overdue 8 May one
    moment = prompt_after_pause(paused_until, now, Cadence.WEEKLY, EVENING, SEOUL, rng(), previous)
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 6, 3)
    assert_in_window(moment, EVENING, SEOUL)


def test_a_short_pause_does_not_add_a_prompt() -> None:
    # A monthly member who pauses for a week is still asked on their usual day.
    previous = at(SEOUL, 2024, 5, 1, 20, 0)
    now = at(SEOUL, 2024, 5, 2, 10, 0)
    paused_until = now + timedelta(days=7)
    moment = prompt_after_pause(paused_until, now, Cadence.MONTHLY, EVENING, SEOUL, rng(), previous)
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 6, 1)


def test_resuming_early_asks_in_the_next_window_once_the_cadence_allows() -> None:
    previous = at(SEOUL, 2024, 5, 1, 20, 0)
    resumed = at(SEOUL, 2024, 5, 20, 9, 0)  # paused until June, resumed on 20 May
    moment = prompt_after_pause(resumed, resumed, Cadence.WEEKLY, EVENING, SEOUL, rng(), previous)
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 5, 20)
    assert moment > resumed


def test_a_pause_that_ended_while_down_gives_no_prompt_in_the_past() -> None:
    paused_until = at(SEOUL, 2024, 5, 10, 12, 0)
    now = at(SEOUL, 2024, 6, 1, 22, 0)  # after that evening's window
    moment = prompt_after_pause(paused_until, now, Cadence.WEEKLY, EVENING, SEOUL, rng())
    assert moment is not None
    assert local(moment, SEOUL).date() == date(2024, 6, 2)
    assert moment > now


def test_pause_helper_avoids_the_previous_minute() -> None:
    window = parse_window("20:00-20:02")
    previous = at(SEOUL, 2024, 5, 1, 20, 1)
    for seed in range(50):
        moment = prompt_after_pause(
            previous + timedelta(days=3),
            previous,
            Cadence.DAILY,
            window,
            SEOUL,
            rng(seed),
            previous,
        )
        assert moment is not None
        assert local(moment, SEOUL).strftime("%H:%M") == "20:00"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        (" 2d ", timedelta(days=2)),
        ("0d5m", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration"),
        ("7", "not a duration: '7'; write a number and a unit"),
        ("7x", "not a duration"),
        ("-1d", "not a duration"),
        ("1.5h", "not a duration"),
        ("12h1d", "largest unit first"),
        ("1h1h", "not a duration"),
        ("7 d", "not a duration"),
        ("7D", "not a duration"),
        ("٣d", "not a duration"),  # Arabic-Indic three: int() would take it
        ("0s", "more than zero"),
        ("0d0h", "more than zero"),
        ("99999999999d", "too long"),
        ("x" * 200, "…"),  # the echo is cut short
    ],
)
def test_parse_duration_explains_bad_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_duration(text)
    assert len(str(raised.value)) < 220


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=10_000)))
@settings(derandomize=True)
def test_format_duration_round_trips(value: timedelta) -> None:
    value = timedelta(seconds=int(value.total_seconds()))
    assert parse_duration(format_duration(value)) == value


def test_format_duration() -> None:
    assert format_duration(timedelta(days=7)) == "7d"
    assert format_duration(timedelta(seconds=90)) == "1m30s"
    assert format_duration(timedelta(days=1, hours=12)) == "1d12h"
    with pytest.raises(ValueError):
        format_duration(timedelta(0))
    with pytest.raises(ValueError):
        format_duration(timedelta(milliseconds=1500))


@pytest.mark.parametrize(
    ("text", "start", "minutes"),
    [
        ("19:00-21:00", 19 * 60, 120),
        ("9:30-10:00", 9 * 60 + 30, 30),
        ("19:00 – 21:00", 19 * 60, 120),
        ("00:00-24:00", 0, MINUTES_PER_DAY),
        ("22:00-24:00", 22 * 60, 120),
        ("22:00-02:00", 22 * 60, 240),
        ("23:59-00:00", 23 * 60 + 59, 1),
        ("00:00-23:59", 0, MINUTES_PER_DAY - 1),
    ],
)
def test_parse_window(text: str, start: int, minutes: int) -> None:
    assert parse_window(text) == Window(start, minutes)


def test_window_shapes_and_text() -> None:
    assert parse_window("00:00-24:00") is ANY_TIME
    assert ANY_TIME.any_time and not ANY_TIME.crosses_midnight
    assert parse_window("22:00-02:00").crosses_midnight
    assert not parse_window("22:00-24:00").crosses_midnight
    for text in ("19:00-21:00", "00:00-24:00", "22:00-24:00", "22:00-02:00", "23:59-24:00"):
        assert str(parse_window(text)) == text
    # A window that closes at midnight is written 24:00, however it was typed.
    assert str(parse_window("23:59-00:00")) == "23:59-24:00"
    night = parse_window("22:00-02:00")
    assert night.contains(time(23, 0)) and night.contains(time(1, 59))
    assert not night.contains(time(2, 0)) and not night.contains(time(21, 59))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("19-21", "not a time window: '19-21'; write it as HH:MM-HH:MM"),
        ("evening", "not a time window"),
        ("19:00", "not a time window"),
        ("25:00-26:00", "opens between 00:00 and 23:59"),
        ("24:00-02:00", "opens between 00:00 and 23:59"),
        ("19:60-21:00", "opens between"),
        ("19:00-24:30", "closes between"),
        ("19:00-25:00", "closes between"),
        ("19:00-19:00", "for any time of day write 00:00-24:00"),
        ("00:00-00:00", "for any time of day write 00:00-24:00"),
    ],
)
def test_parse_window_explains_bad_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(text)


@pytest.mark.parametrize(
    ("start", "minutes"), [(-1, 60), (1440, 60), (0, 0), (0, 1441), (60, 1440)]
)
def test_window_refuses_impossible_shapes(start: int, minutes: int) -> None:
    with pytest.raises(ValueError):
        Window(start, minutes)
