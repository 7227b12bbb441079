"""Keyed BLAKE2b lookups: find a person by Telegram user id without ever storing the id."""

from __future__ import annotations

from collections.abc import Sequence

import nacl.encoding
import nacl.hash

from crypto.errors import InvalidKey

PEPPER_SIZE = 32
LOOKUP_SIZE = 32

# Domain separation: the same pepper keys several kinds of lookup, and a digest of one kind
# must never match a digest of another.
_PERSON_USER = b"sr-tg-user-v1"
_PERSON_INVITE = b"sr-invite-v1"
_PERSON_NAME = b"sr-staff-name-v1"
_PERSON_LABEL = b"sr-label-v1"
_PERSON_WEBHOOK = b"sr-webhook-v1"


class Pepper:
    """The secret key of every lookup hash. Without it a copied database cannot be searched
    for a known Telegram id: the digests are not a function of the id alone."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != PEPPER_SIZE:
            raise InvalidKey(f"the pepper must be exactly {PEPPER_SIZE} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pepper(<hidden>)"

    def _digest(self, data: bytes, person: bytes) -> bytes:
        return nacl.hash.blake2b(
            data,
            digest_size=LOOKUP_SIZE,
            key=self._key,
            person=person,
            encoder=nacl.encoding.RawEncoder,
        )

    def user_lookup(self, telegram_user_id: int) -> bytes:
        """The lookup key stored in place of a Telegram user id."""
        return self._digest(str(int(telegram_user_id)).encode("ascii"), _PERSON_USER)

    def invite_lookup(self, token: str) -> bytes:
        """What is stored of an invite token, so a copied database holds no usable invite."""
        return self._digest(token.encode("utf-8"), _PERSON_INVITE)

    def name_lookup(self, name: str) -> bytes:
        """What makes staff display names unique and findable without opening each one:
        keyed, over the name with case and spacing ignored."""
        return self._digest(normalise_word(name).encode("utf-8"), _PERSON_NAME)

    def label_lookup(self, label: str) -> bytes:
        """What finds the members of a group label ("north", "Seoul") without the label in
        the clear: labels can name places. Case and spacing ignored."""
        return self._digest(normalise_word(label).encode("utf-8"), _PERSON_LABEL)

    def webhook_secret(self) -> str:
        """The ``secret_token`` Telegram sends with every webhook update: derived, so it is
        the same after every restart and there is nothing more to configure or leak; 64
        hex characters (Telegram allows 1-256 of ``A-Za-z0-9_-``)."""
        return self._digest(b"telegram webhook", _PERSON_WEBHOOK).hex()

    def prehash(self, data: bytes, person: bytes) -> bytes:
        """A keyed digest of ``data`` under a caller's domain (``person``, at most 16
        bytes): lets another hash (crypto.words) depend on the pepper too."""
        return self._digest(data, person)


def normalise_word(word: str) -> str:
    """How words and names are compared: case and spacing do not matter."""
    return " ".join(word.split()).casefold()


def token_digest(pepper: Pepper, token: str) -> bytes:
    """Shorthand for :meth:`Pepper.invite_lookup`."""
    return pepper.invite_lookup(token)


CHAIN_LINK_SIZE = 32
_PERSON_CHAIN = b"sr-audit-v1"


def chain_link(fields: Sequence[str], previous: bytes) -> bytes:
    """The hash of one entry of a hash chain (the audit trail): its fields, each prefixed
    with its length so no two different rows encode alike, then the previous link.

    Unkeyed on purpose: anyone may recompute and check it, and a key the bot holds would
    stop no one who can write the database (the signed anchor, crypto.signing, does)."""
    if len(previous) != CHAIN_LINK_SIZE:
        raise ValueError(f"a chain link is {CHAIN_LINK_SIZE} bytes")
    encoded = b"".join(
        len(raw).to_bytes(4, "big") + raw for raw in (field.encode("utf-8") for field in fields)
    )
    return nacl.hash.blake2b(
        encoded + previous,
        digest_size=CHAIN_LINK_SIZE,
        person=_PERSON_CHAIN,
        encoder=nacl.encoding.RawEncoder,
    )
