"""Lengths tell nothing: choices are fixed width and every plaintext is padded to a bucket.

Each test here fails on the unpadded format: a check-in answering "threat: yes" was one byte
shorter than "no", a duress case one byte shorter than a normal one.
"""

from __future__ import annotations

import itertools

import nacl.utils
import pytest

from bot.cases import CATEGORIES, URGENCIES, HelpRequest
from bot.checkins import HEALTH_SCALE, CheckInAnswers
from crypto.boxes import PAD_BLOCK, RecordPlace, ServerBox, TeamOpener, TeamSealer, pad
from crypto.keyfile import generate_team_key

PLACE = RecordPlace("checkins", "sealed", "row-1")
SERVER = ServerBox(nacl.utils.random(32))
PAIR = generate_team_key()
SEALER = TeamSealer(PAIR.public_key)
OPENER = TeamOpener([PAIR.private_key])


def test_every_check_in_without_a_note_seals_to_one_length() -> None:
    lengths = {
        len(SEALER.seal(CheckInAnswers(health, threat).to_bytes(), PLACE))
        for health, threat in itertools.product(HEALTH_SCALE, (False, True))
    }
    assert len(lengths) == 1


def test_every_check_in_with_a_note_of_one_length_seals_to_one_length() -> None:
    lengths = {
        len(SEALER.seal(CheckInAnswers(health, threat, "x" * 40).to_bytes(), PLACE))
        for health, threat in itertools.product(HEALTH_SCALE, (False, True))
    }
    assert len(lengths) == 1


def test_every_help_request_and_duress_seal_to_one_length() -> None:
    team, server = set(), set()
    for category, urgency, duress in itertools.product(CATEGORIES, URGENCIES, (False, True)):
        plain = HelpRequest(category, urgency, None, duress).to_bytes()
        team.add(len(SEALER.seal(plain, PLACE)))
        server.add(len(SERVER.seal(plain, PLACE)))
        brief = HelpRequest(category, urgency, "some words", duress).to_bytes(with_text=False)
        server.add(len(SERVER.seal(brief, PLACE)))
    assert len(team) == 1
    assert len(server) == 1


def test_a_note_changes_the_length_only_across_a_bucket() -> None:
    short = SEALER.seal(CheckInAnswers(3, False, "a").to_bytes(), PLACE)
    longer = SEALER.seal(CheckInAnswers(3, False, "a" * 200).to_bytes(), PLACE)
    assert len(short) == len(longer)


@pytest.mark.parametrize("chat_id", [7, 123456789, 1234567890, -1001234567890])
def test_chat_ids_of_any_width_seal_to_one_length(chat_id: int) -> None:
    assert len(SERVER.seal_int(chat_id, PLACE)) == len(SERVER.seal_int(1, PLACE))


@pytest.mark.parametrize("size", [0, 1, PAD_BLOCK - 1, PAD_BLOCK, 3 * PAD_BLOCK + 5])
def test_padding_fills_whole_buckets_and_round_trips(size: int) -> None:
    plain = nacl.utils.random(size)
    assert len(pad(plain)) % PAD_BLOCK == 0
    assert SERVER.open(SERVER.seal(plain, PLACE), PLACE) == plain
    assert OPENER.open(SEALER.seal(plain, PLACE), PLACE) == plain


def test_answers_survive_the_fixed_width_codec() -> None:
    for health, threat, note in itertools.product(
        HEALTH_SCALE, (False, True), (None, "밥 먹었어요")
    ):
        answers = CheckInAnswers(health, threat, note)
        again = CheckInAnswers.from_bytes(answers.to_bytes())
        assert (again.health, again.threat, again.note) == (health, threat, note)
    for category, urgency, duress in itertools.product(CATEGORIES, URGENCIES, (False, True)):
        request = HelpRequest(category, urgency, "도와주세요", duress)
        assert HelpRequest.from_bytes(request.to_bytes()) == request
        brief = HelpRequest.from_bytes(request.to_bytes(with_text=False))
        assert brief == HelpRequest(category, urgency, None, duress)


def test_version_one_json_payloads_still_read() -> None:
    old = b'{"v": 1, "health": 2, "threat": true, "note": null}'
    assert CheckInAnswers.from_bytes(old).threat is True
    request = HelpRequest.from_bytes(b'{"v": 1, "category": "danger", "urgency": "now"}')
    assert request.urgent and not request.duress
