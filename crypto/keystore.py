"""The secrets directory: what the running bot needs, and the team key it must not hold.

::

    <data dir>/secrets/            mode 0700
        server.json                mode 0600: pepper, server key, team public key
        team.key                   mode 0600: team private key under the passphrase

Neither file is ever overwritten: creating a key where one exists is refused.
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
    MODERATE,
    KdfCost,
    decrypt_team_key,
    encrypt_team_key,
    generate_team_key,
    read_public_key,
    write_private_file,
)

SERVER_FILE = "server.json"
TEAM_KEY_FILE = "team.key"
SERVER_FORMAT = "saferelay-server-secrets"


@dataclass(frozen=True)
class ServerSecrets:
    """Everything the running bot holds: it can look up, read its own notes, and seal."""

    pepper: Pepper
    server_box: ServerBox
    team_sealer: TeamSealer

    def __repr__(self) -> str:
        return "ServerSecrets(<hidden>)"


class SecretsDir:
    """Creates and reads the secrets directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def server_file(self) -> Path:
        return self.path / SERVER_FILE

    @property
    def team_key_file(self) -> Path:
        return self.path / TEAM_KEY_FILE

    def exists(self) -> bool:
        return self.server_file.exists() and self.team_key_file.exists()

    def create(self, passphrase: str, cost: KdfCost = MODERATE) -> None:
        """Make fresh keys. Refuses if either file exists, so no key is ever replaced."""
        if self.server_file.exists() or self.team_key_file.exists():
            raise KeyFileError(f"keys already exist in {self.path}; nothing was overwritten")
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        pair = generate_team_key()
        key_file = encrypt_team_key(pair, passphrase, cost)
        server = {
            "format": SERVER_FORMAT,
            "v": 1,
            "pepper": _b64(nacl.utils.random(PEPPER_SIZE)),
            "server_key": _b64(nacl.utils.random(SERVER_KEY_SIZE)),
            "team_public_key": _b64(pair.public_key),
        }
        # The private key first: a crash in between leaves a state `init` can diagnose.
        write_private_file(self.team_key_file, key_file)
        write_private_file(self.server_file, (json.dumps(server, indent=2) + "\n").encode())

    def load(self) -> ServerSecrets:
        """Read what the running bot needs. Never touches the private key."""
        try:
            raw = self.server_file.read_bytes()
        except FileNotFoundError as exc:
            raise KeyFileError(f"no secrets in {self.path}: run `saferelay init` first") from exc
        try:
            document = json.loads(raw)
            if document.get("format") != SERVER_FORMAT or document.get("v") != 1:
                raise KeyFileError(f"{self.server_file} is not a saferelay secrets file")
            pepper = base64.b64decode(document["pepper"], validate=True)
            server_key = base64.b64decode(document["server_key"], validate=True)
            public_key = base64.b64decode(document["team_public_key"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFileError(f"{self.server_file} is damaged") from exc
        older = [base64.b64decode(k, validate=True) for k in document.get("older_server_keys", [])]
        return ServerSecrets(
            pepper=Pepper(pepper),
            server_box=ServerBox(server_key, older),
            team_sealer=TeamSealer(public_key),
        )

    def check_team_public_key(self) -> None:
        """The public key in server.json must be the team key file's public half."""
        on_file = read_public_key(self.team_key_file.read_bytes())
        document = json.loads(self.server_file.read_bytes())
        if base64.b64decode(document["team_public_key"]) != on_file:
            raise KeyFileError("server.json and team.key do not belong together")

    def unlock(self, passphrase: str) -> TeamOpener:
        """Open the team private key (for reports and reading history)."""
        try:
            data = self.team_key_file.read_bytes()
        except FileNotFoundError as exc:
            raise KeyFileError(f"no team key file at {self.team_key_file}") from exc
        pair = decrypt_team_key(data, passphrase)
        return TeamOpener([pair.private_key])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
