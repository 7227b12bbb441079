"""Settings: defaults, validation, and secrets that never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import TELEGRAM_API, SettingsError, load_settings

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"


def test_defaults_are_sqlite_in_the_data_dir() -> None:
    settings = load_settings({})
    assert settings.data_dir == Path("data")
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("/data/saferelay.db")
    assert settings.telegram_api_base_url == TELEGRAM_API
    assert settings.telegram_file_base_url == "https://api.telegram.org/file/bot"
    assert settings.telegram_bot_token is None


def test_local_bot_api_server_gets_matching_file_url() -> None:
    settings = load_settings({"TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot"})
    assert settings.telegram_file_base_url == "http://127.0.0.1:8081/file/bot"


def test_secrets_never_appear_in_repr() -> None:
    settings = load_settings(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "SAFERELAY_PASSPHRASE": "hunter2hunter2"}
    )
    assert TOKEN not in repr(settings) and "hunter2" not in repr(settings)
    assert settings.require_token() == TOKEN


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEGRAM_BOT_TOKEN": "abc"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"SAFERELAY_CHECKIN_TIMEOUT_MINUTES": "soon"}, "SAFERELAY_CHECKIN_TIMEOUT_MINUTES"),
        ({"SAFERELAY_CHECKIN_TIMEOUT_MINUTES": "0"}, "SAFERELAY_CHECKIN_TIMEOUT_MINUTES"),
    ],
)
def test_malformed_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_missing_token_is_only_an_error_when_running() -> None:
    with pytest.raises(SettingsError, match="BotFather"):
        load_settings({}).require_token()


def test_environment_overrides_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SAFERELAY_DATA_DIR=/from/file\nTELEGRAM_BOT_TOKEN={TOKEN}\n")
    monkeypatch.setenv("SAFERELAY_DATA_DIR", "/from/env")
    settings = load_settings(dotenv_path=dotenv)
    assert settings.data_dir == Path("/from/env")
    assert settings.require_token() == TOKEN


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    # Given a Docker secret / systemd credential holding the token, with editors' newline
    token_file = tmp_path / "telegram_bot_token"
    token_file.write_text(TOKEN + "\n")
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(" spaces kept inside and around \n")
    # When the settings name the files instead of the values
    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN_FILE": str(token_file),
            "SAFERELAY_PASSPHRASE_FILE": str(passphrase_file),
        }
    )
    # Then the values are read from them (a passphrase keeps its spaces)
    assert settings.require_token() == TOKEN
    assert settings.passphrase is not None
    assert settings.passphrase.get() == " spaces kept inside and around "


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BOT_TOKEN_FILE": "/x"},
            "TELEGRAM_BOT_TOKEN or TELEGRAM_BOT_TOKEN_FILE, not both",
        ),
        ({"TELEGRAM_BOT_TOKEN_FILE": "/nonexistent/token"}, "cannot be read"),
        ({"SAFERELAY_WEBHOOK_URL": "http://bot.example.org/hook"}, "https://"),
        ({"SAFERELAY_WEBHOOK_URL": "bot.example.org"}, "SAFERELAY_WEBHOOK_URL"),
        ({"SAFERELAY_WEBHOOK_URL": "https://bot.example.org/h?x=1"}, "no query"),
        ({"SAFERELAY_WEB_PORT": "70000"}, "SAFERELAY_WEB_PORT"),
    ],
)
def test_bad_secret_files_and_webhook_settings_say_what_to_fix(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_webhook_mode_serves_the_public_urls_path() -> None:
    assert load_settings({}).webhook_url is None  # polling
    settings = load_settings(
        {
            "SAFERELAY_WEBHOOK_URL": "https://bot.example.org/tg/updates",
            "SAFERELAY_WEB_PORT": "8443",
        }
    )
    assert settings.webhook_path == "/tg/updates" and settings.web_port == 8443
    assert settings.web_host == "127.0.0.1"
    # Plain http only for a loopback address (the local Bot API in tests and the demo).
    assert load_settings({"SAFERELAY_WEBHOOK_URL": "http://127.0.0.1:9000/"}).webhook_path == "/"
