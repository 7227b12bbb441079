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


def test_postgresql_url_gets_the_asyncpg_driver_and_loses_its_password() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://bot:s3cret-pw@db:5432/saferelay"})
    # The URL kept in the settings can be shown: the password lives apart, as a Secret
    assert settings.database_url == "postgresql+asyncpg://bot@db:5432/saferelay"
    assert settings.database_dialect == "postgresql"
    assert "s3cret-pw" not in repr(settings)
    engine_url = settings.engine_url()
    assert engine_url.password == "s3cret-pw"
    assert "s3cret-pw" not in str(engine_url) and "s3cret-pw" not in repr(engine_url)


def test_database_password_from_a_file_as_docker_secrets_mount_it(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("from-the-file\n")
    settings = load_settings(
        {"DATABASE_URL": "postgres://bot@db/saferelay", "DATABASE_PASSWORD_FILE": str(secret)}
    )
    assert settings.engine_url().password == "from-the-file"
    assert "from-the-file" not in repr(settings)


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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "postgresql://bot@db/"}, "names no database"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL must be"),
        (
            {"DATABASE_URL": "postgresql://bot:pw@db/x", "DATABASE_PASSWORD_FILE": "/x"},
            "only in the file",
        ),
        (
            {"DATABASE_URL": "postgresql://bot@db/x", "DATABASE_PASSWORD_FILE": "/nonexistent"},
            "cannot read /nonexistent",
        ),
    ],
)
def test_database_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
