"""Log scrubbing: a filter removes Telegram ids, names, chat ids and message text from every
record (bot.logs).

Unit tests feed records through RedactingFilter/scrub. The end-to-end tests run a whole
scenario -- enrolment, a check-in with a note, a help request, a relayed message and a
caseworker's answer, a code word, a quick exit -- with every library at DEBUG
(``verbose_libraries=True``: PTB, httpx, apscheduler...), then search the whole output for
every name, username, id, text and secret of the scenario.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.i18n import t
from bot.logs import (
    NOISY,
    RedactingFilter,
    configure_logging,
    forget_remembered,
    remember_values,
    scrub,
)
from sandbox import FakeBotApi
from storage.models import OutboxItem, Role
from tests.conftest import RunningBot, make_settings, start_bot, stop_bot
from tests.handlers.conftest import staff_invite

TOKEN = "7212345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # the shape BotFather hands out


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Whatever a test does to the root logger and the library levels is undone; the
    remembered values start and end empty."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in NOISY}
    forget_remembered()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)
        forget_remembered()


def emit(message: str, *args: object, exc: BaseException | None = None) -> str:
    """One record through a handler set up like configure_logging's; the formatted output."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.logging.unit")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    try:
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        logger.error(message, *args, exc_info=exc_info)
    finally:
        logger.handlers.clear()
        logger.propagate = True
    return stream.getvalue()


# ---------------------------------------------------------------------------------------
# unit tests
# ---------------------------------------------------------------------------------------


def test_the_bot_token_is_replaced_wherever_it_appears() -> None:
    url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
    for message in (
        f"HTTP Request: POST {url} 200",
        f"token={TOKEN}",
        f"{TOKEN}",
        f"('{TOKEN}',)",
    ):
        out = emit("%s", message)
        assert TOKEN not in out
        assert TOKEN.split(":")[1] not in out
        assert TOKEN.split(":")[0] not in out
    assert "<token>" in emit("%s", url)


def test_ids_of_six_digits_or_more_are_replaced_positive_and_negative() -> None:
    out = emit(
        "user %s wrote in chat %d (group %s, channel %s), message %s",
        424242421,
        5550001234,
        "-100123",
        -1001234567890,
        "id=777777",
    )
    for needle in ("424242421", "5550001234", "100123", "1001234567890", "777777"):
        assert needle not in out
    assert out.count("<n>") == 5
    # A minus sign is not left dangling in front of a chat id, and short numbers stay.
    assert "-<n>" not in out
    assert emit("retry %d of %d after %s s", 3, 10, "12345").endswith(
        "retry 3 of 10 after 12345 s\n"
    )


def test_ids_inside_structures_and_urls_are_replaced() -> None:
    update = {
        "update_id": 100000001,
        "message": {"chat": {"id": -1001234567890}, "from": {"id": 424242421}},
    }
    out = emit("update %r", update)
    assert "1001234567890" not in out and "424242421" not in out
    out = emit("GET /getChat?chat_id=424242421&x=1 and tg://user?id=5550001234")
    assert "424242421" not in out and "5550001234" not in out


def test_an_id_at_the_end_of_a_sentence_is_replaced() -> None:
    out = emit("Bad Request: chat not found for 424242421.")
    assert "424242421" not in out


def test_a_remembered_name_is_replaced_everywhere() -> None:
    remember_values("Zhangwei-Distinctive", "Oksana-Lastname", "zhang_distinct_user")
    out = emit(
        "User(first_name='Zhangwei-Distinctive', last_name='Oksana-Lastname', "
        "username='zhang_distinct_user') and @zhang_distinct_user"
    )
    for needle in ("Zhangwei-Distinctive", "Oksana-Lastname", "zhang_distinct_user"):
        assert needle not in out
    # Empty, missing and one-character values are not registered (they would blank out
    # every log line).
    remember_values(None, "", " ", "x")
    assert emit("x marks the spot") == "ERROR tests.logging.unit: x marks the spot\n"


def test_a_remembered_multi_line_text_is_replaced_whole_by_line_and_escaped() -> None:
    text = "I am staying with my aunt Sunhee\nnear Dandong, by the river\n내일 아침 단둥 역"
    remember_values(text)
    outputs = [
        emit("%s", text),  # as received
        emit("text: %s", text.splitlines()[1]),  # one line of it quoted alone
        emit("params %r", {"chat_id": 1, "text": text}),  # repr, as PTB logs parameters
        emit('body {"text": "%s"}', text.replace("\n", "\\n")),  # JSON-escaped
        emit('body {"text": "%s"}', text.encode("unicode_escape").decode()),  # ASCII JSON
    ]
    for out in outputs:
        for needle in ("Sunhee", "Dandong", "river", "단둥", "내일 아침"):
            assert needle not in out, out


