"""I1/I2: after a real scenario, no identity and no answer is in the database files or logs.

The scenario uses distinctive names, usernames, ids and note text, then searches the raw
bytes of every file in the data directory (the secrets directory aside: it holds keys, not
data) and the whole log output, at DEBUG level.
"""

from __future__ import annotations

import struct
from pathlib import Path

from bot.i18n import t
from storage.models import Role
from tests.conftest import RunningBot, stop_bot

ADMIN_ID, MEMBER_ID = 424242421, 5550001234
NOTE = "Meet me at the Yanji station north gate 3pm"
SECRETS = {
    "admin first name": "Zhangwei-Distinctive",
    "admin last name": "Oksana-Lastname",
    "admin username": "zhang_distinct_user",
    "member first name": "Solah-Uniquename",
    "member username": "kimsolah_secret",
    "note": NOTE,
    "note words": "Yanji station",
    "help text": "Broker kept my passport in Hunchun",
    "relayed text": "I am staying with my aunt Sunhee near Dandong",
    "reply text": "Take the 8am bus to Shenyang tomorrow",
    "caseworker name": "Ms Hwang Bora",
}


def encodings(value: int) -> dict[str, bytes]:
    """A Telegram id as text and in the binary forms a database could store it."""
    forms = {
        "decimal": str(value).encode(),
        "int64 be": struct.pack(">q", value),
        "int64 le": struct.pack("<q", value),
        "hex": f"{value:x}".encode(),
    }
    if value < 2**31:
        forms["int32 be"] = struct.pack(">i", value)
    return forms


def data_files(data_dir: Path) -> dict[str, bytes]:
    secrets = data_dir / "secrets"
    return {
        str(p.relative_to(data_dir)): p.read_bytes()
        for p in data_dir.rglob("*")
        if p.is_file() and secrets not in p.parents
    }


def leaks(blobs: dict[str, bytes]) -> list[str]:
    needles: dict[str, bytes] = {}
    for label, text in SECRETS.items():
        needles[label] = text.encode("utf-8")
        needles[label + " (utf-16)"] = text.encode("utf-16-le")
    for who, value in (("admin id", ADMIN_ID), ("member id", MEMBER_ID)):
        for form, encoded in encodings(value).items():
            needles[f"{who} {form}"] = encoded
    return [
        f"{label} in {name}"
        for name, blob in blobs.items()
        for label, needle in needles.items()
        if needle in blob
    ]


async def test_scenario_leaves_no_identity_or_answer_on_disk_or_in_logs(bot: RunningBot) -> None:
    # Given an admin and a member with distinctive identities
    admin = bot.api.user(
        ADMIN_ID,
        SECRETS["admin first name"],
        last_name=SECRETS["admin last name"],
        username=SECRETS["admin username"],
        language_code="en",
    )
    member = bot.api.user(
        MEMBER_ID, SECRETS["member first name"], username=SECRETS["member username"]
    )
    await bot.enrol(admin, Role.ADMIN, language="en", name=SECRETS["caseworker name"])
    await bot.enrol(member, Role.MEMBER, language="ko")
    # When the member checks in with a note
    await member.send_command("checkin")
    await member.press(t("ko", "checkin_health_2"))
    await member.press(t("ko", "yes"))
    await member.send_text(NOTE)
    await member.wait_for_message(t("ko", "checkin_thanks"))
    # ... asks for help, writes to their caseworker and gets an answer signed with a name
    await member.send_command("ask")
    await member.press(t("ko", "cat_danger"))
    await member.press(t("ko", "urg_now"))
    await member.send_text(SECRETS["help text"])
    await member.wait_for_message(t("ko", "ask_sent"))
    await member.send_text(SECRETS["relayed text"])
    relayed = await admin.wait_for_message(SECRETS["relayed text"])
    await bot.drained()
    await admin.send_text(SECRETS["reply text"], reply_to=relayed.message_id)
    await member.wait_for_message(SECRETS["reply text"])
    await bot.api.wait_idle()

    # Then, while running (WAL and SHM still present) ...
    data_dir = bot.settings.data_dir
    running = data_files(data_dir)
    assert "saferelay.db" in running
    assert leaks(running) == []
    # ... and after a clean stop (WAL checkpointed into the main file)
    await stop_bot(bot.app)
    assert leaks(data_files(data_dir)) == []
    # ... and in every log line, with the bot at DEBUG
    log = bot.log.getvalue()
    assert " INFO bot.app: bot ready" in log  # the log did capture the run
    assert leaks({"log": log.encode()}) == []
    assert bot.api.token not in log
    # ... and the data directory holds the database and nothing else: no key
    assert {p.name for p in data_dir.iterdir()} <= {
        "saferelay.db",
        "saferelay.db-wal",
        "saferelay.db-shm",
    }
