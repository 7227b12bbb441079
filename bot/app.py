"""One place wires everything: build_application(settings) -> Application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any

from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot import activity
from bot.broadcasts import PROGRESS_SECONDS, show_progress, sweep_broadcasts
from bot.cases import escalate_due
from bot.chat import delete_due, tidy_people
from bot.core import Core
from bot.delivery import Sender
from bot.i18n import LANGUAGES, STRANGER_LANGUAGE, t
from bot.limits import RateLimiter
from bot.pace import Pace
from bot.retention import purge_old_records
from bot.schedules import ensure_schedules, sweep_interval, sweep_prompts
from bot.scrubber import WalScrubber
from bot.sealed import purge_unread_replies
from bot.settings import Settings
from bot.sweeps import exclusive
from bot.web import WEB_KEY, WebServer, WebServerError
from bot.webhook import WebhookDoor, set_webhook
from bot.welfare import sweep_watch, unreachable
from crypto.keystore import SecretsDir
from handlers import broadcasts, common, member, safety, schedule, staff
from handlers.access import WORD_CHECKS_PER_MINUTE, StrangerDoor
from handlers.broadcasts import WAKE_KEY as BROADCASTS_WAKE_KEY
from handlers.context import (
    CLEANER_KEY,
    CORE_KEY,
    LIMITER_KEY,
    PACE_KEY,
    SCRUBBER_KEY,
    SENDER_KEY,
    STRANGERS_KEY,
    WORD_LIMITER_KEY,
    SafeContext,
)
from handlers.unit import unit_of_work
from storage.db import make_engine, make_sessionmaker, migrate, wait_for_schema
from storage.models import utcnow

log = logging.getLogger(__name__)

MENUS = "menus"  # a cleaner run that also brings command menus in line
MENUS_DUE_KEY = "menus_due"
MENU_CHECK_SECONDS = 3600.0  # the safety net: menus are looked at this often regardless
WEBHOOK_KEY = "webhook"
# Exactly the update types the handlers use (handlers/: messages, edits, button presses, and
# my_chat_member for a member who blocks the bot). Telegram sends nothing else, so a type no
# handler was written for never reaches the access check (polling and webhook alike).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


class SafeApplication(Application[Any, SafeContext, Any, Any, Any, Any]):
    """PTB's Application, with every update handled as one unit of work (handlers/unit.py)."""

    async def process_update(self, update: object) -> None:
        async with unit_of_work(self.bot_data[CORE_KEY]):
            await super().process_update(update)


def build_core(settings: Settings) -> Core:
    """Engine, sessions and the server's secrets. Nothing opens a connection yet."""
    engine = make_engine(settings.engine_url())
    return Core(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        secrets=SecretsDir(settings.secrets_dir).load(),
    )


async def _post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    core: Core = app.bot_data[CORE_KEY]
    updates = core.settings.updates
    if updates:
        if await migrate(core.engine):
            log.info("database schema brought up to date")
        await _describe(app)
    else:
        # Only the process that takes updates migrates: two running Alembic at once on one
        # database would trip over each other. The others wait for it.
        await wait_for_schema(core.engine)
    scrubber = WalScrubber(core.engine)
    app.bot_data[SCRUBBER_KEY] = scrubber
    scrubber.start()
    if updates:
        # Members enrolled before schedules existed get theirs (the defaults from settings).
        made = await ensure_schedules(core)
        if made:
            log.info("wellbeing schedules started for %d members", made)
    sender = Sender(
        core,
        app.bot,
        app.bot_data[PACE_KEY],
        scrub=scrubber.request,
        unreachable=lambda session, person_id: unreachable(session, core, person_id),
    )
    app.bot_data[SENDER_KEY] = sender
    sender.start()
    _schedule_jobs(app, core)
    # The bot's own web server (bot/web.py) runs in the process that takes updates: it is
    # where Telegram posts them in webhook mode, and where the Mini App's pages and API live.
    # Processes with updates off only send and sweep, and open no port.
    web_server: WebServer = app.bot_data[WEB_KEY]
    if web_server.has_routes:
        await web_server.start()
    door: WebhookDoor | None = app.bot_data.get(WEBHOOK_KEY)
    if door is not None:
        await set_webhook(
            app.bot, core.settings, core.secrets.pepper.webhook_secret(), ALLOWED_UPDATES
        )
        log.info("webhook set; updates arrive by POST")
    # Everything made so far (modules, metadata, caches) lives as long as the process: out of
    # the collector's way, so a full collection walks only what the bot makes while running
    # (a pause of ~200 ms otherwise, in the middle of someone's update).
    gc.freeze()
    log.info("bot ready" if updates else "bot ready: sending and sweeping only")


