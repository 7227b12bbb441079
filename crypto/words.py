"""A member's clear word and safety word at rest: Argon2id, salted per member, keyed by the
pepper.

digest = Argon2id(password = BLAKE2b_pepper(normalised word), salt = BLAKE2b(person id))

- A copy of the database alone cannot test a single guess: the prehash needs the pepper,
  which lives apart from the data directory (crypto.keystore).
- With the pepper as well, every guess against one member costs one Argon2id derivation at
  ``WORD_COST`` (memory-hard: a GPU gains little), and says nothing about any other member,
  since each member's salt is their own random row id.
- The bot pays the same once per short one-line message -- the only messages that can be a
  word -- and compares the one digest with both stored ones. Long messages and button
  presses cost nothing.

Unset words are random filler (storage.models.word_filler), never NULL, so a row does not
say whether its member has a word.
"""

from __future__ import annotations

import hmac

import nacl.encoding
import nacl.hash
import nacl.pwhash

from crypto.hashing import Pepper, normalise_word
from crypto.keyfile import KdfCost

DIGEST_SIZE = 32
# 2 passes over 32 MiB: about 50 ms on one core of a small server (bench/words_bench.py).
WORD_COST = KdfCost(opslimit=2, memlimit=32 * 1024 * 1024)
# A word is at most this long (bot.safety), so nothing longer is ever derived.
MAX_WORD_LENGTH = 32
_PREHASH_PERSON = b"sr-word-v2"
_SALT_PERSON = b"sr-word-salt-v2"


def could_be_word(text: str) -> bool:
    """Whether a message is short and single-line enough to be a word: only these are
    ever derived (so ordinary traffic stays cheap)."""
    stripped = text.strip()
    if not stripped or "\n" in stripped or stripped.startswith("/"):
        return False
    return len(normalise_word(stripped)) <= MAX_WORD_LENGTH


def _salt(person_id: str) -> bytes:
    return nacl.hash.blake2b(
        person_id.encode("utf-8"),
        digest_size=nacl.pwhash.argon2id.SALTBYTES,
        person=_SALT_PERSON,
        encoder=nacl.encoding.RawEncoder,
    )


def word_digest(pepper: Pepper, person_id: str, word: str, cost: KdfCost = WORD_COST) -> bytes:
    """What is stored of ``word`` for this member (and what a message is compared with)."""
    prehash = pepper.prehash(normalise_word(word).encode("utf-8"), _PREHASH_PERSON)
    return nacl.pwhash.argon2id.kdf(
        DIGEST_SIZE, prehash, _salt(person_id), opslimit=cost.opslimit, memlimit=cost.memlimit
    )


def same_digest(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a, b)
