"""Where the keys live: the server secrets apart from the data, the team key off the server.

::

    <secrets dir>/                 mode 0700, default ~/.config/saferelay (SAFERELAY_SECRETS_DIR)
        server.json                mode 0600: pepper, server key, team public key, and the
                                   team's signing verify key (pinned into the Mini App pages)
    <team key file>                mode 0600: team private key under the passphrase; written
                                   where the coordinator says at `init`, then moved off the
                                   server. The running bot never needs it.

The secrets live outside the data directory so that a backup or copy of ``data/`` alone
decrypts no chat id and links no hash to a Telegram account. Neither file is ever
overwritten: creating a key where one exists is refused. The one later change to
server.json is adding the team's verify key to an install made before it was kept there
(``saferelay devices trust``, which holds the team key file then); a key already there is
never replaced.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.utils

from crypto.boxes import SERVER_KEY_SIZE, ServerBox, TeamOpener, TeamSealer
from crypto.errors import KeyFileError
from crypto.hashing import PEPPER_SIZE, Pepper
from crypto.keyfile import (
    SENSITIVE,
    KdfCost,
    TeamKeyPair,
    decrypt_team_key,
    encrypt_team_key,
    generate_team_key,
    read_public_key,
    write_private_file,
)
from crypto.signing import TeamSigner

SERVER_FILE = "server.json"
TEAM_KEY_FILE = "saferelay-team.key"
SERVER_FORMAT = "saferelay-server-secrets"


@dataclass(frozen=True)
class ServerSecrets:
    """Everything the running bot holds: it can look up, read its own notes, and seal."""

    pepper: Pepper
    server_box: ServerBox
    team_sealer: TeamSealer
    # The public half of the team's Ed25519 signing key (crypto/signing.py): the anchor of
    # the Mini App's device certificates. None for an install made before it was kept here,
    # until `saferelay devices trust` adds it; until then pages seal to the team key only.
    team_verify_key: bytes | None = None

    def __repr__(self) -> str:
        return "ServerSecrets(<hidden>)"


class SecretsDir:
    """Creates and reads the server secrets; makes the team key file once, at creation."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def server_file(self) -> Path:
        return self.path / SERVER_FILE

    def exists(self) -> bool:
        return self.server_file.exists()

    def create(self, team_key_file: Path, passphrase: str, cost: KdfCost = SENSITIVE) -> None:
        """Make fresh keys. Refuses if either file exists, so no key is ever replaced."""
        for existing in (self.server_file, team_key_file):
            if existing.exists():
                raise KeyFileError(f"{existing} already exists; nothing was overwritten")
        pair = generate_team_key()
        key_file = encrypt_team_key(pair, passphrase, cost)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        server = {
            "format": SERVER_FORMAT,
            "v": 1,
            "pepper": _b64(nacl.utils.random(PEPPER_SIZE)),
            "server_key": _b64(nacl.utils.random(SERVER_KEY_SIZE)),
            "team_public_key": _b64(pair.public_key),
            "team_verify_key": _b64(TeamSigner(pair.private_key).verify_key),
        }
        # The private key first: a crash in between leaves a state `init` can diagnose.
        team_key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(team_key_file, key_file)
        write_private_file(self.server_file, (json.dumps(server, indent=2) + "\n").encode())

    def _document(self) -> dict[str, object]:
        try:
            raw = self.server_file.read_bytes()
        except FileNotFoundError as exc:
            raise KeyFileError(f"no secrets in {self.path}: run `saferelay init` first") from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise KeyFileError(f"{self.server_file} is damaged") from exc
        if not isinstance(document, dict) or document.get("format") != SERVER_FORMAT:
            raise KeyFileError(f"{self.server_file} is not a saferelay secrets file")
        if document.get("v") != 1:
            raise KeyFileError(f"{self.server_file} has a version this program does not know")
        return document

    def load(self) -> ServerSecrets:
        """Read what the running bot needs. Never touches the private key."""
        document = self._document()
        try:
            pepper = _unb64(document["pepper"])
            server_key = _unb64(document["server_key"])
            public_key = _unb64(document["team_public_key"])
            older_raw = document.get("older_server_keys", [])
            older = [_unb64(k) for k in older_raw] if isinstance(older_raw, list) else []
            verify_raw = document.get("team_verify_key")
            verify_key = _unb64(verify_raw) if verify_raw is not None else None
            if verify_key is not None and len(verify_key) != 32:
                raise ValueError("a verify key is 32 bytes")
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{self.server_file} is damaged") from exc
        return ServerSecrets(
            pepper=Pepper(pepper),
            server_box=ServerBox(server_key, older),
            team_sealer=TeamSealer(public_key),
            team_verify_key=verify_key,
        )

    def check_team_public_key(self, team_key_file: Path) -> None:
        """The public key in server.json must be the team key file's public half."""
        on_file = read_public_key(team_key_file.read_bytes())
        if _unb64(self._document()["team_public_key"]) != on_file:
            raise KeyFileError(f"{self.server_file} and {team_key_file} do not belong together")

    def add_team_verify_key(self, signer: TeamSigner) -> bool:
        """Keep the team's verify key in server.json, for an install made before it was kept
        there. ``signer`` must come from this install's team key file (checked by the
        caller with :meth:`check_team_public_key`). Returns whether anything was written; a
        different key already there is refused, never replaced."""
        document = self._document()
        present = document.get("team_verify_key")
        if present is not None:
            if _unb64(present) != signer.verify_key:
                raise KeyFileError(f"{self.server_file} holds another team verify key")
            return False
        document["team_verify_key"] = _b64(signer.verify_key)
        partial = self.server_file.with_name(self.server_file.name + ".partial")
        partial.unlink(missing_ok=True)
        write_private_file(partial, (json.dumps(document, indent=2) + "\n").encode())
        os.replace(partial, self.server_file)
        return True


def _unlock(team_key_file: Path, passphrase: str) -> TeamKeyPair:
    try:
        data = team_key_file.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"no team key file at {team_key_file}: give its place with --key"
        ) from exc
    return decrypt_team_key(data, passphrase)


def unlock_team_key(team_key_file: Path, passphrase: str) -> TeamOpener:
    """Open the team private key (for reports and reading history)."""
    return TeamOpener([_unlock(team_key_file, passphrase).private_key])


def unlock_team_signer(team_key_file: Path, passphrase: str) -> TeamSigner:
    """The team's signing key (for the audit anchor), from the team key file."""
    return TeamSigner(_unlock(team_key_file, passphrase).private_key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    return base64.b64decode(value, validate=True)
