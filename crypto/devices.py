"""Device keys of the Mini App: the short fingerprint two people compare before approval.

A device (a caseworker's or a member's phone) makes its own X25519 key pair in the page and
registers only the public half. Before an admin approves it, the admin compares the
fingerprint shown on the device (computed there, by ``webapp/static/js/envelope.mjs``) with
the one the admin's chat shows (computed here). 48 bits: finding a second key with the same
fingerprint takes about 2**48 key generations, far beyond a server trying to slip in its own
reader between registration and approval; a shorter one could be matched in hours.
"""

from __future__ import annotations

import nacl.encoding
import nacl.hash

from crypto.errors import InvalidKey

PUBLIC_KEY_SIZE = 32
FINGERPRINT_BYTES = 6
_PREFIX = b"saferelay-device-fingerprint-v1|"


def fingerprint(public_key: bytes) -> str:
    """``ABCD-EF12-3456``: the same on the phone that holds the key and in the admin's chat."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"a device public key must be {PUBLIC_KEY_SIZE} bytes")
    digest = nacl.hash.blake2b(
        _PREFIX + public_key, digest_size=FINGERPRINT_BYTES, encoder=nacl.encoding.RawEncoder
    )
    text = digest.hex().upper()
    return f"{text[0:4]}-{text[4:8]}-{text[8:12]}"
