"""Cryptography for saferelay, built only on PyNaCl.

- ``hashing``: keyed BLAKE2b of Telegram user ids, so people are found without storing ids.
- ``boxes``: the server box (XChaCha20-Poly1305 under the server key) for what the running
  bot must read back, and team-sealed envelopes that only the team's private key opens.
- ``keyfile``: the team private key at rest, encrypted under a passphrase with Argon2id.
- ``pseudonyms``: random, sayable pseudonyms.

Every ciphertext is a versioned envelope bound to its place (table, column, row) through
associated data, so a ciphertext copied into another row fails to open.
"""

from crypto.boxes import RecordPlace, ServerBox, TeamOpener, TeamSealer
from crypto.errors import (
    CryptoError,
    InvalidKey,
    KeyFileError,
    RecordOpenError,
    WrongPassphrase,
)
from crypto.hashing import Pepper, token_digest

__all__ = [
    "CryptoError",
    "InvalidKey",
    "KeyFileError",
    "Pepper",
    "RecordOpenError",
    "RecordPlace",
    "ServerBox",
    "TeamOpener",
    "TeamSealer",
    "WrongPassphrase",
    "token_digest",
]