def test_a_remembered_text_with_both_quote_kinds_is_replaced_in_its_repr() -> None:
    text = 'He said "don\'t come to Yanji station"'
    remember_values(text)
    out = emit("params %r", {"text": text})
    assert "Yanji" not in out


def test_a_remembered_value_inside_the_token_does_not_unmask_it() -> None:
    token = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"  # sandbox's
    remember_values("ok")  # a member answered "ok"
    out = emit("HTTP Request: POST http://127.0.0.1:8081/bot%s/getUpdates", token)
    assert "ForTestsOnly_abcdefghijklmn" not in out


# Built at import time: a traceback quotes source lines, and these must not be the reason
# a value is (or is not) found in the output.
USER_ID, CHAT_ID, NAME = 424242421, -1001234567890, "Zhangwei-Distinctive"
BLOCKED = f"Forbidden: bot was blocked by the user {USER_ID} ({TOKEN})"
SAID = f"chat {CHAT_ID} said {NAME!r}"


def test_an_exception_message_never_reaches_the_log() -> None:
    remember_values(NAME)

    def fail(message: str) -> None:
        raise RuntimeError(message)

    try:
        fail(BLOCKED)
    except RuntimeError as exc:
        try:
            raise ValueError(SAID) from exc
        except ValueError as chained:
            out = emit("delivery failed: %s", type(chained).__name__, exc=chained)
    for needle in (str(USER_ID), str(CHAT_ID)[1:], NAME, TOKEN, "blocked by the user"):
        assert needle not in out
    # What is kept: the type and where it happened.
    assert "ValueError (message withheld)" in out
    assert "Traceback (most recent call last)" in out
    assert "test_logging.py" in out


def test_exc_info_true_and_logger_exception_are_scrubbed_too() -> None:
    stream = io.StringIO()
    handler = configure_logging(logging.DEBUG, stream)
    assert isinstance(handler.filters[0], RedactingFilter)
    log = logging.getLogger("tests.logging.exception")
    try:
        raise KeyError(BLOCKED)
    except KeyError:
        log.exception("lookup failed for %s", CHAT_ID)
        log.warning("again", exc_info=True)
    out = stream.getvalue()
    for needle in (str(USER_ID), str(CHAT_ID)[1:], TOKEN, "blocked by the user"):
        assert needle not in out
    assert out.count("KeyError (message withheld)") == 2


def test_a_malformed_log_call_does_not_raise_at_the_call_site() -> None:
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream)
    saved, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        logging.getLogger("tests.logging.malformed").warning("%d items", "not a number")
    finally:
        logging.raiseExceptions = saved


def test_configure_logging_holds_libraries_at_warning_unless_verbose() -> None:
    configure_logging(logging.DEBUG, io.StringIO())
    assert all(logging.getLogger(name).level == logging.WARNING for name in NOISY)
    configure_logging(logging.DEBUG, io.StringIO(), verbose_libraries=True)
    assert all(logging.getLogger(name).level == logging.DEBUG for name in NOISY)
    assert len(logging.getLogger().handlers) == 1


# ---------------------------------------------------------------------------------------
# end to end, with every library at DEBUG
# ---------------------------------------------------------------------------------------

ADMIN_ID, MEMBER_ID = 7319045526, 6118342907
ADMIN = {
    "first_name": "Zhangwei-Distinctive",
    "last_name": "Oksana-Lastname",
    "username": "zhang_distinct_user",
}
MEMBER = {
    "first_name": "Solah-Uniquename",
    "last_name": "Paekdu-Family",
    "username": "kimsolah_secret",
}
TEXTS = {
    "caseworker name": "Ms Hwang Bora",
    "note": "Meet me at the Yanji station north gate 3pm",
    "request": "Broker kept my passport in Hunchun",
    "relayed": "I am staying with my aunt Sunhee near Dandong\n내일 아침 단둥 역에서 만나요",
    "reply": "Take the 8am bus to Shenyang tomorrow",
    "code word": "sunflower-blue-42",
}


@dataclass
class Scenario:
    log: str
    token: str
    invite: str


@pytest.fixture
async def verbose_bot(api: FakeBotApi, data_dir: Path) -> AsyncIterator[RunningBot]:
    """Like tests/conftest.py's ``bot``, with PTB, httpx, apscheduler... at DEBUG too."""
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream, verbose_libraries=True)
    settings = make_settings(data_dir, api)
    app = await start_bot(api, settings)
    running = RunningBot(api=api, app=app, settings=settings, log=stream)
    try:
        yield running
    finally:
        await stop_bot(app)


