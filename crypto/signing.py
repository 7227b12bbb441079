"""Statements signed with a key only the team key file's holders have.

The signing key is an Ed25519 key derived from the team private key (BLAKE2b with its own
personalisation, so it is independent of the X25519 key it comes from): it exists only
where the passphrase unlocked the team key file, never on the running bot. The audit anchor
(bot/audit.py) is checked with the team key itself; the Mini App's device certificates
(crypto/devices.py) are checked by the pages and the bot with the public verify key, which
the server keeps with its secrets (crypto/keystore.py) and pins into the pages.
"""

from __future__ import annotations

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.signing

from crypto.errors import BadSignature, InvalidKey

_PERSON_SIGNING = b"sr-team-sign-v1"


class TeamSigner:
    """Signs and checks statements with the Ed25519 key derived from the team private key."""

    __slots__ = ("_signing_key",)

    def __init__(self, team_private_key: bytes) -> None:
        if (
            not isinstance(team_private_key, bytes)
            or len(team_private_key) != nacl.public.PrivateKey.SIZE
        ):
            raise InvalidKey("a team private key must be 32 bytes")
        seed = nacl.hash.blake2b(
            team_private_key,
            digest_size=nacl.bindings.crypto_sign_SEEDBYTES,
            person=_PERSON_SIGNING,
            encoder=nacl.encoding.RawEncoder,
        )
        self._signing_key = nacl.signing.SigningKey(seed)

    def __repr__(self) -> str:
        return "TeamSigner(<hidden>)"

    @property
    def verify_key(self) -> bytes:
        """The public half: pinned into the Mini App's pages (device certificates)."""
        return bytes(self._signing_key.verify_key)

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        """For :meth:`crypto.devices.DeviceCert.sign` (``saferelay devices trust``)."""
        return self._signing_key

    def sign(self, statement: bytes) -> bytes:
        """``statement`` with its signature in front (PyNaCl's signed message)."""
        return bytes(self._signing_key.sign(statement))

    def open(self, signed: bytes) -> bytes:
        """The statement inside ``signed``; :class:`BadSignature` unless this key signed it
        and nothing was changed since."""
        try:
            return bytes(self._signing_key.verify_key.verify(signed))
        except (nacl.exceptions.BadSignatureError, ValueError) as exc:
            raise BadSignature("the signature does not match (another key, or changed)") from exc
