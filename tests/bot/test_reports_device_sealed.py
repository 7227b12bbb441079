"""Check-ins sealed on a phone (the Mini App's multi-recipient envelopes) count and open in
`saferelay report` with the team key exactly like check-ins sealed by the bot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nacl.public
import pytest

from bot.checkins import CheckInAnswers, record_checkin, sealed_place
from bot.core import Core
from crypto.boxes import Recipient, seal_multi
from storage.models import CheckIn, new_id
from tests.bot.test_reports import cli_env, everyone, report
from tests.conftest import bare_people


async def test_phone_sealed_and_bot_sealed_checkins_make_one_table(
    core: Core, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ten members in 2019: five checked in through the chat (sealed by the bot), five
    # through the Mini App (sealed on their phones to the team key and a caseworker device)
    members = bare_people(10)
    team = Recipient(core.secrets.team_sealer.public_key)
    device = Recipient(bytes(nacl.public.PrivateKey.generate().public_key))
    at = datetime(2019, 3, 1, tzinfo=UTC)
    async with core.sessions() as session, session.begin():
        session.add_all(members)
        await session.flush()
        for n, member in enumerate(members):
            answers = CheckInAnswers(health=3 if n % 2 else 2, threat=n < 4)
            if n < 5:
                await record_checkin(session, core.secrets.team_sealer, member.id, answers, at=at)
                continue
            row_id = new_id()
            envelope = seal_multi(answers.to_bytes(), sealed_place(row_id), team, [device])
            session.add(CheckIn(id=row_id, person_id=member.id, created_at=at, sealed=envelope))
    cli_env(monkeypatch, data_dir)

    # When the coordinator runs the yearly report with the team key
    printed, _out = await report(capsys, data_dir)

    # Then all ten count, and the figures are the ones they answered (mean 2.5, 40 %)
    row = everyone(printed)["2019"]
    assert row[0] == "10"
    assert (row[2], row[4]) == ("2.50", "40%")