async def outbox_drained(bot: RunningBot) -> None:
    """Until nothing is pending in the outbox. A message shows in the fake chat a moment
    before the sender records it as delivered, which is what makes a reply to it routable;
    a test replies at machine speed."""
    async with asyncio.timeout(10):
        while True:
            async with bot.core.sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(OutboxItem)
                    .where(OutboxItem.status == "pending")
                )
            if not pending:
                return
            await asyncio.sleep(0.01)


async def run_scenario(bot: RunningBot) -> Scenario:
    api = bot.api
    admin = api.user(ADMIN_ID, **ADMIN, language_code="en")
    member = api.user(MEMBER_ID, **MEMBER, language_code="ko")
    # Enrolment: the admin from a shell invite, the member from the admin's /invite.
    await bot.enrol(admin, Role.ADMIN, "en", name=TEXTS["caseworker name"])
    invite = await staff_invite(bot, admin)
    await bot.enrol(member, Role.MEMBER, "ko", token=invite)
    # A check-in with a note.
    await member.send_command("checkin")
    await member.press(t("ko", "checkin_health_2"))
    await member.press(t("ko", "yes"))
    await member.send_text(TEXTS["note"])
    await member.wait_for_message(t("ko", "checkin_thanks"))
    # A help request with words.
    await member.send_command("ask")
    await member.press(t("ko", "cat_danger"))
    await member.press(t("ko", "urg_today"))
    await member.send_text(TEXTS["request"])
    await member.wait_for_message(t("ko", "ask_sent"))
    # A message relayed to the caseworker, and the caseworker's Telegram reply to it.
    await member.send_text(TEXTS["relayed"])
    relayed = await admin.wait_for_message("Sunhee", timeout=10)
    await outbox_drained(bot)  # recorded as delivered, so the reply can be routed
    await admin.send_text(TEXTS["reply"], reply_to=relayed.message_id)
    await member.wait_for_message(TEXTS["reply"], timeout=10)
    # /settings: a code word, then the quick exit.
    await member.send_command("settings")
    await member.press(t("ko", "set_code_word"))
    await member.wait_for_message(t("ko", "ask_code_word"))
    await member.send_text(TEXTS["code word"])
    await member.wait_for_message(t("ko", "code_word_saved"))
    await bot.api.wait_idle()
    await member.send_command("clear")
    await bot.api.wait_idle()
    await stop_bot(bot.app)  # everything the shutdown logs is searched too
    return Scenario(log=bot.log.getvalue(), token=api.token, invite=invite)


def found(log: str, needles: dict[str, str]) -> dict[str, str]:
    """label -> a line of the log that holds it."""
    hits = {}
    for label, needle in needles.items():
        for line in log.splitlines():
            if needle in line:
                hits[label] = line[:300]
                break
    return hits


def assert_verbose(log: str) -> None:
    """The libraries did log at DEBUG: the search below covers their output."""
    assert "getUpdates" in log and "HTTP Request: POST" in log
    assert " DEBUG telegram." in log and " httpx: HTTP Request" in log
    assert " INFO bot.app: bot ready" in log


