"""An attacker copies the data directory of a running bot, and holds the server key too.

They search every file (database, write-ahead log, shared memory) for server-box envelopes,
try each with the server key at every place a row id found in the files could name, and
look for the sent texts in the clear. The WAL keeps old page images until it is
checkpointed, so without the scrubber (bot/scrubber.py) sent messages would still open
there -- the second test shows the scan finds exactly that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.i18n import t
from crypto.boxes import (
    ALG_SERVER,
    HEADER_SIZE,
    NONCE_SIZE,
    PAD_BLOCK,
    RecordPlace,
    ServerBox,
    key_id,
)
from crypto.errors import RecordOpenError
from crypto.keystore import SecretsDir
from sandbox import FakeBotApi, FakeUser
from storage.models import Case, Role
from tests.conftest import (
    RunningBot,
    eventually,
    make_settings,
    secrets_of,
    start_bot,
    stop_bot,
)
from tests.handlers.conftest import ask

MAC_SIZE = 16
# Every server-box column: where an envelope can have come from.
SERVER_COLUMNS = (
    ("outbox", "payload"),
    ("cases", "brief"),
    ("people", "chat_ref"),
    ("people", "display_name"),
)
ROW_ID = re.compile(rb"[A-Za-z0-9_-]{22}")
TEXTS = [f"secret errand number {n} zq" for n in range(5)]
REQUEST = "rent money for the errand zq"  # a help request's words, claimed below


def copy_of(data_dir: Path) -> dict[str, bytes]:
    """Every file in the data directory, read while the bot runs."""
    return {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}


def server_key(data_dir: Path) -> bytes:
    import base64
    import json

    document = json.loads((secrets_of(data_dir) / "server.json").read_text())
    return base64.b64decode(document["server_key"])


def envelopes(raw: bytes, kid: bytes) -> Iterator[tuple[bytes, frozenset[str]]]:
    """Every byte run that starts like a server envelope, at every padded length, with the
    row ids written near it (SQLite stores a row's columns side by side, so the id that
    the envelope is bound to sits within a page of it)."""
    for version in (1, 2):
        header = bytes((version, ALG_SERVER)) + kid
        for match in re.finditer(re.escape(header), raw):
            start = match.start()
            near = raw[max(0, start - 4096) : start + 8192]
            ids = frozenset(m.group().decode() for m in ROW_ID.finditer(near))
            for blocks in range(1, 17):
                end = start + HEADER_SIZE + NONCE_SIZE + MAC_SIZE + blocks * PAD_BLOCK
                if end <= len(raw):
                    yield raw[start:end], ids


def opened(files: dict[str, bytes], key: bytes) -> list[bytes]:
    """Every plaintext the server key opens anywhere in the copy."""
    box, kid = ServerBox(key), key_id(key)
    found: list[bytes] = []
    # The WAL holds many frames of the same page: each distinct envelope is tried once.
    candidates: dict[bytes, set[str]] = {}
    for raw in files.values():
        for candidate, ids in envelopes(raw, kid):
            candidates.setdefault(candidate, set()).update(ids)
    for candidate, ids in candidates.items():
        for table, column in SERVER_COLUMNS:
            for row_id in ids:
                try:
                    found.append(box.open(candidate, RecordPlace(table, column, row_id)))
                except RecordOpenError:
                    continue
                break
    return found


def sent_texts_in(plaintexts: list[bytes], files: dict[str, bytes]) -> list[str]:
    texts = [*TEXTS, REQUEST]
    hits = [x for x in texts if any(x.encode() in p for p in plaintexts)]
    hits += [x for x in texts if any(x.encode() in raw for raw in files.values())]
    return hits


async def relay_burst(bot: RunningBot, member: FakeUser, staff: FakeUser) -> None:
    for text in TEXTS:
        await member.send_text(text)
    for text in TEXTS:
        await staff.wait_for_message(text, timeout=15)
    await bot.drained()


async def team(bot: RunningBot) -> tuple[FakeUser, FakeUser]:
    staff = bot.api.user(680001, "Mina", language_code="en")
    member = bot.api.user(680002, "Member", language_code="en")
    await bot.enrol(staff, Role.ADMIN, "en", name="Mina")
    await bot.enrol(member, Role.MEMBER, "en")
    return staff, member


async def test_a_copy_of_the_data_directory_opens_to_no_sent_text(bot: RunningBot) -> None:
    staff, member = await team(bot)
    # Given a burst of relayed messages, all delivered, and a help request claimed
    await relay_burst(bot, member, staff)
    await ask(member, "money", "week", REQUEST)
    alert = await staff.wait_for_message(REQUEST)
    await bot.drained()
    await staff.press(t("en", "btn_claim"), message=alert)

    async def claimed() -> bool:
        async with bot.core.sessions() as session:
            return await session.scalar(select(Case.status)) == "claimed"

    await eventually(claimed, what="the request to be claimed")
    data_dir, key = bot.settings.data_dir, server_key(bot.settings.data_dir)
    # When the attacker copies the running bot's files (once the scrubber had its moment)

    async def clean_copy() -> bool:
        files = copy_of(data_dir)
        return sent_texts_in(opened(files, key), files) == []

    await eventually(clean_copy, within=10, what="no sent text in a copy of the data dir")
    files = copy_of(data_dir)
    plaintexts = opened(files, key)
    # Then no envelope anywhere opens to a sent text, and none is there in the clear
    assert sent_texts_in(plaintexts, files) == []
    for user in (staff, member):
        assert all(str(user.user_id).encode() not in raw for raw in files.values())
    # ... while the scan does work: what is legitimately stored still opens (chat ids)
    chat_ids = {str(user.chat_id).encode() for user in (staff, member)}
    assert chat_ids <= set(plaintexts)


async def test_without_the_scrubber_the_wal_still_holds_sent_texts(
    api: FakeBotApi, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan above is able to find a leak: with the WAL never truncated, it does."""
    import bot.scrubber

    async def never(_engine: object) -> bool:
        return True

    monkeypatch.setattr(bot.scrubber, "truncate_wal", never)
    settings = make_settings(data_dir, api)
    app = await start_bot(api, settings)
    try:
        import io

        running = RunningBot(api, app, settings, io.StringIO())
        staff, member = await team(running)
        await relay_burst(running, member, staff)
        files = copy_of(data_dir)
        assert "saferelay.db-wal" in files
        assert sent_texts_in(opened(files, server_key(data_dir)), files) != []
    finally:
        await stop_bot(app)
    assert SecretsDir(secrets_of(data_dir)).exists()
