"""The organisation's yearly table can be reproduced from sealed check-ins, with the team key,
and no figure singles anyone out."""

from __future__ import annotations

import asyncio
import io
import re
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from bot import report_output
from bot.broadcasts import Notice, answer_rsvp, create_broadcast
from bot.checkins import CheckInAnswers, record_checkin
from bot.cli import main
from bot.core import Core
from bot.people import actor_of
from bot.report_output import cjk_font
from bot.reports import (
    PRIVATE,
    PUBLIC,
    By,
    Request,
    Sums,
    collect,
    figures,
    progress_line,
    save_yearly,
    saved_years,
    sums_of,
    with_saved,
)
from bot.schedules import change_plan, start_schedule
from crypto.keystore import unlock_team_key
from storage.models import CheckIn, Person, Role, Tally
from tests.conftest import PASSPHRASE, bare_people, database_env, secrets_of, team_key_of

# The organisation's published figures, and members chosen to give them exactly:
# year -> (members, how many of them have a mean health of 3 (the rest 2), feeling a threat)
PUBLISHED = {
    2016: (50, 30, 11),  # 130 / 50 = 2.60; 11 / 50 = 22 %
    2017: (25, 16, 22),  # 66 / 25 = 2.64; 22 / 25 = 88 %
    2018: (100, 91, 97),  # 291 / 100 = 2.91; 97 / 100 = 97 %
}
# 2014 by hand: ten members whose own means are 1, 1 and eight times 2 (18 / 10 = 1.80),
# some answering more often than others, so a mean over check-ins would differ (27 / 16).
HEALTH_2014 = [[1, 1, 1, 1], [1], [1, 3], [2], [2, 2], [2], [2], [2], [3, 1], [2]]


def answers_for(year: int) -> list[tuple[list[int], bool]]:
    """Each member's health answers that year and whether they felt a threat."""
    if year == 2014:
        return [(health, n < 5) for n, health in enumerate(HEALTH_2014)]
    members, threes, threatened = PUBLISHED[year]
    result = []
    for n in range(members):
        mean = 3 if n < threes else 2
        # Every fifth member answers twice, around their mean: their mean is unchanged.
        health = [mean - 1, mean + 1] if n % 5 == 0 else [mean]
        result.append((health, n < threatened))
    return result


