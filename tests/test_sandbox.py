"""Tests of the fake Bot API, driven by the real python-telegram-bot (no mocks)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from sandbox import (
    ChatMessage,
    EntityParseError,
    FakeBotApi,
    FakeUser,
    FloodRefusal,
    parse_text,
)
from sandbox.__main__ import _parser

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        yield api


@pytest.fixture
async def bot(server: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(
        server.token, base_url=server.base_url, base_file_url=server.base_file_url
    ) as real_bot:
        yield real_bot


@pytest.fixture
async def alice(server: FakeBotApi) -> FakeUser:
    """A user who has already written to the bot (so the bot may message her)."""
    user = server.user(1001, "Alice", username="alice")
    await user.send_text("hi")
    return user


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_message.text is not None
    await update.effective_message.reply_text(
        f"echo: {update.effective_message.text}",
        reply_parameters=ReplyParameters(update.effective_message.message_id),
    )


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes", callback_data="answer:yes"),
                InlineKeyboardButton("No", callback_data="answer:no"),
            ],
            [InlineKeyboardButton("Docs", url="https://example.org/docs")],
        ]
    )
    await context.bot.send_message(
        update.effective_chat.id,
        f"<b>Welcome</b>, args={context.args}",
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard,
        protect_content=True,
    )


async def _menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        "Pick one",
        reply_markup=ReplyKeyboardMarkup(
            [[KeyboardButton("Check in"), "Help"]], one_time_keyboard=True
        ),
    )


async def _hide(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("Hidden", reply_markup=ReplyKeyboardRemove())


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    if not query.data.startswith("answer:"):
        await query.answer("Not allowed", show_alert=True)
        return
    choice = query.data.removeprefix("answer:")
    await query.answer(f"got {choice}")
    await query.edit_message_text(f"You chose {choice}")


async def _media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    kind = next(
        name
        for name in ("sticker", "photo", "voice", "document", "location", "contact")
        if getattr(message, name)
    )
    await message.reply_text(f"got a {kind}")


def _build_app(server: FakeBotApi) -> Application[Any, Any, Any, Any, Any, Any]:
    app = (
        ApplicationBuilder()
        .token(server.token)
        .base_url(server.base_url)
        .base_file_url(server.base_file_url)
        .build()
    )
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CommandHandler("menu", _menu))
    app.add_handler(CommandHandler("hide", _hide))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    app.add_handler(MessageHandler(~filters.TEXT, _media))
    app.add_handler(CallbackQueryHandler(_button))
    return app


@pytest.fixture
async def app(server: FakeBotApi) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    application = _build_app(server)
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()


async def _raw_post(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------------------------------------
# basics: getMe, token, routing, encodings
# ---------------------------------------------------------------------------------------------


async def test_get_me_with_real_bot(server: FakeBotApi, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == server.bot_id == 123456789
    assert me.is_bot
    assert me.username == "saferelay_test_bot"
    assert me.first_name == "SafeRelay Test"
    assert bot.username == "saferelay_test_bot"
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.calls[-1].method == "getMe" and server.calls[-1].status == 200


async def test_wrong_token_is_invalid_token(server: FakeBotApi) -> None:
    wrong = Bot("42:not-the-right-token", base_url=server.base_url)
    with pytest.raises(InvalidToken, match="Unauthorized"):
        await wrong.get_me()
    status, body = await _raw_post(f"{server.base_url}42:nope/getMe")
    assert status == 401
    assert body == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_and_unimplemented_methods(server: FakeBotApi, bot: Bot) -> None:
    status, body = await _raw_post(f"{server.base_url}{server.token}/noSuchMethod")
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found"}
    # Method names are case-insensitive, like Telegram's.
    status, body = await _raw_post(f"{server.base_url}{server.token}/GETME")
    assert status == 200 and body["result"]["username"] == "saferelay_test_bot"
    # A real Bot API method the fake lacks fails loudly instead of looking like a bad token.
    with pytest.raises(NetworkError, match="fake Bot API has no sendDice"):
        await bot.send_dice(1001)


async def test_json_body_and_query_string_clients(server: FakeBotApi, alice: FakeUser) -> None:
    url = f"{server.base_url}{server.token}/sendMessage"
    markup = {"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]}
    status, body = await _raw_post(
        url, json={"chat_id": alice.chat_id, "text": "from json", "reply_markup": markup}
    )
    assert status == 200 and body["ok"] is True
    assert body["result"]["reply_markup"] == markup
    # reply_markup as a JSON string inside a JSON body (some clients do that)
    status, body = await _raw_post(
        url, json={"chat_id": str(alice.chat_id), "text": "123", "reply_markup": json.dumps(markup)}
    )
    assert status == 200 and body["result"]["text"] == "123"
    status, body = await _raw_post(url + f"?chat_id={alice.chat_id}&text=true")
    assert status == 200 and body["result"]["text"] == "true"
    assert [m.text for m in alice.inbox()] == ["from json", "123", "true"]
    assert alice.last().buttons() == []
    assert alice.inbox()[0].buttons() == [("OK", "ok")]
    assert server.calls[-2].params["reply_markup"] == markup


async def test_form_parameters_are_decoded_in_calls(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    await bot.send_message(
        alice.chat_id,
        "42",
        reply_markup=InlineKeyboardMarkup.from_button(InlineKeyboardButton("x", callback_data="y")),
        disable_notification=True,
    )
    params = server.calls_to("sendMessage")[-1].params
    assert params["chat_id"] == alice.chat_id
    assert params["text"] == "42"
    assert params["disable_notification"] is True
    assert params["reply_markup"] == {"inline_keyboard": [[{"text": "x", "callback_data": "y"}]]}
    assert alice.last().disable_notification is True


# ---------------------------------------------------------------------------------------------
# Application round trips
# ---------------------------------------------------------------------------------------------


async def test_echo_handler_round_trip(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    bob = server.user(2002, "Bob", last_name="Kim", username="bobkim")
    sent = await bob.send_text("  hello there  ")
    assert sent.text == "hello there" and not sent.from_bot
    reply = await bob.wait_for_message("echo: hello there")
    assert reply.from_bot and reply.reply_to_message_id == sent.message_id
    assert reply.message_id == sent.message_id + 1
    await server.wait_idle()
    assert server.pending_updates() == 0
    assert [(m.from_bot, m.text) for m in server.chat(bob.chat_id)] == [
        (False, "hello there"),
        (True, "echo: hello there"),
    ]
    get_updates = server.calls_to("getUpdates")
    assert any(call.params.get("offset") for call in get_updates)
    assert server.calls_to("deleteWebhook")


async def test_command_entities_and_args(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    carol = server.user(3003, "Carol")
    message = await carol.send_command("start", "tok123")
    assert message.text == "/start tok123"
    assert message.entities == [{"type": "bot_command", "offset": 0, "length": 6}]
    welcome = await carol.wait_for_message("Welcome")
    # HTML was parsed like Telegram does: plain text plus a bold entity.
    assert welcome.text == "Welcome, args=['tok123']"
    assert welcome.entities == [{"type": "bold", "offset": 0, "length": 7}]
    assert welcome.protect_content
    assert welcome.buttons() == [("Yes", "answer:yes"), ("No", "answer:no")]

    addressed = await carol.send_text("/start@saferelay_test_bot again")
    assert addressed.entities == [{"type": "bot_command", "offset": 0, "length": 25}]
    await carol.wait_for_message("args=['again']")


async def test_inline_button_round_trip(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    dave = server.user(4004, "Dave")
    await dave.send_command("start")
    menu = await dave.wait_for_message("Welcome")
    query_id = await dave.press("Yes")
    edited = await dave.wait_for_message("You chose yes")
    assert edited is menu  # edited in place, same message
    assert menu.edit_count == 1 and menu.edit_date is not None
    assert menu.buttons() == []  # editMessageText without reply_markup drops the keyboard
    await server.wait_for(lambda: bool(dave.answered_callbacks()))
    [answer] = dave.answered_callbacks()
    assert answer["callback_query_id"] == query_id
    assert answer["text"] == "got yes" and answer["show_alert"] is False
    assert dave.callback_answer(query_id) == answer
    assert server.calls_to("answerCallbackQuery")[-1].params["callback_query_id"] == query_id

    with pytest.raises(AssertionError, match="no inline button 'Maybe'"):
        await dave.press("Maybe", timeout=0.05)


async def test_forged_press_and_url_button(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    erin = server.user(5005, "Erin")
    await erin.send_command("start")
    menu = await erin.wait_for_message("Welcome")
    with pytest.raises(AssertionError, match="has no callback_data"):
        await erin.press("Docs")
    forged = await erin.forge_press("admin:delete-everything", message=menu)
    await server.wait_for(lambda: erin.callback_answer(forged) is not None)
    answer = erin.callback_answer(forged)
    assert answer is not None and answer["show_alert"] is True
    assert answer["text"] == "Not allowed"
    assert menu.edit_count == 0


async def test_media_updates_parse_in_ptb(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    frank = server.user(6006, "Frank")
    for kind in ("sticker", "photo", "voice", "document", "location", "contact"):
        sent = await frank.send_media(kind)
        assert sent.kind == kind and sent.text is None
        await frank.wait_for_message(f"got a {kind}")
    assert len(frank.inbox()) == 6


async def test_reply_keyboard_tracking(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    gina = server.user(7007, "Gina")
    await gina.send_command("menu")
    prompt = await gina.wait_for_message("Pick one")
    assert prompt.reply_markup is not None and "keyboard" in prompt.reply_markup
    assert "reply_markup" not in prompt.to_dict()  # Telegram only echoes inline keyboards
    assert gina.reply_keyboard() == [["Check in", "Help"]]
    await gina.tap("Help")
    await gina.wait_for_message("echo: Help")
    assert gina.reply_keyboard() is None  # one_time_keyboard
    await gina.send_command("menu")
    await gina.wait_for_message("Pick one", count=3)
    await gina.send_command("hide")
    await gina.wait_for_message("Hidden")
    assert gina.reply_keyboard() is None


async def test_block_sends_my_chat_member_and_forbids(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    statuses: list[str] = []

    async def on_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.my_chat_member is not None
        statuses.append(update.my_chat_member.new_chat_member.status)

    app.add_handler(ChatMemberHandler(on_member, ChatMemberHandler.MY_CHAT_MEMBER))
    hana = server.user(8008, "Hana")
    await hana.send_text("hello")
    await hana.wait_for_message("echo: hello")
    server.block(hana.user_id)
    await server.wait_for(lambda: statuses == ["kicked"])
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await app.bot.send_message(hana.chat_id, "still there?")
    await hana.send_text("back again")  # writing unblocks, like the Restart button
    await hana.wait_for_message("echo: back again")
    assert statuses == ["kicked", "member"]


async def test_wait_idle_and_timeouts(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    ivan = server.user(9009, "Ivan")
    for n in range(3):
        await ivan.send_text(f"m{n}")
    await server.wait_idle()
    assert [m.text for m in ivan.inbox()] == ["echo: m0", "echo: m1", "echo: m2"]
    with pytest.raises(AssertionError, match="text containing 'never'"):
        await ivan.wait_for_message("never", timeout=0.05)
    with pytest.raises(AssertionError, match="condition not met"):
        await server.wait_for(lambda: False, timeout=0.05)


async def test_wait_idle_waits_for_slow_handlers(
    server: FakeBotApi, app: Application[Any, Any, Any, Any, Any, Any]
) -> None:
    async def slow(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await asyncio.sleep(0.3)  # e.g. key derivation or a database write, no API calls
        await update.effective_message.reply_text("slow done")

    app.add_handler(CommandHandler("slow", slow), group=-1)
    jun = server.user(9010, "Jun")
    await jun.send_command("slow")
    await server.wait_idle()
    assert [m.text for m in jun.inbox()] == ["slow done"]


async def test_wait_idle_reports_missing_poller(server: FakeBotApi) -> None:
    await server.user(1, "Nobody").send_text("anyone?")
    with pytest.raises(AssertionError, match="Nobody has called getUpdates"):
        await server.wait_idle(timeout=0.05)


# ---------------------------------------------------------------------------------------------
# chat model: edit, delete, reply, forward/copy
# ---------------------------------------------------------------------------------------------


async def test_edit_and_delete_update_the_chat_model(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    keyboard = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Go", callback_data="go"))
    sent = await bot.send_message(alice.chat_id, "first", reply_markup=keyboard)
    [model] = alice.inbox()
    assert model.message_id == sent.message_id and model.buttons() == [("Go", "go")]
    assert sent.reply_markup == keyboard and sent.from_user is not None
    assert sent.from_user.id == server.bot_id

    edited = await bot.edit_message_text(
        "second", chat_id=alice.chat_id, message_id=sent.message_id, reply_markup=keyboard
    )
    assert not isinstance(edited, bool) and edited.text == "second"
    assert model.text == "second" and model.buttons() == [("Go", "go")]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "second", chat_id=alice.chat_id, message_id=sent.message_id, reply_markup=keyboard
        )
    await bot.edit_message_reply_markup(alice.chat_id, sent.message_id, reply_markup=None)
    assert model.buttons() == [] and model.edit_count == 2
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(alice.chat_id, sent.message_id)

    assert await bot.delete_message(alice.chat_id, sent.message_id) is True
    assert model.deleted
    assert model not in server.visible(alice.chat_id)
    assert model in server.chat(alice.chat_id)
    assert server.bot_messages(alice.chat_id) == []
    assert server.bot_messages(alice.chat_id, include_deleted=True) == [model]
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("third", chat_id=alice.chat_id, message_id=sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(alice.chat_id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(alice.chat_id, 999)
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("hijack", chat_id=alice.chat_id, message_id=1)
    assert await bot.edit_message_text("inline", inline_message_id="abc") is True


async def test_delete_messages_and_user_messages(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    one = await bot.send_message(alice.chat_id, "one")
    two = await bot.send_message(alice.chat_id, "two")
    user_message = alice.inbox()[0].message_id - 1  # "hi" from the fixture
    assert await bot.delete_messages(alice.chat_id, [one.message_id, two.message_id, 777])
    assert alice.inbox() == []
    assert await bot.delete_message(alice.chat_id, user_message)
    assert server.visible(alice.chat_id) == []
    assert server.calls_to("deleteMessages")[-1].params["message_ids"] == [
        one.message_id,
        two.message_id,
        777,
    ]


async def test_replies_forward_and_copy(server: FakeBotApi, bot: Bot, alice: FakeUser) -> None:
    question = await alice.send_text("question?")
    answer = await bot.send_message(
        alice.chat_id, "answer", reply_parameters=ReplyParameters(question.message_id)
    )
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "question?"
    legacy = await bot.send_message(alice.chat_id, "legacy", reply_to_message_id=answer.message_id)
    assert legacy.reply_to_message is not None
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(alice.chat_id, "x", reply_parameters=ReplyParameters(999))
    tolerant = await bot.send_message(
        alice.chat_id,
        "tolerant",
        reply_parameters=ReplyParameters(999, allow_sending_without_reply=True),
    )
    assert tolerant.reply_to_message is None

    staff = server.user(77, "Staff")
    await staff.send_text("on duty")
    copied = await bot.copy_message(staff.chat_id, alice.chat_id, question.message_id)
    assert staff.last().text == "question?" and staff.last().message_id == copied.message_id
    forwarded = await bot.forward_message(staff.chat_id, alice.chat_id, question.message_id)
    assert forwarded.forward_origin is not None
    assert "forward_origin" in staff.last().payload


# ---------------------------------------------------------------------------------------------
# validation errors
# ---------------------------------------------------------------------------------------------


async def test_send_validation_errors(server: FakeBotApi, bot: Bot, alice: FakeUser) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(alice.chat_id, "   \n ")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(alice.chat_id, "x" * 4097)
    await bot.send_message(alice.chat_id, "x" * 4096)
    too_long_data = InlineKeyboardMarkup.from_button(
        InlineKeyboardButton("Go", callback_data="d" * 65)
    )
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(alice.chat_id, "buttons", reply_markup=too_long_data)
    multibyte = InlineKeyboardMarkup.from_button(
        InlineKeyboardButton("Go", callback_data="가" * 22)
    )
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(alice.chat_id, "buttons", reply_markup=multibyte)
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(555, "who?")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message("@someone", "who?")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: unsupported start tag"):
        await bot.send_message(alice.chat_id, "1 < 2", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)character '.' is reserved"):
        await bot.send_message(alice.chat_id, "Done.", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await bot.send_chat_action(alice.chat_id, "dance")
    assert await bot.send_chat_action(alice.chat_id, "typing")

    stranger = server.user(2024, "Stranger")
    with pytest.raises(Forbidden, match=r"(?i)bot can't initiate conversation with a user"):
        await bot.send_message(stranger.chat_id, "hello?")
    server.block(alice.user_id)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(alice.chat_id, "hello?")
    with pytest.raises(BadRequest, match=r"(?i)chat member status can't be changed"):
        await bot.leave_chat(alice.chat_id)
    # None of the failed sends left a trace in the chat.
    assert [m.text for m in alice.inbox()] == ["x" * 4096]


async def test_callback_answer_validation(server: FakeBotApi, bot: Bot, alice: FakeUser) -> None:
    keyboard = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Go", callback_data="go"))
    await bot.send_message(alice.chat_id, "menu", reply_markup=keyboard)
    query_id = await alice.press("go")
    assert await bot.answer_callback_query(query_id, "ok")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query_id, "twice")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("12345")
    *_, update = await bot.get_updates(timeout=0)
    assert update.callback_query is not None and update.callback_query.id == query_id
    assert update.callback_query.data == "go"
    assert update.callback_query.message is not None
    assert update.callback_query.message.message_id == alice.last().message_id


async def test_bot_settings_methods(server: FakeBotApi, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Start"), ("help", "Help")])
    assert await bot.set_my_commands([("start", "시작")], language_code="ko")
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert [c.description for c in await bot.get_my_commands(language_code="ko")] == ["시작"]
    assert server.commands(language_code="ko") == [{"command": "start", "description": "시작"}]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Bad Command", "x")])
    assert await bot.set_my_description("A private relay")
    assert await bot.set_my_short_description("Relay")
    assert (await bot.get_my_description()).description == "A private relay"
    assert server.bot_text("short_description") == "Relay"
    info = await bot.get_webhook_info()
    assert info.url == "" and info.pending_update_count == 0
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.close()
    assert await bot.log_out()
    assert server.closed and server.logged_out


# ---------------------------------------------------------------------------------------------
# long polling
# ---------------------------------------------------------------------------------------------


async def test_get_updates_long_polling(server: FakeBotApi, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=0.3) == ()  # type: ignore[arg-type]
    assert loop.time() - started >= 0.25

    user = server.user(11, "Poller")

    async def send_later() -> None:
        await asyncio.sleep(0.1)
        await user.send_text("wake up")

    started = loop.time()
    task = asyncio.create_task(send_later())
    updates = await bot.get_updates(timeout=5)
    await task
    assert loop.time() - started < 2
    assert [u.message.text for u in updates if u.message] == ["wake up"]

    await user.send_text("second")
    await user.send_text("third")
    assert server.pending_updates() == 3
    again = await bot.get_updates(timeout=0, limit=2)
    assert [u.update_id for u in again] == [updates[0].update_id, updates[0].update_id + 1]
    confirmed = await bot.get_updates(offset=again[-1].update_id + 1, timeout=0)
    assert [u.message.text for u in confirmed if u.message] == ["third"]
    assert server.pending_updates() == 1
    assert await bot.get_updates(offset=confirmed[-1].update_id + 1, timeout=0) == ()
    assert server.pending_updates() == 0

    # allowed_updates is remembered: callback queries are no longer queued
    await bot.get_updates(timeout=0, allowed_updates=["message"])
    await bot.send_message(
        user.chat_id,
        "menu",
        reply_markup=InlineKeyboardMarkup.from_button(
            InlineKeyboardButton("Go", callback_data="go")
        ),
    )
    await user.press("Go")
    assert server.pending_updates() == 0
    assert server.allowed_updates == ["message"]


async def test_inject_raw_update(server: FakeBotApi, bot: Bot) -> None:
    group_message = {
        "message_id": 1,
        "date": 0,
        "chat": {"id": -100123, "type": "group", "title": "g"},
        "from": {"id": 5, "is_bot": False, "first_name": "G"},
        "text": "/menu",
        "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
    }
    update_id = await server.inject_update({"message": group_message})
    [update] = await bot.get_updates(timeout=0)
    assert update.update_id == update_id
    assert update.message is not None and update.message.chat.type == "group"
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-100123, "groups are not modelled")
    with pytest.raises(ValueError, match="exactly one payload"):
        await server.inject_update({"message": {}, "callback_query": {}})


async def test_second_poller_conflicts(server: FakeBotApi) -> None:
    url = f"{server.base_url}{server.token}/getUpdates"
    first = asyncio.create_task(_raw_post(url, data={"timeout": "5"}))
    await server.wait_for(lambda: len(server.calls_to("getUpdates")) == 1)
    status, body = await _raw_post(url, data={"timeout": "0"})
    assert (status, body) == (200, {"ok": True, "result": []})
    status, body = await first
    assert status == 409 and "terminated by other getUpdates request" in body["description"]


# ---------------------------------------------------------------------------------------------
# fault injection
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_fail_next_retry_after(server: FakeBotApi, bot: Bot, alice: FakeUser) -> None:
    server.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(RetryAfter, match="Retry in 7 seconds"):
        await bot.send_message(alice.chat_id, "flood")
    assert alice.inbox() == []
    call = server.calls_to("sendMessage")[-1]
    assert call.status == 429 and call.injected
    assert call.description == "Too Many Requests: retry after 7"
    await bot.send_message(alice.chat_id, "after the flood wait")
    assert [m.text for m in alice.inbox()] == ["after the flood wait"]


async def test_fail_next_500_count_and_chat_filter(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    bob = server.user(2, "Bob")
    await bob.send_text("hi")
    server.fail_next("sendMessage", count=2, chat_id=alice.chat_id)
    await bot.send_message(bob.chat_id, "bob is not affected")
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(alice.chat_id, "lost")
    await bot.send_message(alice.chat_id, "delivered")
    assert [m.text for m in alice.inbox()] == ["delivered"]
    assert [m.text for m in bob.inbox()] == ["bob is not affected"]

    server.fail_next("editMessageText", status=400, description="Bad Request: injected")
    with pytest.raises(BadRequest, match=r"(?i)injected"):
        await bot.edit_message_text("x", chat_id=alice.chat_id, message_id=alice.last().message_id)
    assert alice.last().text == "delivered"


async def test_fail_next_delay_drop_and_slow_success(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    server.fail_next("sendMessage", delay=1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(alice.chat_id, "too slow", read_timeout=0.2)
    server.fail_next("sendMessage", drop=True)
    with pytest.raises(NetworkError):
        await bot.send_message(alice.chat_id, "dropped")
    assert alice.inbox() == []

    # slow_next: Telegram did deliver, but the client timed out waiting for the answer.
    server.slow_next("sendMessage", delay=1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(alice.chat_id, "delivered anyway", read_timeout=0.2)
    assert [m.text for m in alice.inbox()] == ["delivered anyway"]
    server.slow_next("sendMessage", delay=0.0, drop=True)
    with pytest.raises(NetworkError):
        await bot.send_message(alice.chat_id, "answer lost")
    assert [m.text for m in alice.inbox()] == ["delivered anyway", "answer lost"]
    await server.wait_for(lambda: not server._flights)
    await bot.send_message(alice.chat_id, "healthy again")


# ---------------------------------------------------------------------------------------------
# Telegram limits
# ---------------------------------------------------------------------------------------------


async def _started_users(server: FakeBotApi, first_id: int, count: int) -> list[FakeUser]:
    """``count`` users who have written to the bot, so it may message them."""
    users = [server.user(first_id + n, f"User{n}") for n in range(count)]
    for user in users:
        await user.send_text("hi")
    return users


async def _send_when_allowed(
    bot: Bot,
    chat_id: int,
    text: str,
    *,
    timeout: float = 3.0,  # noqa: ASYNC109 - a deadline for the retries, not a client timeout
) -> float:
    """Send, retrying every 50 ms while the limits refuse; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            await bot.send_message(chat_id, text)
        except RetryAfter:
            if loop.time() - started > timeout:
                raise AssertionError(f"still refused after {timeout}s") from None
            await asyncio.sleep(0.05)
        else:
            return loop.time() - started