async def _describe(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The bot's description and default menus: set by the process that takes updates."""
    try:
        # No menu for anyone by default: enrolled chats get theirs (bot/menus.py), and a
        # stranger sees none. The description is all a stranger sees: neutral, and English
        # for a client in a language we do not offer.
        await app.bot.delete_my_commands()
        for language in LANGUAGES:
            await app.bot.delete_my_commands(language_code=language)
            code = None if language == STRANGER_LANGUAGE else language
            await app.bot.set_my_description(t(language, "bot_description"), language_code=code)
    except TelegramError as exc:
        # A convenience; a Bot API server without it must not stop us.
        log.warning("could not set the bot's description: %s", type(exc).__name__)


def _schedule_jobs(app: Application[Any, Any, Any, Any, Any, Any], core: Core) -> None:
    """The periodic sweeps. Every process runs them; each run first takes its sweep's lease
    (bot/sweeps.py), so with several processes each due row is still acted on once."""
    assert app.job_queue is not None
    interval = core.settings.sweep_seconds
    app.job_queue.run_repeating(_sweep, interval=interval, first=interval, name="sweep")
    # Wellbeing prompts and the welfare watch: soon after start (prompts missed while we
    # were down go out once), then at a period that follows the shortest setting.
    every = sweep_interval(core.settings)
    app.job_queue.run_repeating(_prompts, interval=every, first=1.0, name="prompts")
    # Broadcasts: due ones queued, progress messages edited (at most this often each).
    app.job_queue.run_repeating(
        _broadcasts, interval=PROGRESS_SECONDS, first=0.5, name="broadcasts"
    )
    jobs = app.job_queue
    app.bot_data[BROADCASTS_WAKE_KEY] = lambda: jobs.run_once(_broadcasts, 0, name="broadcasts-now")
    # Chat deletions: soon after start (catching up on any overdue while we were down), then
    # every few seconds; a quick exit or revealing media asks for a run at once.
    job_queue = app.job_queue
    job_queue.run_repeating(_clean, interval=min(interval, 5.0), first=0.1, name="clean")
    app.bot_data[CLEANER_KEY] = lambda: job_queue.run_once(_clean, 0, name="clean-now", data=MENUS)
    job_queue.run_repeating(_retention, interval=24 * 3600, first=60, name="retention")
    job_queue.run_repeating(
        _activity, interval=activity.REPORT_SECONDS, first=activity.REPORT_SECONDS, name="activity"
    )


async def _clean(context: SafeContext) -> None:
    """Delete the chat messages whose time has come, keep command menus in line, and let
    erased members go once their chat is clear; failures wait for the next run. Menus are
    looked at when a wake-up asks (something changed), after a failure, and hourly."""
    # Deletions are claimed row by row (a quick exit deletes at once, outside any sweep).
    await delete_due(context.core, context.bot)
    now = time.monotonic()
    asked = context.job is not None and context.job.data == MENUS
    menus = asked or now >= context.bot_data.get(MENUS_DUE_KEY, 0.0)
    async with exclusive(context.core, "tidy") as mine:
        if not mine:
            if asked:  # another run has it: this process's next run looks at the menus
                context.bot_data[MENUS_DUE_KEY] = 0.0
            return
        again = await tidy_people(context.core, context.bot, menus=menus)
        # Mini App answers not opened in time leave the server (their writers are told once:
        # under the same lease, so two processes never both tell them).
        core = context.core
        async with core.sessions() as session, session.begin():
            unread = await purge_unread_replies(session, core.secrets, utcnow())
        if unread:
            context.bot_data[SENDER_KEY].wake()
    if menus:
        context.bot_data[MENUS_DUE_KEY] = now + (0.0 if again else MENU_CHECK_SECONDS)


async def _activity(_context: SafeContext) -> None:
    """Daily: one line of totals (bot/activity.py), never a line per event."""
    activity.report()


async def _retention(context: SafeContext) -> None:
    """Daily: purge sealed records older than SAFERELAY_RETENTION_DAYS."""
    core = context.core
    async with exclusive(core, "retention") as mine:
        if not mine:
            return
        # In batches, each its own short transaction (bot/retention.py).
        purged = await purge_old_records(core.sessions, core.settings.retention_days)
    activity.count("records purged", purged)


async def _sweep(context: SafeContext) -> None:
    """Periodic: act on deadlines kept in the database (escalations), so a restart loses none."""
    core = context.core
    async with exclusive(core, "escalations") as mine:
        if not mine:
            return
        async with core.sessions() as session, session.begin():
            escalated = await escalate_due(session, core)
    if escalated:
        activity.count("escalations", escalated)
        context.wake_outbox()


async def _prompts(context: SafeContext) -> None:
    """Periodic: send the wellbeing prompts that are due and take the welfare watch a step
    up where a grace period ran out (bot/schedules.py, bot/welfare.py)."""
    core = context.core
    async with exclusive(core, "prompts") as mine:
        if not mine:
            return
        sent = await sweep_prompts(core, progress=context.wake_outbox)
        steps = await sweep_watch(core)
    if sent or steps:
        activity.count("prompts sent", sent)
        activity.count("welfare steps", steps)
        context.wake_outbox()


async def _broadcasts(context: SafeContext) -> None:
    """Queue the broadcasts whose time has come, mark finished ones, and show progress on
    their senders' messages (bot/broadcasts.py)."""
    core = context.core
    async with exclusive(core, "broadcasts") as mine:
        if not mine:
            if context.job is not None and context.job.name == "broadcasts-now":
                # A broadcast just confirmed: look again in a moment, not at the next period.
                jobs: Any = context.job_queue
                jobs.run_once(_broadcasts, 0.5, name="broadcasts-now")
            return
        queued = await sweep_broadcasts(core, progress=context.wake_outbox)
        edits = await show_progress(core)
    if queued or edits:
        context.wake_outbox()


async def _post_stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    web_server: WebServer | None = app.bot_data.get(WEB_KEY)
    if web_server is not None:
        await web_server.stop()
    sender = app.bot_data.get(SENDER_KEY)
    if sender is not None:
        await sender.stop()
    scrubber = app.bot_data.get(SCRUBBER_KEY)
    if scrubber is not None:
        await scrubber.stop()


async def _post_shutdown(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    core: Core = app.bot_data[CORE_KEY]
    await core.engine.dispose()


def build_application(settings: Settings, core: Core | None = None) -> SafeApplication:
    """The whole bot, ready for ``run_polling`` or (a webhook URL, or updates off)
    :func:`run_without_polling`
    (or for tests: initialize/start)."""
    core = core or build_core(settings)
    pace = Pace()
    builder = ApplicationBuilder()
    if settings.webhook_url is not None:
        # Webhook mode: no Updater; the web server's route feeds update_queue (bot/webhook.py).
        builder = builder.updater(None)
    built = (
        builder.application_class(SafeApplication)
        .token(settings.require_token())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .context_types(ContextTypes(context=SafeContext))
        .connect_timeout(settings.telegram_timeout_seconds)
        .read_timeout(settings.telegram_timeout_seconds)
        .write_timeout(settings.telegram_timeout_seconds)
        .rate_limiter(pace)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    assert isinstance(built, SafeApplication)
    app = built
    app.bot_data[CORE_KEY] = core
    app.bot_data[PACE_KEY] = pace
    app.bot_data[LIMITER_KEY] = RateLimiter(settings.messages_per_minute)
    app.bot_data[WORD_LIMITER_KEY] = RateLimiter(WORD_CHECKS_PER_MINUTE)
    app.bot_data[STRANGERS_KEY] = StrangerDoor()
    # Modules with pages or an API add their routes to this before the application starts.
    web_server = WebServer(settings.web_host, settings.web_port)
    app.bot_data[WEB_KEY] = web_server
    if settings.webhook_url is not None and settings.updates:
        door = WebhookDoor(app, core.secrets.pepper.webhook_secret())
        web_server.add_routes(door.routes(settings.webhook_path))
        app.bot_data[WEBHOOK_KEY] = door
    if settings.webapp_url and settings.updates:
        # The Mini App (webapp/): its pages and API on the same server, under the URL's path.
        # Imported only then: a bot without the Mini App never reads the package.
        from webapp.routes import WebappNotBuilt, webapp_routes

        def wake_sender() -> None:
            sender = app.bot_data.get(SENDER_KEY)
            if sender is not None:
                sender.wake()

        try:
            web_server.add_routes(webapp_routes(core, wake_sender))
        except WebappNotBuilt as exc:
            raise WebServerError(f"SAFERELAY_WEBAPP_URL is set, but {exc}") from None
    common.register(app)
    safety.register(app)
    member.register(app)
    staff.register(app)
    schedule.register(app)
    broadcasts.register(app)
    common.register_fallbacks(app)
    return app


async def run_without_polling(app: SafeApplication, stop: asyncio.Event | None = None) -> None:
    """What ``run_polling`` does, for webhook mode and for a process with updates off (which
    never calls getUpdates, setWebhook or deleteWebhook): start everything, serve until SIGINT or
    SIGTERM (or ``stop``), then stop in order -- the web server first, so no update is
    accepted (answered 200) after the queue has stopped being worked through."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    await app.initialize()
    try:
        assert app.post_init is not None
        # A refused webhook or a port in use ends here, after the sender has started:
        # post_stop below stops it all the same.
        await app.post_init(app)
        await app.start()
        await stop.wait()
    finally:
        await shut_down(app)


async def shut_down(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Stop a started (or half-started) application in order, whoever started it: polling
    first, then the web server, so nothing new is accepted; then the update queue, which
    finishes what was accepted; then the outbox sender and the chat cleaner (``post_stop``,
    safe when they never started) and the database."""
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    await stop_serving(app)
    if app.running:
        await app.stop()
    assert app.post_stop is not None
    await app.post_stop(app)
    await app.shutdown()
    assert app.post_shutdown is not None
    await app.post_shutdown(app)


async def stop_serving(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Stop taking requests (webhook updates, pages); what was accepted is still handled."""
    web_server: WebServer | None = app.bot_data.get(WEB_KEY)
    if web_server is not None:
        await web_server.stop()
