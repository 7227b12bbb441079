"""deploy/ read as an operator's tools would read it: the compose file parsed, the Dockerfile's
stages and commands, the systemd unit through `systemd-analyze`, and the commands both run
here, outside Docker and systemd, with the settings they would be given.

What cannot be checked here (no Docker daemon, no systemd as PID 1): that the image builds,
that Compose accepts every key, that the unit's sandbox lets the bot run. The README says
how an operator checks those on the real host."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import FakeBotApi
from tests.conftest import make_keys, secrets_of

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
SECRET_NAMES = ("TOKEN", "PASSWORD", "PASSPHRASE", "SECRET")
IMAGE_TMP = "/tmp"  # noqa: S108 - the path inside the image, mapped to the test's own
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"


# ------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_bot_and_postgresql_and_restarts_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"bot", "db", "sender"}
    assert re.fullmatch(r"postgres:15\.\d+-bookworm", services["db"]["image"])
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert "no-new-privileges:true" in service["security_opt"]
    assert services["bot"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    build = services["bot"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_adds_send_only_processes_on_request(compose: dict[str, Any]) -> None:
    bot, sender = compose["services"]["bot"], compose["services"]["sender"]
    # Only with `--profile senders`; never a second consumer of updates, never a port
    assert sender["profiles"] == ["senders"]
    assert sender["environment"]["SAFERELAY_UPDATES"] == "off"
    assert "SAFERELAY_UPDATES" not in bot["environment"]  # the default: on
    assert not sender["ports"]
    # Otherwise the same container as the bot: image, secrets, database, hardening
    for key in ("image", "secrets", "volumes", "networks", "read_only", "cap_drop", "tmpfs"):
        assert sender[key] == bot[key], key
    assert {k: v for k, v in sender["environment"].items() if k != "SAFERELAY_UPDATES"} == (
        bot["environment"]
    )


def test_compose_never_publishes_the_database(compose: dict[str, Any]) -> None:
    db, bot = compose["services"]["db"], compose["services"]["bot"]
    assert "ports" not in db and "expose" not in db
    assert db["networks"] == ["backend"]
    assert compose["networks"]["backend"] == {"internal": True}
    # The bot's web server only on the host's loopback, for a reverse proxy.
    assert all(port.startswith("127.0.0.1:") for port in bot["ports"])


def test_compose_mounts_secrets_as_files_and_keeps_data_on_named_volumes(
    compose: dict[str, Any],
) -> None:
    services, secrets = compose["services"], compose["secrets"]
    assert {name: spec["file"] for name, spec in secrets.items()} == {
        "telegram_bot_token": "./secrets/telegram_bot_token",
        "db_password": "./secrets/db_password",
        "server_json": "./secrets/server.json",
    }
    bot_secrets = {s if isinstance(s, str) else s["source"] for s in services["bot"]["secrets"]}
    assert bot_secrets == set(secrets)
    assert services["db"]["secrets"] == ["db_password"]
    # No secret value in any environment: only *_FILE names pointing under /run/secrets.
    for service in services.values():
        for name, value in service["environment"].items():
            if any(word in name for word in SECRET_NAMES):
                assert name.endswith(("_FILE", "_DIR")), name
                assert str(value).startswith("/run/secrets"), name
    bot_env = services["bot"]["environment"]
    assert bot_env["SAFERELAY_SECRETS_DIR"] == "/run/secrets"
    assert {"source": "server_json", "target": "server.json"} in services["bot"]["secrets"]
    # Data only on the named volumes the file declares; no host directory bound in.
    for service in services.values():
        for mount in service["volumes"]:
            volume, _, _ = mount.partition(":")
            assert volume in compose["volumes"], mount
    assert set(compose["volumes"]) == {"db-data", "bot-data"}
    assert services["bot"]["read_only"] is True and services["bot"]["cap_drop"] == ["ALL"]


def test_env_example_holds_no_secret_value() -> None:
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and any(word in name for word in SECRET_NAMES):
            assert not value.strip(), f"{name} must not have a value in .env.example"


# ------------------------------------------------------------------------------ Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), " ".join(rest.split())))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    pairs = _dockerfile()
    last_from = max(i for i, (instruction, _) in enumerate(pairs) if instruction == "FROM")
    return pairs[last_from:]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _final_stage():
        if instruction == "ENV":
            for pair in args.split(" "):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _stage(name: str) -> list[tuple[str, str]]:
    pairs = _dockerfile()
    start = pairs.index(("FROM", name))
    end = next((i for i in range(start + 1, len(pairs)) if pairs[i][0] == "FROM"), len(pairs))
    return pairs[start:end]


def test_dockerfile_builds_in_stages_and_ships_a_slim_non_root_image() -> None:
    pairs = _dockerfile()
    bases = dict(args.split("=", 1) for instruction, args in pairs if instruction == "ARG")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases["PYTHON_IMAGE"])
    # Node by an exact version tag too: a rebuild gets the same npm resolving the lockfile
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-bookworm-slim", bases["NODE_IMAGE"])
    froms = [args for instruction, args in pairs if instruction == "FROM"]
    assert froms == ["${NODE_IMAGE} AS webapp", "${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = _final_stage()
    text = " ".join(args for _, args in final)
    assert "COPY --from=builder /opt/saferelay /opt/saferelay" in [f"{i} {a}" for i, a in final]
    for tool in ("apt-get", "gcc", "build-essential", "/wheels", "node", "npm", "--from=webapp"):
        assert tool not in text, tool
    assert ("USER", "10001:10001") in final


def test_dockerfile_installs_libsodium_from_the_lockfile_into_the_package() -> None:
    # The node stage: exactly the lockfile's packages, no install scripts, nothing else
    webapp = _stage("${NODE_IMAGE} AS webapp")
    assert ("COPY", "webapp/package.json webapp/package-lock.json ./") in webapp
    [(_, npm)] = [(i, a) for i, a in webapp if i == "RUN"]
    assert npm.startswith("npm ci ") and "--ignore-scripts" in npm
    # The builder puts its node_modules beside the pages before the wheel is built, and
    # refuses to finish if the installed package cannot serve them
    builder = _stage("${PYTHON_IMAGE} AS builder")
    copies = [a for i, a in builder if i == "COPY"]
    assert copies.index("webapp ./webapp") < copies.index(
        "--from=webapp /src/webapp/node_modules ./webapp/node_modules"
    )
    [(_, build)] = [(i, a) for i, a in builder if i == "RUN"]
    assert "static_assets" in build.rsplit("&&", 1)[1]
    # ... and the build context carries the page sources, never a local node_modules
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!webapp/" in ignored and "**/node_modules" in ignored


async def test_an_installed_wheel_serves_the_mini_app_without_the_checkout(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """What the image's builder does, here: a wheel built from the sources (after `npm ci`),
    installed elsewhere, serves the pages and libsodium from the installed copy alone."""
    # Given a copy of the sources, as the Docker build context holds them
    source = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".bin", "*.d.mts")
    for name in ("bot", "handlers", "crypto", "storage", "sandbox", "webapp"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # When it is built into a wheel and installed into a directory of its own
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheels"]
    await asyncio.to_thread(subprocess.run, [*build, source], check=True, cwd=tmp_path)
    [wheel] = (tmp_path / "wheels").glob("saferelay-*.whl")
    site = tmp_path / "site"
    install = [*pip, "install", "--no-deps", "--target", site, wheel]
    await asyncio.to_thread(subprocess.run, install, check=True)
    shutil.rmtree(source)  # nothing may be read from the sources any more
    # Then the installed copy, run from elsewhere, serves a page and libsodium
    script = """
