"""The team key at rest and the secrets directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from crypto.boxes import RecordPlace
from crypto.errors import KeyFileError, WrongPassphrase
from crypto.keyfile import MODERATE, decrypt_team_key, encrypt_team_key, generate_team_key
from crypto.keystore import SecretsDir
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


def test_the_cost_is_stored_in_the_file_and_production_uses_moderate() -> None:
    data = json.loads(encrypt_team_key(generate_team_key(), PASSPHRASE, FAST_KDF))
    assert (data["opslimit"], data["memlimit"]) == (FAST_KDF.opslimit, FAST_KDF.memlimit)
    assert MODERATE.memlimit == 256 * 1024 * 1024 and MODERATE.opslimit == 3


@pytest.mark.parametrize(
    "bad", [b"", b"not json", b"{}", b'{"format": "saferelay-team-key", "v": 9}']
)
def test_damaged_key_files_fail_clearly(bad: bytes) -> None:
    with pytest.raises(KeyFileError):
        decrypt_team_key(bad, PASSPHRASE)


def test_short_passphrase_refused() -> None:
    with pytest.raises(KeyFileError, match="at least 8"):
        encrypt_team_key(generate_team_key(), "short", FAST_KDF)


def test_secrets_dir_is_private_and_never_overwritten(tmp_path: Path) -> None:
    secrets = SecretsDir(tmp_path / "secrets")
    secrets.create(PASSPHRASE, FAST_KDF)
    before = (secrets.server_file.read_bytes(), secrets.team_key_file.read_bytes())
    assert stat.S_IMODE(secrets.path.stat().st_mode) == 0o700
    for file in (secrets.server_file, secrets.team_key_file):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="nothing was overwritten"):
        secrets.create(PASSPHRASE, FAST_KDF)
    assert (secrets.server_file.read_bytes(), secrets.team_key_file.read_bytes()) == before


def test_what_the_bot_seals_only_the_passphrase_opens(tmp_path: Path) -> None:
    secrets = SecretsDir(tmp_path / "secrets")
    secrets.create(PASSPHRASE, FAST_KDF)
    place = RecordPlace("checkins", "sealed", "r1")
    envelope = secrets.load().team_sealer.seal(b"note", place)
    assert secrets.unlock(PASSPHRASE).open(envelope, place) == b"note"
    with pytest.raises(WrongPassphrase):
        secrets.unlock("not the passphrase")
