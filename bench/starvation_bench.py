"""Starvation: can one hostile account delay another member's duress alert?

Per repetition, a fresh bot (real Application, fake Bot API on 127.0.0.1, the default
per-sender flood limit) with an admin and three caseworkers, and escalation sped up
(re-alert after 0.02 min, sweep every 0.2 s):

1. a hostile member opens three "danger / right now" help requests (the bot keeps at most
   two of a member's urgent requests escalating; what it does with the third is reported)
   and leaves them unclaimed until several "STILL UNCLAIMED" re-alerts have gone out, so
   every staff chat is busy with re-alerts;
2. 150 strangers (never enrolled) each send one message, all queued at once;
3. right behind them the victim sends their safety (duress) word.

The clock runs from the victim's message being queued on the fake server to the duress
alert reaching a staff chat (first staff chat, and all of them), split into the time until
the duress case was stored (the update queue and its handling) and the time in the outbox.
Also reported: the outbox and the update queue at that moment, the gap to the previous
message in the first chat reached (Telegram's one message a second per chat, which the
sender enforces), and how many strangers got the neutral line.

Two more columns: the same without strangers, and the same with the hostile member also
typing ``--lines`` short lines just before the strangers (every short one-line text from a
member costs one Argon2id derivation in access control, before the flood limit).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from bot.i18n import t
from bot.logs import configure_logging
from bot.people import find_actor
from sandbox import FakeBotApi, FakeUser
from sandbox.models import Call
from storage.models import Case, OutboxItem, OutboxStatus, Role
from tests.conftest import RunningBot, make_keys, make_settings, start_bot, stop_bot

DURESS_WORD = "Sunflower"
STAFF_NAMES = ("Coordinator", "Mina", "Joon", "Ara")  # the first is the admin


def _prefix(key: str, name: str) -> str:
    """The fixed start of a catalogue text, before its first placeholder."""
    return t("en", key, **{name: "\0"}).split("\0", 1)[0]


DURESS_PREFIX = _prefix("alert_duress", "pseudonym")  # "🚨 URGENT: "
ESCALATED_PREFIX = _prefix("alert_escalated", "minutes")  # "⏰ STILL UNCLAIMED after "
STRANGER_LINE = t("en", "stranger")


@asynccontextmanager
async def starvation_bot() -> AsyncIterator[RunningBot]:
    """bench.harness.bench_bot, but with the default flood limit and fast escalation."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_keys(data_dir)
        async with FakeBotApi() as api:
            settings = make_settings(
                data_dir,
                api,
                SAFERELAY_ESCALATE_MINUTES="0.02",
                SAFERELAY_SWEEP_SECONDS="0.2",
            )
            app = await start_bot(api, settings)
            try:
                yield RunningBot(api, app, settings, io.StringIO())
            finally:
                await stop_bot(app)


@dataclass
class Run:
    first_ms: float  # duress word queued -> alert in the first staff chat
    all_ms: float  # ... -> alert in every staff chat
    case_ms: float  # ... -> duress case stored (the update was handled)
    outbox_pending: int  # outbox items waiting when the word was sent
    outbox_escalations: int  # of which re-alerts
    updates_pending: int  # updates queued on the fake server when the word was sent
    realerts_before: int  # "STILL UNCLAIMED" messages sent before the word
    stranger_replies: int
    urgent_escalating: int  # hostile requests the bot kept escalating
    hostile_cases: int  # hostile requests the bot stored
    gap_ms: float  # in the first chat reached: the alert's send after the one before it

    @property
    def outbox_ms(self) -> float:
        """From the case stored to the first staff chat: the time in the outbox."""
        return self.first_ms - self.case_ms


def _sent(calls: list[Call], start: int, needle: str) -> list[Call]:
    return [
        c
        for c in calls[start:]
        if c.method == "sendMessage" and c.ok and needle in str(c.params.get("text", ""))
    ]


async def _ask_urgent(api: FakeBotApi, user: FakeUser, text: str) -> None:
    """handlers' ask(), counting confirmations (an earlier one may still be on screen)."""

    def confirmations() -> int:
        every = api.bot_messages(user.chat_id, include_deleted=True)
        return sum(1 for m in every if t("en", "ask_sent") in (m.text or ""))

    before = confirmations()
    await user.send_command("ask")
    await user.press(t("en", "cat_danger"))
    await user.press(t("en", "urg_now"))
    await user.send_text(text)
    await api.wait_for(lambda: confirmations() > before)