import asyncio, sys, aiohttp
from aiohttp.test_utils import TestServer
import webapp.routes as routes

async def main():
    server = TestServer(routes.build_webapp(bytes(32)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("member.ko.html", "js/member.mjs", "vendor/libsodium.mjs",
                         "vendor/libsodium-wrappers.mjs"):
                async with http.get(server.make_url("/" + path)) as response:
                    print(path, response.status, len(await response.read()))
    finally:
        await server.close()
    print("from", routes.__file__)

asyncio.run(main())
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[-1] == f"from {site / 'webapp' / 'routes.py'}"
    served = {path: (int(status), int(size)) for path, status, size in map(str.split, lines[:-1])}
    assert all(status == 200 for status, _ in served.values()), served
    assert served["vendor/libsodium.mjs"][1] > 100_000  # the real build, not a stub

    # And an install made without `npm ci` is refused at start, in one line saying what to do
    shutil.rmtree(site / "webapp" / "node_modules")
    data = tmp_path / "data"
    make_keys(data)
    env |= {
        "SAFERELAY_DATA_DIR": str(data),
        "SAFERELAY_SECRETS_DIR": str(secrets_of(data)),
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "SAFERELAY_WEBAPP_URL": "http://127.0.0.1/app/",
        "SAFERELAY_WEB_HOST": "127.0.0.1",
        "SAFERELAY_WEB_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    log = stderr.decode()
    assert process.returncode == 2, log
    assert "npm ci" in log and "Traceback" not in log


def test_dockerfile_commands_are_saferelay_run_and_check() -> None:
    final = dict(_final_stage())
    assert json.loads(final["ENTRYPOINT"]) == ["saferelay"]
    assert json.loads(final["CMD"]) == ["run"]
    healthcheck = final["HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["saferelay", "check"]')
    assert "--timeout=30s" in healthcheck


def test_dockerignore_keeps_secrets_and_data_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored.index("*") < ignored.index("!bot/")  # all out, then the sources back in
    for pattern in ("**/.env", "**/*.key", "**/secrets/", "**/data/"):
        assert pattern in ignored


def _localised(value: str, local: dict[str, str]) -> str:
    """A path inside the image or unit, as the same path under this test's directory."""
    for inside, here in local.items():
        if value == inside or value.startswith(inside + "/"):
            return here + value[len(inside) :]
    return value


async def _run_until_polling_then_check(
    api: FakeBotApi, command: list[str], health: list[str], env: dict[str, str], cwd: Path
) -> str:
    """Start ``command``, wait until it polls the fake Bot API, run ``health`` (must exit
    0), then SIGTERM the bot (must exit 0). Returns what the health check printed."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await api.wait_for(
            lambda: bool(api.calls_to("getUpdates")) or process.returncode is not None, timeout=60
        )
        if process.returncode is not None:
            _, stderr = await process.communicate()
            raise AssertionError(f"exited {process.returncode}: {stderr.decode()}")
        checked = await asyncio.create_subprocess_exec(
            *health, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(checked.communicate(), timeout=60)
        assert checked.returncode == 0, (out + err).decode()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode() and api.token not in stderr.decode()
    return out.decode()


async def test_the_images_entry_command_and_healthcheck_run_with_its_settings(
    tmp_path: Path, api: FakeBotApi, compose: dict[str, Any]
) -> None:
    # Given the image's environment and the compose file's, with its paths made local: the
    # volume becomes a directory here, /run/secrets another holding the three files.
    data, secrets = tmp_path / "var-lib-saferelay", tmp_path / "run-secrets"
    make_keys(data)
    shutil.move(secrets_of(data), secrets)
    (secrets / "telegram_bot_token").write_text(api.token + "\n")
    env = {**_image_env(), **compose["services"]["bot"]["environment"]}
    # PostgreSQL is the pg branch's part: here the image runs on its SQLite default.
    env.pop("DATABASE_URL")
    env.pop("DATABASE_PASSWORD_FILE")
    local = {
        "/var/lib/saferelay": str(data),
        "/run/secrets": str(secrets),
        IMAGE_TMP: str(tmp_path),
    }
    env = {name: _localised(value, local) for name, value in env.items()}
    env["PATH"] = (
        env["PATH"]
        .replace("/opt/saferelay/bin", str(VENV_BIN))
        .replace("$PATH", os.environ["PATH"])
    )
    env["TELEGRAM_API_BASE_URL"] = api.base_url
    env["SAFERELAY_WEB_HOST"] = "127.0.0.1"  # never every address of the test machine
    final = dict(_final_stage())
    command = json.loads(final["ENTRYPOINT"]) + json.loads(final["CMD"])
    health = json.loads(final["HEALTHCHECK"].split(" CMD ", 1)[1])
    # When the container's command runs, Then it polls, its health check passes, and
    # `docker stop` (SIGTERM) ends it cleanly.
    printed = await _run_until_polling_then_check(api, command, health, env, data)
    assert "FAIL" not in printed and str(secrets) not in printed


# --------------------------------------------------------------------------------- systemd


def _unit() -> str:
    return (DEPLOY / "saferelay.service").read_text()


def _directives(unit: str) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, _, value in (
            line.partition("=") for line in unit.splitlines() if line and line[0].isalpha()
        )
    ]


def _local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's saferelay (the same program)."""
    unit = _unit().replace("/opt/saferelay/venv/bin/saferelay", str(VENV_BIN / "saferelay"))
    path = tmp_path / "saferelay.service"
    path.write_text(unit)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="tests/run installs systemd")
def test_systemd_unit_verifies_cleanly_and_is_hardened(tmp_path: Path) -> None:
    unit = _local_unit(tmp_path)
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # Unknown or misspelt keys are only warnings to systemd: any output is a failure here.
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout[-600:]  # exposure 2.0 or better ("OK")


def test_systemd_unit_has_the_promised_sandbox() -> None:
    directives = _directives(_unit())
    found = dict(directives)
    assert found["User"] == "saferelay" and found["Group"] == "saferelay"
    for name, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "ReadWritePaths": "/var/lib/saferelay",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert found[name] == value, name
    assert [v for n, v in directives if n == "ReadWritePaths"] == ["/var/lib/saferelay"]
    assert "@system-service" in [v for n, v in directives if n == "SystemCallFilter"]
    # Secrets as credentials, never as Environment= values.
    for name, value in directives:
        key = value.partition("=")[0]
        if name == "Environment" and any(word in key for word in SECRET_NAMES):
            assert key.endswith(("_FILE", "_DIR")) and value.startswith(f"{key}=%d"), value


def _credentials(text: str) -> set[str]:
    """Credential names loaded (commented-out lines excluded)."""
    pattern = r"(?m)^\s*(?:--property=)?LoadCredential=([\w.]+):/etc/saferelay/[\w.]+"
    return set(re.findall(pattern, text))


def test_the_admin_wrapper_hands_over_the_same_secrets_as_the_unit() -> None:
    wrapper = (DEPLOY / "saferelay-admin").read_text()
    shell = shutil.which("sh") or "/bin/sh"
    assert (
        subprocess.run([shell, "-n", str(DEPLOY / "saferelay-admin")], check=False).returncode == 0
    )
    assert _credentials(wrapper) == _credentials(_unit()) == {"server.json", "telegram_bot_token"}
    assert os.access(DEPLOY / "saferelay-admin", os.X_OK)


async def test_the_units_command_runs_with_its_settings_and_credentials(
    tmp_path: Path, api: FakeBotApi
) -> None:
    # Given what systemd would give the service: its Environment= lines, with %d the
    # credentials directory holding copies of the LoadCredential= files
    data, credentials = tmp_path / "var-lib-saferelay", tmp_path / "credentials"
    make_keys(data)
    shutil.move(secrets_of(data), credentials)
    (credentials / "telegram_bot_token").write_text(api.token + "\n")
    directives = _directives(_unit())
    assert _credentials(_unit()) == {p.name for p in credentials.iterdir()}
    env = {"PATH": os.environ["PATH"], "TELEGRAM_API_BASE_URL": api.base_url}
    for name, value in directives:
        if name == "Environment":
            key, _, setting = value.partition("=")
            local = {"%d": str(credentials), "/var/lib/saferelay": str(data)}
            env[key] = _localised(setting, local | {IMAGE_TMP: str(tmp_path)})
    [exec_start] = [v for n, v in directives if n == "ExecStart"]
    command = exec_start.replace("/opt/saferelay/venv/bin/saferelay", str(VENV_BIN / "saferelay"))
    # When it starts, Then it polls, `saferelay check` is happy, and `systemctl stop` works
    printed = await _run_until_polling_then_check(
        api, command.split(), [str(VENV_BIN / "saferelay"), "check"], env, data
    )
    assert "FAIL" not in printed