async def test_verbose_logs_carry_no_telegram_id_and_no_bot_token(verbose_bot: RunningBot) -> None:
    scenario = await run_scenario(verbose_bot)
    assert_verbose(scenario.log)
    bot_id, secret = scenario.token.split(":")
    needles = {
        "admin id": str(ADMIN_ID),
        "member id": str(MEMBER_ID),
        "bot token": scenario.token,
        "bot token secret": secret,
        "bot token secret (half)": secret[len(secret) // 2 :],
        "bot id": bot_id,
    }
    assert found(scenario.log, needles) == {}


def name_and_text_needles() -> dict[str, str]:
    needles = {f"admin {k}": v for k, v in ADMIN.items()}
    needles |= {f"member {k}": v for k, v in MEMBER.items()}
    needles |= TEXTS
    needles |= {
        f"{label} (line)": line for label, text in TEXTS.items() for line in text.splitlines()
    }
    return needles | {"note words": "Yanji station", "relayed words": "Sunhee"}


# PTB logs these before any handler runs, so before access control has registered the
# sender's name and text with remember_values: only the field-based redaction covers them
# (test_verbose_logs_carry_no_name_text_or_secret checks all lines, these included).
BEFORE_ACCESS_CONTROL = (
    "Call to Bot API endpoint `getUpdates` finished with return value",
    "Processing update Update(",
)


async def test_verbose_logs_hide_every_name_and_text_once_the_bot_has_seen_it(
    verbose_bot: RunningBot,
) -> None:
    scenario = await run_scenario(verbose_bot)
    assert_verbose(scenario.log)
    lines = [
        line
        for line in scenario.log.splitlines()
        if not any(marker in line for marker in BEFORE_ACCESS_CONTROL)
    ]
    assert len(lines) > 100
    hits = found("\n".join(lines), name_and_text_needles())
    assert hits == {}, "\n".join(f"{label}: {line}" for label, line in hits.items())


async def test_verbose_logs_carry_no_name_text_or_secret(verbose_bot: RunningBot) -> None:
    scenario = await run_scenario(verbose_bot)
    assert_verbose(scenario.log)
    needles = name_and_text_needles() | {"invite token": scenario.invite}
    hits = found(scenario.log, needles)
    assert hits == {}, "\n".join(f"{label}: {line}" for label, line in hits.items())


# Our own loggers may say only these (and the daily totals of bot/activity.py).
OWN_LOGGER = re.compile(
    r" (DEBUG|INFO|WARNING|ERROR|CRITICAL) ((?:bot|handlers|storage|crypto)\.\S+): (.*)"
)
ALLOWED_OWN_LINES = {"bot ready", "database schema brought up to date"}


async def test_no_line_marks_an_event_of_a_member(bot: RunningBot) -> None:
    """Enrolment, check-in, help request, relay, code word, quick exit, duress and erasure
    leave no line of our own in the log: a dated line is evidence (bot/activity.py)."""
    api = bot.api
    admin = api.user(ADMIN_ID, **ADMIN, language_code="en")
    member = api.user(MEMBER_ID, **MEMBER, language_code="en")
    await bot.enrol(admin, Role.ADMIN, "en", name="Coordinator")
    await bot.enrol(member, Role.MEMBER, "en", token=await staff_invite(bot, admin))
    await member.send_command("checkin")
    await member.press(t("en", "checkin_health_2"))
    await member.press(t("en", "yes"))
    await member.press(t("en", "checkin_skip"))
    await member.wait_for_message(t("en", "checkin_thanks"))
    await member.send_command("settings")
    await member.press(t("en", "set_duress_word"))
    await member.send_text("marigold")
    await member.wait_for_message(t("en", "duress_word_saved"))
    await member.send_text("marigold")
    await admin.wait_for_message("URGENT", timeout=10)
    await member.send_command("clear")
    await api.wait_idle()
    await member.send_command("forget")
    await member.wait_for_message(t("en", "forget_question"))
    await member.press(t("en", "forget_confirm"))
    await api.wait_for(lambda: api.visible(member.chat_id) == [], timeout=10)
    await api.wait_idle()
    await stop_bot(bot.app)
    own = [m.groups() for m in OWN_LOGGER.finditer(bot.log.getvalue())]
    assert ("INFO", "bot.app", "bot ready") in own
    unexpected = [
        line
        for line in own
        if line[2] not in ALLOWED_OWN_LINES and not line[2].startswith("last 24 h")
    ]
    assert unexpected == []


def test_the_daily_line_holds_totals_only() -> None:
    from bot import activity

    activity.report()  # other tests in this process counted too
    activity.count("updates handled", 3)
    activity.count("messages sent")
    line = activity.report()
    assert line.startswith("last 24 h: 3 updates handled, 1 messages sent, 0 sends failed")
    assert activity.report().startswith("last 24 h: 0 updates handled")
    for kind in activity.KINDS:
        for word in ("duress", "exit", "eras", "check", "enrol", "help"):
            assert word not in kind


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("saved passport scan.jpg for later", "passport scan.jpg"),
        ("{'file_name': 'IMG_2041.HEIC'}", "IMG_2041"),
        ("call +86 139 1234 5678 tonight", "139 1234"),
        ("call 010-1234-5678", "1234-5678"),
        ("(0433) 285.1234", "285.1234"),
        ("meet at 42.9048, 129.5139", "42.9048"),
        ("Location(latitude=42.9, longitude=129.5)", "129.5"),
        ("message_id=42 reply_to_message_id: 7 'id': 315", "315"),
    ],
)
def test_file_names_phones_places_and_short_ids_are_scrubbed(line: str, hidden: str) -> None:
    assert hidden not in scrub(line)


@pytest.mark.parametrize(
    "line",
    ["HTTP/1.1 200 OK", "took 12.5 s", "2026-11-23 10:00:01 start", "bot/app.py line 98"],
)
def test_ordinary_operational_lines_stay_readable(line: str) -> None:
    assert scrub(line) == line
