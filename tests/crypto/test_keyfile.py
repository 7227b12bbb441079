"""The team key at rest and the secrets directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from crypto.boxes import RecordPlace
from crypto.errors import KeyFileError, WrongPassphrase
from crypto.keyfile import (
    SENSITIVE,
    check_passphrase,
    decrypt_team_key,
    encrypt_team_key,
    generate_team_key,
)
from crypto.keystore import SecretsDir, unlock_team_key
from tests.conftest import FAST_KDF

PASSPHRASE = "a long team passphrase"


def test_key_file_round_trip() -> None:
    pair = generate_team_key()
    data = encrypt_team_key(pair, PASSPHRASE, FAST_KDF)
    assert decrypt_team_key(data, PASSPHRASE) == pair
    assert pair.private_key.hex() not in data.decode()


def test_wrong_passphrase_is_named_as_such() -> None:
    data = encrypt_team_key(generate_team_key(), PASSPHRASE, FAST_KDF)
    with pytest.raises(WrongPassphrase, match="passphrase does not unlock"):
        decrypt_team_key(data, PASSPHRASE + "!")


def test_the_cost_is_stored_in_the_file_and_production_uses_sensitive() -> None:
    data = json.loads(encrypt_team_key(generate_team_key(), PASSPHRASE, FAST_KDF))
    assert (data["opslimit"], data["memlimit"]) == (FAST_KDF.opslimit, FAST_KDF.memlimit)
    assert SENSITIVE.memlimit == 1024 * 1024 * 1024 and SENSITIVE.opslimit == 4


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [(4, 2**40), (2**31, FAST_KDF.memlimit), (0, FAST_KDF.memlimit), (1, 1)],
)
def test_a_tampered_cost_is_refused_before_any_work(opslimit: int, memlimit: int) -> None:
    document = json.loads(encrypt_team_key(generate_team_key(), PASSPHRASE, FAST_KDF))
    document |= {"opslimit": opslimit, "memlimit": memlimit}
    with pytest.raises(KeyFileError, match="unreasonable KDF cost"):
        decrypt_team_key(json.dumps(document).encode(), PASSPHRASE)


@pytest.mark.parametrize(
    "bad", [b"", b"not json", b"{}", b'{"format": "saferelay-team-key", "v": 9}']
)
def test_damaged_key_files_fail_clearly(bad: bytes) -> None:
    with pytest.raises(KeyFileError):
        decrypt_team_key(bad, PASSPHRASE)


def test_short_passphrase_refused() -> None:
    with pytest.raises(KeyFileError, match="at least 12"):
        encrypt_team_key(generate_team_key(), "short", FAST_KDF)


@pytest.mark.parametrize(
    "weak", ["password1234", "saferelaysaferelay", "qwertyuiop123", "aaaaaaaaaaaaaaaa"]
)
def test_long_but_guessable_passphrases_are_refused_with_a_reason(weak: str) -> None:
    with pytest.raises(KeyFileError, match=r"too easy to guess: .+") as caught:
        check_passphrase(weak)
    assert "unrelated words" in str(caught.value)


def test_a_few_unrelated_words_pass() -> None:
    check_passphrase("violet tram under seven kettles")


def test_secrets_dir_is_private_and_never_overwritten(tmp_path: Path) -> None:
    secrets = SecretsDir(tmp_path / "secrets")
    team_key = tmp_path / "usb" / "team.key"
    secrets.create(team_key, PASSPHRASE, FAST_KDF)
    before = (secrets.server_file.read_bytes(), team_key.read_bytes())
    assert stat.S_IMODE(secrets.path.stat().st_mode) == 0o700
    for file in (secrets.server_file, team_key):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="nothing was overwritten"):
        secrets.create(team_key, PASSPHRASE, FAST_KDF)
    with pytest.raises(KeyFileError, match="nothing was overwritten"):
        SecretsDir(tmp_path / "other").create(team_key, PASSPHRASE, FAST_KDF)
    assert (secrets.server_file.read_bytes(), team_key.read_bytes()) == before
    assert list(secrets.path.iterdir()) == [secrets.server_file]


def test_what_the_bot_seals_only_the_passphrase_opens(tmp_path: Path) -> None:
    secrets = SecretsDir(tmp_path / "secrets")
    team_key = tmp_path / "team.key"
    secrets.create(team_key, PASSPHRASE, FAST_KDF)
    place = RecordPlace("checkins", "sealed", "r1")
    envelope = secrets.load().team_sealer.seal(b"note", place)
    assert unlock_team_key(team_key, PASSPHRASE).open(envelope, place) == b"note"
    with pytest.raises(WrongPassphrase):
        unlock_team_key(team_key, "not the passphrase")
