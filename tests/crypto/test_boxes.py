"""Envelopes: round trips, binding to the place, tampering, key rotation."""

from __future__ import annotations

import string

import nacl.utils
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.boxes import HEADER_SIZE, NONCE_SIZE, RecordPlace, ServerBox, TeamOpener, TeamSealer
from crypto.errors import InvalidKey, RecordOpenError
from crypto.keyfile import generate_team_key

PLACE = RecordPlace("checkins", "sealed", "row-1")
_part = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=30)
places = st.builds(RecordPlace, _part, _part, _part)


@pytest.fixture(scope="module")
def team() -> tuple[TeamSealer, TeamOpener]:
    pair = generate_team_key()
    return TeamSealer(pair.public_key), TeamOpener([pair.private_key])


SERVER = ServerBox(nacl.utils.random(32))


@given(plaintext=st.binary(max_size=4096), place=places)
def test_server_box_round_trip(plaintext: bytes, place: RecordPlace) -> None:
    assert SERVER.open(SERVER.seal(plaintext, place), place) == plaintext


@given(value=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_server_box_round_trips_chat_ids(value: int) -> None:
    assert SERVER.open_int(SERVER.seal_int(value, PLACE), PLACE) == value


@given(plaintext=st.binary(max_size=4096), place=places)
def test_team_seal_round_trip(
    team: tuple[TeamSealer, TeamOpener], plaintext: bytes, place: RecordPlace
) -> None:
    sealer, opener = team
    assert opener.open(sealer.seal(plaintext, place), place) == plaintext


def test_same_plaintext_seals_differently_each_time(team: tuple[TeamSealer, TeamOpener]) -> None:
    sealer, _ = team
    assert sealer.seal(b"same", PLACE) != sealer.seal(b"same", PLACE)
    assert SERVER.seal(b"same", PLACE) != SERVER.seal(b"same", PLACE)


@pytest.mark.parametrize(
    "other",
    [
        RecordPlace("checkins", "sealed", "row-2"),
        RecordPlace("checkins", "note", "row-1"),
        RecordPlace("cases", "sealed", "row-1"),
    ],
)
def test_envelope_moved_to_another_place_does_not_open(
    team: tuple[TeamSealer, TeamOpener], other: RecordPlace
) -> None:
    sealer, opener = team
    with pytest.raises(RecordOpenError):
        opener.open(sealer.seal(b"answer", PLACE), other)
    with pytest.raises(RecordOpenError):
        SERVER.open(SERVER.seal(b"12345", PLACE), other)


@given(data=st.data())
def test_flipping_any_byte_fails(team: tuple[TeamSealer, TeamOpener], data: st.DataObject) -> None:
    sealer, opener = team
    for envelope, open_ in (
        (sealer.seal(b"a private note", PLACE), opener.open),
        (SERVER.seal(b"a private note", PLACE), SERVER.open),
    ):
        index = data.draw(st.integers(0, len(envelope) - 1))
        bit = data.draw(st.integers(0, 7))
        tampered = bytearray(envelope)
        tampered[index] ^= 1 << bit
        with pytest.raises(RecordOpenError):
            open_(bytes(tampered), PLACE)


def test_truncated_and_foreign_envelopes_fail(team: tuple[TeamSealer, TeamOpener]) -> None:
    sealer, opener = team
    envelope = sealer.seal(b"x", PLACE)
    for bad in (
        b"",
        envelope[:HEADER_SIZE],
        envelope[: HEADER_SIZE + NONCE_SIZE],
        b"\x09" + envelope[1:],  # a version this program does not know
        b"\x01" + envelope[1:],  # a padded envelope relabelled as unpadded
    ):
        with pytest.raises(RecordOpenError):
            opener.open(bad, PLACE)
    with pytest.raises(RecordOpenError):  # a server envelope is not a team envelope
        opener.open(SERVER.seal(b"x", PLACE), PLACE)


def test_other_team_key_cannot_open(team: tuple[TeamSealer, TeamOpener]) -> None:
    sealer, _ = team
    stranger = TeamOpener([generate_team_key().private_key])
    with pytest.raises(RecordOpenError):
        stranger.open(sealer.seal(b"x", PLACE), PLACE)


def test_rotated_server_key_still_opens_old_records() -> None:
    old_key, new_key = nacl.utils.random(32), nacl.utils.random(32)
    old_envelope = ServerBox(old_key).seal(b"chat", PLACE)
    rotated = ServerBox(new_key, older_keys=[old_key])
    assert rotated.open(old_envelope, PLACE) == b"chat"
    assert ServerBox(new_key).open(rotated.seal(b"chat", PLACE), PLACE) == b"chat"
    with pytest.raises(RecordOpenError):
        ServerBox(new_key).open(old_envelope, PLACE)


def test_rotated_team_key_opens_old_and_new() -> None:
    old, new = generate_team_key(), generate_team_key()
    opener = TeamOpener([new.private_key, old.private_key])
    assert opener.open(TeamSealer(old.public_key).seal(b"old", PLACE), PLACE) == b"old"
    assert opener.open(TeamSealer(new.public_key).seal(b"new", PLACE), PLACE) == b"new"


def test_keys_of_wrong_length_are_refused() -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(InvalidKey):
            ServerBox(bad)
        with pytest.raises(InvalidKey):
            TeamSealer(bad)
        with pytest.raises(InvalidKey):
            TeamOpener([bad])


def test_reprs_hide_keys() -> None:
    key = nacl.utils.random(32)
    assert key.hex() not in repr(ServerBox(key))
    assert "hidden" in repr(TeamOpener([generate_team_key().private_key]))


@pytest.mark.parametrize("bad", ["", "a|b", "\u00e9", "\ud800", "tab\t"])
def test_malformed_places_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        SERVER.seal(b"x", RecordPlace("t", "c", bad))