async def test_limits_refuse_the_31st_message_in_a_second() -> None:
    async with (
        FakeBotApi(limits=True) as server,
        Bot(server.token, base_url=server.base_url) as bot,
    ):
        assert (server.limits, server.per_second, server.chat_burst) == (True, 30, 3)
        users = await _started_users(server, 2001, 31)
        for user in users[:30]:
            await bot.send_message(user.chat_id, "news")
        # The 31st, raw, to see Telegram's exact answer.
        status, body = await _raw_post(
            f"{server.base_url}{server.token}/sendMessage",
            json={"chat_id": users[30].chat_id, "text": "news"},
        )
        sends = server.calls_to("sendMessage")
        elapsed = sends[-1].at - sends[0].at
        assert status == 429, f"31 sends took {elapsed:.3f}s, the test needs under a second"
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert [call.status for call in sends] == [200] * 30 + [429]
        assert sum(len(user.inbox()) for user in users) == 30
        assert users[30].inbox() == []
        [refusal] = server.flood_refusals
        assert refusal == FloodRefusal("sendMessage", users[30].chat_id, refusal.at, 1, "global")
        assert server.max_per_second() == 30 and server.counted_calls == 30
        # Once the window has room again, the same send goes through.
        await _send_when_allowed(bot, users[30].chat_id, "news")
        assert [m.text for m in users[30].inbox()] == ["news"]
        assert server.max_per_second() <= 30


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_limits_chat_bucket_allows_a_burst_of_three(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    server.set_limits(True)
    for n in range(3):
        await bot.send_message(alice.chat_id, f"quick {n}")
    with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
        await bot.send_message(alice.chat_id, "one too many")
    assert [m.text for m in alice.inbox()] == ["quick 0", "quick 1", "quick 2"]
    refusal = server.flood_refusals[-1]
    assert (refusal.method, refusal.chat_id, refusal.reason, refusal.retry_after) == (
        "sendMessage",
        alice.chat_id,
        "chat",
        1,
    )
    # Another chat has its own bucket.
    [bob] = await _started_users(server, 1002, 1)
    await bot.send_message(bob.chat_id, "for bob")
    # Refused attempts consume nothing: retrying every 50 ms gets through once the bucket
    # has refilled one token, about a second after the burst began.
    waited = await _send_when_allowed(bot, alice.chat_id, "after the wait")
    assert waited > 0.5
    assert len(server.flood_refusals) > 1
    assert [m.text for m in alice.inbox()][-1] == "after the wait"
    assert len(alice.inbox()) == 4
    assert server.max_per_second(alice.chat_id) == 3


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_limits_count_edits_but_not_other_calls(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    server.set_limits(True)
    keyboard = InlineKeyboardMarkup.from_button(InlineKeyboardButton("x", callback_data="x"))
    sent = await bot.send_message(alice.chat_id, "v1", reply_markup=keyboard)
    await bot.edit_message_text(
        "v2", chat_id=alice.chat_id, message_id=sent.message_id, reply_markup=keyboard
    )
    await bot.edit_message_reply_markup(chat_id=alice.chat_id, message_id=sent.message_id)
    with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
        await bot.edit_message_text("v3", chat_id=alice.chat_id, message_id=sent.message_id)
    assert (alice.last().text, alice.last().edit_count) == ("v2", 2)
    assert server.counted_calls == 3
    assert server.max_per_second() == server.max_per_second(alice.chat_id) == 3
    # Not counted: chat actions, callback answers, deletions, getUpdates, settings.
    await bot.send_chat_action(alice.chat_id, ChatAction.TYPING)
    query_id = await alice.forge_press("x")
    assert await bot.answer_callback_query(query_id)
    assert len(await bot.get_updates(timeout=0)) == 2
    await bot.set_my_commands([("start", "Start")])
    await bot.get_my_commands()
    await bot.get_me()
    assert await bot.delete_message(alice.chat_id, sent.message_id)
    assert [(r.method, r.chat_id) for r in server.flood_refusals] == [
        ("editMessageText", alice.chat_id)
    ]
    assert server.counted_calls == 3


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_limits_are_off_by_default_and_switch_at_runtime(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    assert server.limits is False
    for n in range(6):
        await bot.send_message(alice.chat_id, f"fast {n}")
    assert len(alice.inbox()) == 6
    assert server.flood_refusals == []
    assert server.counted_calls == 6
    assert 1 <= server.max_per_second(alice.chat_id) <= 6
    # Switched on, the limits count what was really sent: alice's bucket is empty.
    server.set_limits(True)
    with pytest.raises(RetryAfter):
        await bot.send_message(alice.chat_id, "refused")
    [bob] = await _started_users(server, 1002, 1)
    await bot.send_message(bob.chat_id, "bob's bucket is full")
    server.set_limits(False)
    await bot.send_message(alice.chat_id, "off again")
    assert [m.text for m in alice.inbox()][-1] == "off again"
    assert len(server.flood_refusals) == 1


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_max_per_second_and_limit_numbers_with_a_fake_clock() -> None:
    now = 10.0
    async with (
        FakeBotApi(clock=lambda: now) as server,
        Bot(server.token, base_url=server.base_url) as bot,
    ):
        alice, bob, carol = await _started_users(server, 3001, 3)
        timeline = [
            (10.0, alice),
            (10.25, alice),
            (10.5, bob),
            (10.75, alice),
            (11.0, alice),
            (11.25, bob),
            (12.5, bob),
        ]
        for now, user in timeline:  # the fake clock reads ``now``
            await bot.send_message(user.chat_id, f"at {now}")
        # Windows are (t - 1, t]: closed ones would count 5 overall and 4 for alice.
        assert server.max_per_second() == 4
        assert server.max_per_second(alice.chat_id) == 3
        assert server.max_per_second(bob.chat_id) == 2
        assert server.max_per_second(carol.chat_id) == 0
        assert server.counted_calls == 7 and server.flood_refusals == []

        server.clear_flood_stats()
        assert (server.max_per_second(), server.counted_calls) == (0, 0)
        server.set_limits(True, per_second=3, chat_burst=2, chat_per_second=0.25)
        now = 20.0
        await bot.send_message(alice.chat_id, "1")
        await bot.send_message(alice.chat_id, "2")
        with pytest.raises(RetryAfter, match="Retry in 4 seconds"):
            await bot.send_message(alice.chat_id, "bucket of 2, one token per 4 s")
        await bot.send_message(bob.chat_id, "3rd in the window")
        with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
            await bot.send_message(carol.chat_id, "4th in the window")
        now = 20.5
        with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
            await bot.send_message(carol.chat_id, "still the 4th")
        now = 21.0
        await bot.send_message(carol.chat_id, "the window has moved on")
        with pytest.raises(RetryAfter, match="Retry in 3 seconds"):
            await bot.send_message(alice.chat_id, "a quarter of a token")
        now = 24.0
        await bot.send_message(alice.chat_id, "refilled")
        assert [(r.chat_id, r.at, r.retry_after, r.reason) for r in server.flood_refusals] == [
            (alice.chat_id, 20.0, 4, "chat"),
            (carol.chat_id, 20.0, 1, "global"),
            (carol.chat_id, 20.5, 1, "global"),
            (alice.chat_id, 21.0, 3, "chat"),
        ]
        assert server.max_per_second() == 3
        assert server.max_per_second(alice.chat_id) == 2


async def test_limits_options_cli_and_control_api(server: FakeBotApi) -> None:
    args = _parser().parse_args(["--limits", "--per-second", "20", "--chat-burst", "5"])
    assert (args.limits, args.per_second, args.chat_burst, args.chat_per_second) == (
        True,
        20,
        5,
        1.0,
    )
    assert _parser().parse_args([]).limits is False
    with pytest.raises(ValueError, match="chat_burst"):
        FakeBotApi(chat_burst=0)
    with pytest.raises(ValueError, match="per_second"):
        server.set_limits(True, per_second=0)
    assert server.limits is False
    status, body = await _raw_post(
        f"http://127.0.0.1:{server.port}/_fake/limits", json={"enabled": True, "chat_burst": 5}
    )
    assert status == 200 and body["enabled"] is True and body["chat_burst"] == 5
    assert server.limits is True and server.chat_burst == 5 and server.per_second == 30


# ---------------------------------------------------------------------------------------------
# formatting, files, CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "plain", "entities"),
    [
        ("<b>bold</b> &lt;x&gt;", "HTML", "bold <x>", [("bold", 0, 4)]),
        ('<a href="https://e.org">link</a>', "HTML", "link", [("text_link", 0, 4)]),
        ('<pre><code class="language-py">x</code></pre>', "HTML", "x", [("pre", 0, 1)]),
        ("😀 <i>ok</i>", "HTML", "😀 ok", [("italic", 3, 2)]),
        ("*bold* \\. _it_ __u__ ||s||", "MarkdownV2", "bold . it u s", None),
        ("[link](https://e.org/a\\)b)", "MarkdownV2", "link", [("text_link", 0, 4)]),
        ("*bold* _it_ `code`", "Markdown", "bold it code", None),
        ("  \n<b> padded </b>  ", "HTML", "padded", [("bold", 0, 6)]),
    ],
)
def test_parse_modes(
    text: str, mode: str, plain: str, entities: list[tuple[str, int, int]] | None
) -> None:
    parsed, found = parse_text(text, mode)
    assert parsed == plain
    if entities is not None:
        assert [(e["type"], e["offset"], e["length"]) for e in found] == entities
    else:
        assert found


@pytest.mark.parametrize(
    ("text", "mode", "error"),
    [
        ("<b>open", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", "HTML", "Unmatched end tag at byte offset 4"),
        ("<br>", "HTML", 'Unsupported start tag "br" at byte offset 0'),
        ("a-b", "MarkdownV2", "Character '-' is reserved"),
        ("*open", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
        ("_open", "Markdown", "Can't find end of the entity starting at byte offset 0"),
    ],
)
def test_parse_mode_errors(text: str, mode: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_text(text, mode)
    assert error in str(caught.value)


async def test_formatted_messages_through_ptb(
    server: FakeBotApi, bot: Bot, alice: FakeUser
) -> None:
    sent = await bot.send_message(
        alice.chat_id,
        'Hi <a href="tg://user?id=1001">Alice</a>, see <a href="tg://user?id=9">them</a> &amp; '
        "<code>x &lt; y</code>",
        parse_mode=ParseMode.HTML,
    )
    assert sent.text == "Hi Alice, see them & x < y"
    mention, link, code = sent.entities
    assert mention.type == "text_mention" and mention.user is not None
    assert mention.user.first_name == "Alice"
    assert link.type == "text_link" and link.url == "tg://user?id=9"
    assert (code.type, code.offset, code.length) == ("code", 21, 5)
    v2 = await bot.send_message(
        alice.chat_id, r"*Saved\!* [docs](https://e.org/x)", parse_mode=ParseMode.MARKDOWN_V2
    )
    assert v2.text == "Saved! docs"
    assert [e.type for e in v2.entities] == ["bold", "text_link"]
    assert alice.last().parse_mode == "MarkdownV2"


async def test_get_file_and_download(server: FakeBotApi, bot: Bot, alice: FakeUser) -> None:
    photo = await alice.send_media("photo")
    file_id = photo.payload["photo"][-1]["file_id"]
    file = await bot.get_file(file_id)
    assert file.file_path is not None and file.file_path.startswith(server.base_file_url)
    data = await file.download_as_bytearray()
    assert len(data) == photo.payload["photo"][-1]["file_size"]
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("nope")


async def test_cli_runs_standalone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/bot")
        status, body = await _raw_post(
            base_url.removesuffix("bot") + "_fake/send", json={"user_id": 5, "text": "/start"}
        )
        assert status == 200 and body["text"] == "/start"
        async with Bot("123456789:AAFakeTokenForTestsOnly_abcdefghijklmn", base_url=base_url) as b:
            updates = await b.get_updates(timeout=0)
            assert updates[0].message is not None and updates[0].message.text == "/start"
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0


def test_chat_message_helpers() -> None:
    message = ChatMessage(
        message_id=3,
        chat_id=1,
        from_bot=True,
        text="pick",
        date=0,
        reply_markup={
            "inline_keyboard": [
                [{"text": "A", "callback_data": "a"}, {"text": "Web", "url": "https://x.org"}],
                [{"text": "B", "callback_data": "b"}],
            ]
        },
    )
    assert message.buttons() == [("A", "a"), ("B", "b")]
    assert "A->a" in message.describe()
    assert message.to_dict()["reply_markup"] == message.reply_markup
