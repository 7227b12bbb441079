"""The team private key at rest: encrypted under a passphrase with Argon2id.

File format (JSON, so a coordinator can see what it is)::

    {"format": "saferelay-team-key", "v": 1, "kdf": "argon2id",
     "opslimit": ..., "memlimit": ..., "salt": "<b64>",
     "public_key": "<b64>", "box": "<b64 SecretBox of the private key>"}

The KDF limits are stored in the file, so a key made at one cost opens at the same cost even
if the defaults change later. New files use Argon2id at libsodium's SENSITIVE level (1 GiB,
a few seconds): the file is opened rarely, by a coordinator, and may be stolen. Limits read
from a file are bounded, so a tampered file cannot make the program allocate gigabytes or
spin for hours before failing.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.utils

from crypto.errors import KeyFileError, WrongPassphrase

FORMAT = "saferelay-team-key"
FORMAT_VERSION = 1
MIN_PASSPHRASE_LENGTH = 12
MIN_PASSPHRASE_SCORE = 3  # zxcvbn: 3 = "safely unguessable: moderate protection offline"
MAX_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE * 4
MAX_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE


@dataclass(frozen=True)
class KdfCost:
    """Argon2id cost. New team key files use SENSITIVE (1 GiB, a few seconds)."""

    opslimit: int
    memlimit: int

    def within_bounds(self) -> bool:
        return (
            nacl.pwhash.argon2id.OPSLIMIT_MIN <= self.opslimit <= MAX_OPSLIMIT
            and nacl.pwhash.argon2id.MEMLIMIT_MIN <= self.memlimit <= MAX_MEMLIMIT
        )


MODERATE = KdfCost(nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
SENSITIVE = KdfCost(
    nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
)


@dataclass(frozen=True)
class TeamKeyPair:
    public_key: bytes
    private_key: bytes

    def __repr__(self) -> str:
        return "TeamKeyPair(public_key=..., private_key=<hidden>)"


def generate_team_key() -> TeamKeyPair:
    private = nacl.public.PrivateKey.generate()
    return TeamKeyPair(public_key=bytes(private.public_key), private_key=bytes(private))


def check_passphrase(passphrase: str) -> None:
    """Refuse passphrases that would not resist guessing against a stolen key file.

    Length first (a clear rule), then zxcvbn's estimate, which catches long but guessable
    choices ("password1234", the organisation's name repeated). The reason goes back to the
    coordinator, with zxcvbn's own suggestion when it has one.
    """
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise KeyFileError(
            f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters long "
            "(a few unrelated words work well)"
        )
    from zxcvbn import zxcvbn

    # zxcvbn only looks at the first 100 characters; that is plenty to judge.
    verdict = zxcvbn(passphrase[:100], user_inputs=["saferelay", "telegram", "team"])
    if verdict["score"] < MIN_PASSPHRASE_SCORE:
        feedback = verdict.get("feedback", {})
        hint = feedback.get("warning") or " ".join(feedback.get("suggestions", []))
        reason = f": {hint.rstrip('.')}" if hint else ""
        raise KeyFileError(
            f"that passphrase is too easy to guess{reason}. Try four or five unrelated words"
        )


def _derive(passphrase: str, salt: bytes, cost: KdfCost) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode("utf-8"),
        salt,
        opslimit=cost.opslimit,
        memlimit=cost.memlimit,
    )


def encrypt_team_key(pair: TeamKeyPair, passphrase: str, cost: KdfCost = SENSITIVE) -> bytes:
    """The bytes of a key file holding ``pair`` under ``passphrase``."""
    check_passphrase(passphrase)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, cost))
    document = {
        "format": FORMAT,
        "v": FORMAT_VERSION,
        "kdf": "argon2id",
        "opslimit": cost.opslimit,
        "memlimit": cost.memlimit,
        "salt": base64.b64encode(salt).decode("ascii"),
        "public_key": base64.b64encode(pair.public_key).decode("ascii"),
        "box": base64.b64encode(bytes(box.encrypt(pair.private_key))).decode("ascii"),
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _load(data: bytes) -> dict[str, object]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError("the team key file is not valid JSON") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyFileError("this is not a saferelay team key file")
    if document.get("v") != FORMAT_VERSION or document.get("kdf") != "argon2id":
        raise KeyFileError("this team key file has a version this program does not know")
    return document


def _b64(document: dict[str, object], field: str) -> bytes:
    value = document.get(field)
    if not isinstance(value, str):
        raise KeyFileError(f"the team key file has no {field}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise KeyFileError(f"the team key file has a damaged {field}") from exc


def read_public_key(data: bytes) -> bytes:
    """The public half, readable without the passphrase."""
    return _b64(_load(data), "public_key")


def decrypt_team_key(data: bytes, passphrase: str) -> TeamKeyPair:
    """Unlock a key file. Raises :class:`WrongPassphrase` if the passphrase is not right."""
    document = _load(data)
    opslimit, memlimit = document.get("opslimit"), document.get("memlimit")
    if not isinstance(opslimit, int) or not isinstance(memlimit, int):
        raise KeyFileError("the team key file has no KDF cost")
    cost = KdfCost(opslimit, memlimit)
    if not cost.within_bounds():
        raise KeyFileError("the team key file asks for an unreasonable KDF cost (tampered?)")
    salt = _b64(document, "salt")
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise KeyFileError("the team key file has a damaged salt")
    key = _derive(passphrase, salt, cost)
    try:
        private_key = nacl.secret.SecretBox(key).decrypt(_b64(document, "box"))
    except nacl.exceptions.CryptoError as exc:
        raise WrongPassphrase("that passphrase does not unlock the team key") from exc
    public_key = _b64(document, "public_key")
    if bytes(nacl.public.PrivateKey(private_key).public_key) != public_key:
        raise KeyFileError("the team key file's halves do not match")
    return TeamKeyPair(public_key=public_key, private_key=private_key)


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600, refusing to overwrite anything already there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