async def _outbox(bot: RunningBot) -> tuple[int, int]:
    pending = OutboxItem.status == OutboxStatus.PENDING.value
    async with bot.core.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(OutboxItem).where(pending))
        esc = await session.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .where(pending, OutboxItem.collapse_key.is_not(None))
        )
    return int(total or 0), int(esc or 0)


async def _cases(bot: RunningBot, person_id: str) -> tuple[int, int]:
    """(cases stored, cases escalating) for one member."""
    async with bot.core.sessions() as session:
        mine = Case.member_id == person_id
        total = await session.scalar(select(func.count()).select_from(Case).where(mine))
        urgent = await session.scalar(
            select(func.count()).select_from(Case).where(mine, Case.escalate_at.is_not(None))
        )
    return int(total or 0), int(urgent or 0)


async def _person_id(bot: RunningBot, user: FakeUser) -> str:
    async with bot.core.sessions() as session:
        actor = await find_actor(session, bot.core.secrets, user.user_id)
    assert actor is not None
    return actor.person_id


async def one_run(rep: int, strangers: int, realerts: int, lines: int = 0) -> Run:
    async with starvation_bot() as bot:
        api = bot.api
        staff = [
            api.user(610_000 + n, name, language_code="en") for n, name in enumerate(STAFF_NAMES)
        ]
        await bot.enrol(staff[0], Role.ADMIN, "en", name=STAFF_NAMES[0])
        for user, name in zip(staff[1:], STAFF_NAMES[1:], strict=True):
            await bot.enrol(user, Role.CASEWORKER, "en", name=name)

        # The victim has a caseworker; the hostile member has none (so everything they
        # send goes to every caseworker and admin: the worst case).
        await staff[1].send_command("invite")
        link = await staff[1].wait_for_message("?start=")
        victim = api.user(620_001, "Victim", language_code="en")
        await bot.enrol(victim, language="en", token=(link.text or "").rsplit("=", 1)[1])
        hostile = api.user(620_002, "Hostile", language_code="en")
        await bot.enrol(hostile, language="en")

        await victim.send_command("settings")
        await victim.press(t("en", "set_duress_word"))
        await victim.wait_for_message(t("en", "ask_duress_word"))
        await victim.send_text(DURESS_WORD)
        await victim.wait_for_message(t("en", "duress_word_saved"))
        await bot.drained()

        # 1. Three urgent requests, left to escalate.
        for n in range(3):
            await _ask_urgent(api, hostile, f"help {n}, they are at the door")
        hostile_id, victim_id = await _person_id(bot, hostile), await _person_id(bot, victim)
        hostile_cases, urgent_escalating = await _cases(bot, hostile_id)
        await api.wait_for(
            lambda: len(_sent(api.calls, 0, ESCALATED_PREFIX)) >= realerts, timeout=30
        )

        # 2. Strangers, all queued at once; 3. the duress word right behind them.
        seen = len(api.calls)
        for n in range(lines):  # short lines: each may be a word, so each is derived
            await hostile.send_text(f"open up {n}")
        for n in range(strangers):
            await api.user(630_000 + n, f"S{n}", language_code="en").send_text(f"hello {n}")
        outbox_pending, outbox_escalations = await _outbox(bot)
        # Not yet fetched from the fake server, plus fetched and waiting in PTB's queue.
        updates_pending = api.pending_updates() + bot.app.update_queue.qsize() + 1
        realerts_before = len(_sent(api.calls, 0, ESCALATED_PREFIX))
        started = time.monotonic()
        await victim.send_text(DURESS_WORD)

        case_at: float | None = None
        staff_chats = {u.chat_id for u in staff}
        arrived: dict[int, float] = {}
        deadline = started + 60
        while len(arrived) < len(staff_chats):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rep {rep}: duress alert reached {len(arrived)} staff chats")
            for call in _sent(api.calls, seen, DURESS_PREFIX):
                chat = call.params.get("chat_id")
                if chat in staff_chats and chat not in arrived:
                    arrived[chat] = call.at
            if case_at is None and (await _cases(bot, victim_id))[0] > 0:
                case_at = time.monotonic()
            await asyncio.sleep(0.002)
        if case_at is None:
            case_at = min(arrived.values())

        first_chat = min(arrived, key=arrived.__getitem__)
        before_alert = [
            c.at
            for c in api.calls
            if c.method in ("sendMessage", "editMessageText")
            and c.params.get("chat_id") == first_chat
            and c.at < arrived[first_chat]
        ]
        gap = arrived[first_chat] - max(before_alert) if before_alert else float("nan")
        stranger_ids = {630_000 + n for n in range(strangers)}

        def replies() -> int:
            return sum(
                1
                for c in _sent(api.calls, seen, STRANGER_LINE)
                if c.params.get("chat_id") in stranger_ids
            )

        # All strangers' updates handled (the neutral lines go in the background).
        await api.wait_for(lambda: api.pending_updates() == 0, timeout=30)
        await api.wait_idle(timeout=30)
        return Run(
            first_ms=(min(arrived.values()) - started) * 1000,
            all_ms=(max(arrived.values()) - started) * 1000,
            case_ms=(case_at - started) * 1000,
            outbox_pending=outbox_pending,
            outbox_escalations=outbox_escalations,
            updates_pending=updates_pending,
            realerts_before=realerts_before,
            stranger_replies=replies(),
            urgent_escalating=urgent_escalating,
            hostile_cases=hostile_cases,
            gap_ms=gap * 1000,
        )


