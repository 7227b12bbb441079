"""Typed, validated settings from ``.env`` and the environment (the environment wins)."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.cadence import Window, parse_duration, parse_window

TELEGRAM_API = "https://api.telegram.org/bot"
BOTFATHER_HINT = "get one from @BotFather in Telegram (/newbot) and put it in .env"
# "<bot id>:<35 characters>" as issued by BotFather; we accept any secret of 30+ characters.
_TOKEN_RE = re.compile(r"^[0-9]{5,16}:[A-Za-z0-9_-]{30,}$")


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the variable and the fix."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # Without its password, so it can be shown and logged; ``engine_url()`` adds it.
    database_url: str
    secrets_dir: Path
    telegram_api_base_url: str
    telegram_bot_token: Secret | None = field(default=None)
    passphrase: Secret | None = field(default=None)
    database_password: Secret | None = field(default=None)
    checkin_timeout_minutes: float = 30.0
    escalate_minutes: float = 15.0
    sweep_seconds: float = 30.0
    telegram_timeout_seconds: float = 10.0
    clear_after_minutes: float = 10.0
    staff_clear_after_hours: float = 24.0
    retention_days: int = 365
    messages_per_minute: int = 20
    # Wellbeing prompts and the welfare watch (bot/schedules.py, bot/welfare.py): the
    # defaults a new member's schedule starts from.
    checkin_every: timedelta = timedelta(days=7)
    checkin_window: Window = field(default_factory=lambda: parse_window("19:00-21:00"))
    checkin_grace: timedelta = timedelta(days=2)
    default_timezone: str = "Asia/Seoul"
    # The bot's own web server (bot/web.py): the webhook, later the Mini App. Loopback by
    # default; a container sets 0.0.0.0 behind its reverse proxy.
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    # Webhook mode when set (bot/webhook.py): Telegram POSTs updates to this public URL,
    # which a reverse proxy forwards to web_host:web_port; unset means long polling.
    webhook_url: str | None = None
    # The Mini App (webapp/): where members' and staff's Telegram clients open its pages,
    # ending in "/"; its path is where the bot's web server serves them. None: no Mini App,
    # chat path only.
    webapp_url: str | None = None

    @property
    def webapp_prefix(self) -> str:
        """The path the Mini App is served under (from ``webapp_url``)."""
        return urllib.parse.urlsplit(self.webapp_url or "/").path

    # Whether this process takes updates from Telegram (SAFERELAY_UPDATES). Telegram allows
    # one getUpdates consumer per bot: with several processes, exactly one has it on; the
    # others only send from the shared outbox and run the sweeps.
    updates: bool = True

    @property
    def old_secrets_dir(self) -> Path:
        """Where versions before the keys moved out kept them (inside the data directory)."""
        return self.data_dir / "secrets"

    @property
    def telegram_file_base_url(self) -> str:
        """Telegram serves files at ``/file/bot<token>``; a local server mirrors that."""
        base = self.telegram_api_base_url
        if base.endswith("/bot"):
            return base[: -len("/bot")] + "/file/bot"
        return base.rstrip("/") + "/file/bot"

    @property
    def webhook_path(self) -> str:
        """The path the webhook is served on: the public URL's own path, so a reverse proxy
        passes requests through unchanged."""
        if self.webhook_url is None:
            raise SettingsError("SAFERELAY_WEBHOOK_URL is not set.")
        return urllib.parse.urlsplit(self.webhook_url).path or "/"

    @property
    def database_dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return make_url(self.database_url).get_backend_name()

    def engine_url(self) -> URL:
        """The URL to connect with, password included. A SQLAlchemy URL hides its password
        when printed or logged; never render it with ``hide_password=False``."""
        url = make_url(self.database_url)
        if self.database_password is not None:
            url = url.set(password=self.database_password.get())
        return url

    def require_token(self) -> str:
        """The bot token, or a :class:`SettingsError` saying exactly what to set."""
        if self.telegram_bot_token is None:
            raise SettingsError(f"TELEGRAM_BOT_TOKEN is not set: {BOTFATHER_HINT}.")
        return self.telegram_bot_token.get()


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}.") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}.")
    return value


def _duration(env: Mapping[str, str], name: str, default: str) -> timedelta:
    raw = env.get(name, "").strip() or default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}.") from None


def _window(env: Mapping[str, str], name: str, default: str) -> Window:
    raw = env.get(name, "").strip() or default
    try:
        return parse_window(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}.") from None


def _timezone(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{name} must be an IANA time zone such as Asia/Seoul or Asia/Shanghai, not {raw!r}."
        ) from None
    return raw


def _secret_value(env: Mapping[str, str], name: str, *, strip: bool = True) -> str:
    """``name`` from the environment, or the contents of the file ``name_FILE`` names (a
    Docker secret, a systemd credential), so a secret need not sit in ``ps e`` output or in
    ``docker inspect``. One of the two, never both."""
    direct = env.get(name, "")
    path = env.get(f"{name}_FILE", "").strip()
    if not path:
        return direct.strip() if strip else direct
    if direct.strip():
        raise SettingsError(f"Set {name} or {name}_FILE, not both.")
    try:
        raw = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{name}_FILE names {path}, which cannot be read ({type(exc).__name__})."
        ) from None
    # Editors and `echo` leave a final newline; nothing else is taken off a passphrase.
    return raw.strip() if strip else raw.rstrip("\r\n")


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _webhook_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("SAFERELAY_WEBHOOK_URL", "").strip()
    if not raw:
        return None
    parts = urllib.parse.urlsplit(raw)
    loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
    if not (parts.scheme == "https" or loopback) or not parts.hostname:
        raise SettingsError(
            "SAFERELAY_WEBHOOK_URL must be the public https:// address Telegram will post "
            f"updates to (for example https://bot.example.org/telegram), not {raw!r}."
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(
            "SAFERELAY_WEBHOOK_URL takes a plain address: no query, fragment or password."
        )
    return raw


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "yes", "1"):
        return True
    if raw in ("off", "false", "no", "0"):
        return False
    raise SettingsError(f"{name} must be on or off, not {raw!r}.")


def _secrets_dir(env: Mapping[str, str]) -> Path:
    """``SAFERELAY_SECRETS_DIR``, else ``saferelay`` in the user's config dir (XDG), so a copy
    or backup of the data directory never carries the keys that open it."""
    chosen = env.get("SAFERELAY_SECRETS_DIR", "").strip()
    if chosen:
        return Path(chosen).expanduser()
    config_home = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home).expanduser() if config_home else Path.home() / ".config"
    return base / "saferelay"


_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
DATABASE_URL_HINT = (
    "DATABASE_URL must be sqlite:///path/to/file.db (the default, in the data directory) or "
    "postgresql://user@host:5432/dbname (the password in DATABASE_PASSWORD_FILE)"
)


def database_from(env: Mapping[str, str], data_dir: Path) -> tuple[str, Secret | None]:
    """``DATABASE_URL`` with the driver this version uses (aiosqlite, asyncpg), and its
    password taken out of it: from the URL itself or from ``DATABASE_PASSWORD_FILE`` (a
    Docker secret such as /run/secrets/db_password), so it is never shown with the URL."""
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return f"sqlite+aiosqlite:///{(data_dir / 'saferelay.db').resolve()}", None
    try:
        url = make_url(raw)
    except ArgumentError:
        raise SettingsError(f"{DATABASE_URL_HINT}.") from None
    if url.drivername in ("sqlite", "sqlite+aiosqlite"):
        if not url.database or url.database == ":memory:":
            raise SettingsError(f"{DATABASE_URL_HINT}; an SQLite URL needs a file path.")
        return url.set(drivername="sqlite+aiosqlite").render_as_string(), None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise SettingsError(f"{DATABASE_URL_HINT}, not {url.drivername}://.")
    if not url.database:
        raise SettingsError(f"{DATABASE_URL_HINT}; the URL names no database.")
    password = url.password
    password_file = env.get("DATABASE_PASSWORD_FILE", "").strip()
    if password_file:
        if password is not None:
            raise SettingsError(
                "DATABASE_URL has a password and DATABASE_PASSWORD_FILE is set too: keep the "
                "password only in the file."
            )
        try:
            password = Path(password_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"DATABASE_PASSWORD_FILE: cannot read {password_file} ({exc.strerror})."
            ) from None
        if not password:
            raise SettingsError(f"DATABASE_PASSWORD_FILE: {password_file} is empty.")
    shown = URL.create(
        "postgresql+asyncpg", url.username, None, url.host, url.port, url.database, url.query
    )
    return shown.render_as_string(), Secret(password) if password is not None else None


def load_settings(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> Settings:
    """Read settings from ``env`` (default: ``.env`` overlaid by ``os.environ``) and validate."""
    if env is None:
        from_file = {
            k: v for k, v in dotenv_values(dotenv_path or Path(".env")).items() if v is not None
        }
        env = {**from_file, **os.environ}

    data_dir = Path(env.get("SAFERELAY_DATA_DIR", "").strip() or "./data").expanduser()
    secrets_dir = _secrets_dir(env)

    database_url, database_password = database_from(env, data_dir)

    base_url = env.get("TELEGRAM_API_BASE_URL", "").strip() or TELEGRAM_API
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", base_url):
        raise SettingsError(
            "TELEGRAM_API_BASE_URL must be an http(s) URL such as "
            f"{TELEGRAM_API} (the token is appended to it)."
        )

    token_raw = _secret_value(env, "TELEGRAM_BOT_TOKEN")
    token: Secret | None = None
    if token_raw:
        if not _TOKEN_RE.match(token_raw):
            raise SettingsError(
                "TELEGRAM_BOT_TOKEN does not look like a bot token "
                f"(digits, a colon, then letters): {BOTFATHER_HINT}."
            )
        token = Secret(token_raw)

    passphrase_raw = _secret_value(env, "SAFERELAY_PASSPHRASE", strip=False)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        secrets_dir=secrets_dir,
        telegram_api_base_url=base_url,
        telegram_bot_token=token,
        passphrase=Secret(passphrase_raw) if passphrase_raw else None,
        database_password=database_password,
        checkin_timeout_minutes=_number(
            env, "SAFERELAY_CHECKIN_TIMEOUT_MINUTES", 30.0, 0.01, 24 * 60
        ),
        escalate_minutes=_number(env, "SAFERELAY_ESCALATE_MINUTES", 15.0, 0.01, 24 * 60),
        sweep_seconds=_number(env, "SAFERELAY_SWEEP_SECONDS", 30.0, 0.1, 3600),
        telegram_timeout_seconds=_number(env, "SAFERELAY_TELEGRAM_TIMEOUT", 10.0, 0.5, 120),
        # Telegram allows deleting a private-chat message only within 48 hours.
        clear_after_minutes=_number(env, "SAFERELAY_CLEAR_AFTER_MINUTES", 10.0, 0.01, 47 * 60),
        # Staff chats too: a lost work phone shows at most this much of what members said.
        staff_clear_after_hours=_number(env, "SAFERELAY_STAFF_CLEAR_AFTER_HOURS", 24.0, 0.0001, 47),
        retention_days=int(_number(env, "SAFERELAY_RETENTION_DAYS", 365, 1, 3650)),
        messages_per_minute=int(_number(env, "SAFERELAY_MESSAGES_PER_MINUTE", 20, 1, 1000)),
        checkin_every=_duration(env, "SAFERELAY_CHECKIN_EVERY", "7d"),
        checkin_window=_window(env, "SAFERELAY_CHECKIN_WINDOW", "19:00-21:00"),
        checkin_grace=_duration(env, "SAFERELAY_CHECKIN_GRACE", "2d"),
        default_timezone=_timezone(env, "SAFERELAY_DEFAULT_TIMEZONE", "Asia/Seoul"),
        web_host=env.get("SAFERELAY_WEB_HOST", "").strip() or "127.0.0.1",
        web_port=int(_number(env, "SAFERELAY_WEB_PORT", 8080, 0, 65535)),
        webhook_url=_webhook_url(env),
        webapp_url=_webapp_url(env),
        updates=_switch(env, "SAFERELAY_UPDATES", True),
    )


def _webapp_url(env: Mapping[str, str]) -> str | None:
    """``SAFERELAY_WEBAPP_URL``: HTTPS (Telegram opens only HTTPS Mini Apps), or plain HTTP on
    the loopback for tests and the local demo; a path ending in "/"."""
    raw = env.get("SAFERELAY_WEBAPP_URL", "").strip()
    if not raw:
        return None
    parts = urllib.parse.urlsplit(raw)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    if not (parts.scheme == "https" or loopback) or not parts.hostname:
        raise SettingsError(
            "SAFERELAY_WEBAPP_URL must be an https:// URL (http:// only on 127.0.0.1), "
            "for example https://example.org/app/"
        )
    if not parts.path.endswith("/") or parts.query or parts.fragment:
        raise SettingsError("SAFERELAY_WEBAPP_URL must end in '/' with no query, e.g. .../app/")
    return raw