def cli_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("SAFERELAY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SAFERELAY_SECRETS_DIR", str(secrets_of(data_dir)))
    monkeypatch.setenv("SAFERELAY_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in database_env(data_dir).items():
        monkeypatch.setenv(name, value)


async def report(
    capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str
) -> tuple[dict[tuple[str, str], list[str]], str]:
    """Run `saferelay report` in this process (its own event loop, so in a thread): its
    table as {(period, members of): cells}, and all it printed."""
    argv = ["report", "--key", str(team_key_of(data_dir)), *args]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    table = {
        (cells[0], cells[1]): cells[2:]
        for cells in (line.split() for line in out.splitlines())
        if len(cells) > 2 and re.fullmatch(r"\d{4}(-\S+)?", cells[0])
    }
    return table, out


def everyone(table: dict[tuple[str, str], list[str]]) -> dict[str, list[str]]:
    return {period: cells for (period, part), cells in table.items() if part == "all"}


async def seed_published(core: Core) -> None:
    """The organisation's years as check-ins through the real service, and a 2018 retreat
    whose RSVPs (through the real service too) expect 41 people."""
    members = bare_people(100)
    (admin,) = bare_people(1, Role.ADMIN, start=200)
    async with core.sessions() as session, session.begin():
        session.add_all([*members, admin])
        await session.flush()
        for year in (2014, *PUBLISHED):
            for n, (health, threat) in enumerate(answers_for(year)):
                for k, answer in enumerate(health):
                    at = datetime(year, 1 + n % 12, 1 + k, tzinfo=UTC)
                    answers = CheckInAnswers(answer, threat)
                    await record_checkin(
                        session, core.secrets.team_sealer, members[n].id, answers, at=at
                    )
        retreat = await create_broadcast(
            session,
            core.secrets,
            actor_of(admin, core.secrets),
            Notice({"*": "Retreat"}),
            rsvp=True,
            event_at=datetime(2018, 8, 10, tzinfo=UTC),
            send_at=datetime(2018, 7, 1, tzinfo=UTC),
            progress_message_id=None,
        )
        assert retreat is not None
        await session.flush()
        before = datetime(2018, 7, 2, tzinfo=UTC)
        for n, count in enumerate([4] * 9 + [5]):  # 9 x 4 + 5 = 41 people
            for choice in ("yes", f"c{count}"):
                await answer_rsvp(
                    session, core.secrets, members[n].id, retreat.id, choice, now=before
                )


async def test_report_prints_the_organisations_published_table(
    core: Core, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the organisation's years, seeded as members answered them
    await seed_published(core)
    cli_env(monkeypatch, data_dir)
    chart = data_dir.parent / "wellbeing.png"
    # When the coordinator asks for the yearly report with a chart in Korean
    printed, out = await report(capsys, data_dir, "--chart", str(chart), "--lang", "ko")
    table = everyone(printed)
    # Then each year shows the published mean health and threat share, and the retreat
    health = {year: cells[2] for year, cells in table.items()}
    threat = {year: cells[4] for year, cells in table.items()}
    assert health == {"2014": "1.80", "2016": "2.60", "2017": "2.64", "2018": "2.91"}
    assert threat == {"2014": "50%", "2016": "22%", "2017": "88%", "2018": "97%"}
    assert table["2018"][5] == "41" and table["2016"][5] == "—"
    assert [table[y][0] for y in ("2014", "2016", "2017", "2018")] == ["10", "50", "25", "100"]
    assert "each member counts once per period" in out
    # And the chart is a PNG of the size drawn, labelled in Korean only where a font can
    font = cjk_font("ko")
    if font is None:
        assert "en labels (no font with Hangul and Chinese glyphs installed" in out
    else:
        assert f"ko labels, font {font}" in out
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (900, 900)
    assert 20_000 < len(data) < 2_000_000


async def test_per_checkin_means_and_public_rounding_differ_as_documented(
    core: Core, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_published(core)
    cli_env(monkeypatch, data_dir)
    csv_path = data_dir.parent / "report.csv"
    printed, _ = await report(capsys, data_dir, "--per-checkin", "--csv", str(csv_path))
    per_checkin = everyone(printed)
    # 27 answers' worth of health over 16 check-ins in 2014: each check-in once
    assert per_checkin["2014"][2] == "1.69" and per_checkin["2014"][1] == "16"
    assert "2014,all,10,16,1.69," in csv_path.read_text()
    printed, _ = await report(capsys, data_dir, "--public", "--since", "2016", "--until", "2017")
    public = everyone(printed)
    # One decimal, shares to 5 %, counts to 5; only the years asked for
    assert sorted(public) == ["2016", "2017"]
    assert public["2017"][:3] == ["25", "30", "2.6"] and public["2017"][4] == "90%"


async def test_members_in_china_and_korea_compared_without_singling_anyone_out(
    core: Core, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given twelve members in China and three in Korea in 2019, six in Korea in 2020
    members = bare_people(18)
    china, korea = members[:12], members[12:]
    async with core.sessions() as session, session.begin():
        session.add_all(members)
        await session.flush()
        for person in members:
            start_schedule(session, core, person.id)
        await session.flush()
        for person in members:
            zone = "Asia/Shanghai" if person in china else "Asia/Seoul"
            await change_plan(session, core.secrets, person.id, zone=zone)
        for year, present in ((2019, china + korea[:3]), (2020, china + korea)):
            for n, person in enumerate(present):
                answers = CheckInAnswers(2 + n % 3, person in china)
                at = datetime(year, 5, 1, tzinfo=UTC)
                await record_checkin(session, core.secrets.team_sealer, person.id, answers, at=at)
    cli_env(monkeypatch, data_dir)
    # When the coordinator compares the two regions
    # The database named on the command line, not the one the environment names
    database = database_env(data_dir).get("DATABASE_URL", str(data_dir / "saferelay.db"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{data_dir.parent / 'elsewhere.db'}")
    lines, _ = await report(
        capsys, data_dir, "--db", database, "--region", "china", "--region", "korea"
    )
    # Then three members in Korea hide Korea, and China too (the whole minus China is Korea)
    assert lines[("2019", "china")][:3] == ["—", "—", "—"]
    assert lines[("2019", "korea")][:3] == ["—", "—", "—"]
    assert lines[("2019", "all")][0] == "15"
    # And with six in Korea both show means, but China's 100 % (twelve members) would give
    # away Korea's 0 % (six): both shares stay hidden
    assert lines[("2020", "china")][0] == "12" and lines[("2020", "korea")][0] == "6"
    assert lines[("2020", "china")][4] == "—" and lines[("2020", "korea")][4] == "—"


def sums(members: int, yes: int, health: int = 3) -> Sums:
    result = Sums()
    for n in range(members):
        result.add_member(1, health, health * health, int(n < yes))
    return result


@pytest.mark.parametrize(
    ("members", "yes", "mean_shown", "share_shown"),
    [
        (4, 2, False, False),
        (5, 2, True, True),
        (7, 7, True, False),
        (9, 0, True, False),
        (10, 10, True, True),
        (10, 0, True, True),
    ],
)
def test_small_numbers_stay_hidden(
    members: int, yes: int, mean_shown: bool, share_shown: bool
) -> None:
    row = figures("2019", "all", sums(members, yes), None, Request())
    assert (row.mean_health is not None, row.threat_share is not None) == (mean_shown, share_shown)
    assert (row.members is not None) == mean_shown


def test_public_figures_need_more_members_and_are_rounded() -> None:
    request = Request(rule=PUBLIC)
    assert figures("2019", "all", sums(9, 3), None, request).mean_health is None
    row = figures("2019", "all", sums(12, 5, health=2), None, request)
    assert (row.members, row.threat_share, row.mean_health) == (10, 0.4, 2.0)
    # 19 of 19 is never printed as 100 %
    assert figures("2019", "all", sums(19, 19), None, request).threat_share is None
    assert PRIVATE.min_members == 5


async def test_saved_figures_outlive_purged_records(core: Core, data_dir: Path) -> None:
    opener = unlock_team_key(team_key_of(data_dir), PASSPHRASE)
    request = Request(by=By.YEAR)
    async with core.sessions() as session, session.begin():
        people: list[Person] = bare_people(5)
        session.add_all(people)
        await session.flush()
        for n, person in enumerate(people):
            for answer in (n + 1, n + 1, 1):
                at = datetime(2019, 5, 1, tzinfo=UTC)
                await record_checkin(
                    session,
                    core.secrets.team_sealer,
                    person.id,
                    CheckInAnswers(answer, n % 2 == 0),
                    at=at,
                )
    async with core.sessions() as session, session.begin():
        first = sums_of(await collect(session, opener, request))
        await save_yearly(session, first)
    async with core.sessions() as session, session.begin():
        await session.execute(delete(CheckIn))  # as retention would
    async with core.sessions() as session:
        live = sums_of(await collect(session, opener, request))
        after = with_saved(live, await saved_years(session), request)
    assert live == {} and after == first
    assert after["2019"].members == 5 and after["2019"].checkins == 15


async def test_years_saved_before_member_sums_show_the_per_checkin_figure(core: Core) -> None:
    old = {
        "survey_members": 6,
        "survey_checkins": 12,
        "survey_health_sum": 30,
        "survey_threat_yes": 3,
    }
    async with core.sessions() as session, session.begin():
        session.add_all(Tally(period="2015", name=k, value=v) for k, v in old.items())
    async with core.sessions() as session:
        saved = await saved_years(session)
    row = figures("2015", "all", saved["2015"], None, Request())
    assert (row.mean_health, row.threat_share, row.estimated) == (2.5, 0.25, True)


def test_chart_labels_fall_back_to_english_without_a_cjk_font(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report_output, "cjk_font", lambda language: None)
    assert report_output.chart_language("ko") == ("en", None)
    assert report_output.chart_language("en") == ("en", None)


def test_progress_shows_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_line(io.StringIO()) is None
    terminal = Terminal()
    show = progress_line(terminal)
    assert show is not None
    show(1000, 4000)
    show(4000, 4000)
    assert terminal.getvalue().count("\r") == 2 and terminal.getvalue().endswith("4,000/4,000\n")