ROWS: tuple[tuple[str, str], ...] = (
    ("update handled (duress case stored), ms", "case_ms"),
    ("alert in the first staff chat, ms", "first_ms"),
    ("  of which in the outbox, ms", "outbox_ms"),
    ("  that chat's previous send came before, ms", "gap_ms"),
    ("alert in all 4 staff chats, ms", "all_ms"),
    ("updates queued at the word (incl. itself)", "updates_pending"),
    ("outbox items pending at the word", "outbox_pending"),
    ("  of which re-alerts", "outbox_escalations"),
    ("re-alerts sent before the word", "realerts_before"),
    ("stranger replies sent", "stranger_replies"),
)


def table(columns: dict[str, list[Run]]) -> None:
    """Median / max of each figure, one column pair per scenario."""
    head = "".join(f"{name:>22}" for name in columns)
    print(f"{'':44}{head}")
    print(f"{'':44}" + "".join(f"{'median':>11}{'max':>11}" for _ in columns))
    for label, attribute in ROWS:
        cells = ""
        for runs in columns.values():
            values = [float(getattr(r, attribute)) for r in runs]
            cells += f"{statistics.median(values):11.0f}{max(values):11.0f}"
        print(f"{label:44}{cells}")


async def scenario(reps: int, strangers: int, realerts: int, lines: int = 0) -> list[Run]:
    runs = []
    for rep in range(reps):
        run = await one_run(rep, strangers, realerts, lines)
        runs.append(run)
        print(
            f"  {strangers:3d} strangers, {lines:2d} hostile lines, rep {rep + 1}: "
            f"first staff chat {run.first_ms:5.0f} ms, all {run.all_ms:5.0f} ms, "
            f"case stored {run.case_ms:5.0f} ms; {run.updates_pending} updates queued, "
            f"outbox {run.outbox_pending} pending"
        )
    return runs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--strangers", type=int, default=150)
    parser.add_argument(
        "--baseline-reps", type=int, default=3, help="the same without strangers (0: skip)"
    )
    parser.add_argument(
        "--realerts", type=int, default=16, help="re-alerts sent before the word (all chats)"
    )
    parser.add_argument(
        "--lines-reps",
        type=int,
        default=3,
        help="the same with strangers, the hostile member also typing short lines (0: skip)",
    )
    parser.add_argument(
        "--lines", type=int, default=40, help="short lines the hostile member types"
    )
    args = parser.parse_args()
    configure_logging(logging.WARNING, io.StringIO())

    began = time.monotonic()
    columns = {
        f"{args.strangers} strangers": await scenario(args.reps, args.strangers, args.realerts)
    }
    if args.baseline_reps:
        columns["no strangers"] = await scenario(args.baseline_reps, 0, args.realerts)
    if args.lines_reps:
        columns[f"+{args.lines} hostile lines"] = await scenario(
            args.lines_reps, args.strangers, args.realerts, args.lines
        )

    print()
    print("duress word -> alert, while a hostile member's requests escalate")
    table(columns)
    last = columns[next(iter(columns))][-1]
    print(
        f"hostile member: 3 urgent requests sent, {last.hostile_cases} stored, "
        f"{last.urgent_escalating} kept escalating (the others went out once, not urgent)"
    )
    print(f"total time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
