"""Multi-recipient envelopes (ALG_MULTI): the Mini App's format, made here or on a phone."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.boxes import (
    MAX_RECIPIENTS,
    DeviceOpener,
    Recipient,
    RecordPlace,
    TeamOpener,
    TeamSealer,
    multi_envelope_size,
    seal_multi,
)
from crypto.devices import fingerprint
from crypto.errors import InvalidKey, RecordOpenError

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())
PLACE = RecordPlace("webapp_records", "sealed", "row-1")
TEAM = nacl.public.PrivateKey.generate()
DEVICE = nacl.public.PrivateKey.generate()


def _seal(plaintext: bytes, place: RecordPlace = PLACE) -> bytes:
    return seal_multi(
        plaintext, place, Recipient(bytes(TEAM.public_key)), [Recipient(bytes(DEVICE.public_key))]
    )


def test_multi_envelope_known_answer() -> None:
    v = VECTORS["multi_envelope"]
    place = RecordPlace(*VECTORS["place"])
    envelope = bytes.fromhex(v["envelope"])
    team = TeamOpener([bytes.fromhex(VECTORS["team_private_key"])])
    device = DeviceOpener(bytes.fromhex(VECTORS["device_private_key"]))
    assert team.open(envelope, place).decode() == v["plaintext"]
    assert device.open(envelope, place).decode() == v["plaintext"]


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=2047))
def test_round_trip_for_team_and_device_with_one_length(plaintext: bytes) -> None:
    envelope = _seal(plaintext)
    assert TeamOpener([bytes(TEAM)]).open(envelope, PLACE) == plaintext
    assert DeviceOpener(bytes(DEVICE)).open(envelope, PLACE) == plaintext
    assert len(envelope) == multi_envelope_size(2, 0)


def test_a_key_not_sealed_to_opens_nothing() -> None:
    envelope = _seal(b"hello")
    with pytest.raises(RecordOpenError):
        DeviceOpener(bytes(nacl.public.PrivateKey.generate())).open(envelope, PLACE)


def test_every_flipped_byte_is_refused() -> None:
    envelope = _seal(b"threat: yes")
    # header, recipient count, each wrap's key id and sealed key, nonce, ciphertext, tag
    for at in (0, 1, 5, 10, 11, 20, 60, 100, 150, 190, 200, len(envelope) // 2, len(envelope) - 1):
        tampered = envelope[:at] + bytes([envelope[at] ^ 1]) + envelope[at + 1 :]
        with pytest.raises(RecordOpenError):
            TeamOpener([bytes(TEAM)]).open(tampered, PLACE)


def test_a_dropped_recipient_breaks_the_record() -> None:
    envelope = _seal(b"x")
    # Cut the device's wrap out and fix the count: the associated data no longer matches.
    wrap = 88
    cut = envelope[:10] + b"\x01" + envelope[11 : 11 + wrap] + envelope[11 + 2 * wrap :]
    with pytest.raises(RecordOpenError):
        TeamOpener([bytes(TEAM)]).open(cut, PLACE)


def test_bound_to_its_place() -> None:
    envelope = _seal(b"x")
    for other in (
        RecordPlace("webapp_records", "sealed", "row-2"),
        RecordPlace("webapp_records", "other", "row-1"),
        RecordPlace("check_ins", "sealed", "row-1"),
    ):
        with pytest.raises(RecordOpenError):
            TeamOpener([bytes(TEAM)]).open(envelope, other)


def test_team_records_still_open_beside_multi_ones() -> None:
    team_envelope = TeamSealer(bytes(TEAM.public_key)).seal(b"old", PLACE)
    assert TeamOpener([bytes(TEAM)]).open(team_envelope, PLACE) == b"old"
    with pytest.raises(RecordOpenError):
        DeviceOpener(bytes(DEVICE)).open(team_envelope, PLACE)


def test_limits() -> None:
    team = Recipient(bytes(TEAM.public_key))
    with pytest.raises(ValueError):
        seal_multi(b"x", PLACE, team, [team] * MAX_RECIPIENTS)
    with pytest.raises(InvalidKey):
        Recipient(b"short")
    # Eight recipients still fit Telegram's sendData limit once base64-encoded.
    assert (multi_envelope_size(MAX_RECIPIENTS, 2047) + 2) // 3 * 4 < 4096


def test_fingerprint_is_short_and_stable() -> None:
    assert fingerprint(bytes(range(32))) == "ED11-709A-F148"
    with pytest.raises(InvalidKey):
        fingerprint(b"\x00" * 31)
