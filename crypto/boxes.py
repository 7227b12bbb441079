"""Versioned envelopes bound to their place.

Layout of every envelope (bytes)::

    version(1) | algorithm(1) | key id(8) | algorithm-specific body

Version 2 (written now) pads every plaintext before encryption to a multiple of
``PAD_BLOCK`` bytes (ISO/IEC 7816-4 padding, libsodium's ``sodium_pad``), so a ciphertext's
length says only which 256-byte bucket its plaintext falls in: "threat: yes" and "no", a
duress case and a normal one, a 9- and a 10-digit chat id all look the same. Version 1
(unpadded) envelopes written before still open; they leave with the rows that hold them.

- ``ALG_SERVER``: body = nonce(24) | XChaCha20-Poly1305 ciphertext under the server key.
  For what the running bot must read back: chat ids, queued outgoing messages.
- ``ALG_TEAM``: body = sealed content key(80) | nonce(24) | XChaCha20-Poly1305 ciphertext.
  A fresh content key per record, sealed (X25519 sealed box) to the team public key. The
  running bot can write these but cannot read them.
- ``ALG_MULTI``: body = count(1) | count x (recipient key id(8) | sealed content key(80)) |
  nonce(24) | XChaCha20-Poly1305 ciphertext. Made on a device (the Mini App, with libsodium's
  JavaScript build) or here: one fresh content key, sealed once per recipient (the team key
  first, then each approved device key of the reader), each wrap tagged with its recipient's
  key id so a reader tries only its own. The header's key id is the team key's. The wraps are
  inside the associated data, so a recipient cannot be added, dropped or swapped without the
  record failing to open. The plaintext is padded to :data:`MULTI_PAD_BLOCK` (2 KiB): a
  Mini App record is written by a person, so every one of them has the same length, whatever
  was chosen or typed (the page refuses a text that does not fit, before sealing).

The associated data is the header plus the record's place (table, column, row id), so an
envelope copied to another row, another column or another table fails to open. PyNaCl's
``SecretBox`` (XSalsa20-Poly1305) takes no associated data, which is why the server box uses
PyNaCl's ``Aead`` (XChaCha20-Poly1305, same key size and nonce size) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.secret
import nacl.utils

from crypto.errors import InvalidKey, RecordOpenError

VERSION = 2
READABLE_VERSIONS = (1, 2)
PAD_BLOCK = 256
ALG_SERVER = 1
ALG_TEAM = 2
ALG_MULTI = 3
MULTI_PAD_BLOCK = 2048
# One team key and a caseworker's devices (or a member's); a bound that keeps a record under
# Telegram's 4,096-byte sendData limit once base64-encoded: 10 + 1 + 8*88 + 24 + 2048 + 16.
MAX_RECIPIENTS = 8

SERVER_KEY_SIZE = nacl.secret.Aead.KEY_SIZE  # 32
CONTENT_KEY_SIZE = nacl.secret.Aead.KEY_SIZE  # 32
NONCE_SIZE = nacl.secret.Aead.NONCE_SIZE  # 24
KEY_ID_SIZE = 8
# crypto_box_seal adds an ephemeral public key (32) and a MAC (16).
SEALED_KEY_SIZE = CONTENT_KEY_SIZE + nacl.public.PublicKey.SIZE + nacl.secret.Aead.MACBYTES
WRAP_SIZE = KEY_ID_SIZE + SEALED_KEY_SIZE
HEADER_SIZE = 2 + KEY_ID_SIZE


@dataclass(frozen=True, slots=True)
class RecordPlace:
    """Where a ciphertext lives. It is authenticated, never stored inside the envelope."""

    table: str
    column: str
    row_id: str

    def associated_data(self) -> bytes:
        for part in (self.table, self.column, self.row_id):
            if not part or not part.isascii() or not part.isprintable() or "|" in part:
                raise ValueError("a record place has non-empty printable ASCII parts, no '|'")
        return f"saferelay|{self.table}|{self.column}|{self.row_id}".encode("ascii")


def key_id(key_material: bytes) -> bytes:
    """A short public identifier of a key, so decryption can pick the right one."""
    return nacl.hash.blake2b(
        key_material,
        digest_size=KEY_ID_SIZE,
        person=b"sr-key-id-v1",
        encoder=nacl.encoding.RawEncoder,
    )


def _header(algorithm: int, kid: bytes) -> bytes:
    return bytes((VERSION, algorithm)) + kid


def pad(plaintext: bytes, block: int = PAD_BLOCK) -> bytes:
    """``plaintext`` padded to the next multiple of ``block`` (always adds a byte)."""
    return bytes(nacl.bindings.sodium_pad(plaintext, block))


def _unpad(version: int, padded: bytes, block: int = PAD_BLOCK) -> bytes:
    if version == 1:
        return padded
    try:
        return bytes(nacl.bindings.sodium_unpad(padded, block))
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise RecordOpenError("the record's padding is damaged") from exc


def envelope_algorithm(envelope: bytes) -> int:
    """The algorithm byte of an envelope (which opener it needs)."""
    if not isinstance(envelope, bytes) or len(envelope) < HEADER_SIZE:
        raise RecordOpenError("not an envelope")
    return envelope[1]


def _split_header(envelope: bytes, *algorithms: int) -> tuple[bytes, bytes, bytes]:
    if not isinstance(envelope, bytes) or len(envelope) < HEADER_SIZE:
        raise RecordOpenError("not an envelope")
    version, alg = envelope[0], envelope[1]
    if version not in READABLE_VERSIONS:
        raise RecordOpenError(f"unknown envelope version {version}")
    if alg not in algorithms:
        raise RecordOpenError(f"unexpected envelope algorithm {alg}")
    return envelope[:HEADER_SIZE], envelope[2:HEADER_SIZE], envelope[HEADER_SIZE:]


class ServerBox:
    """Secret-key envelopes under the server key, with older keys accepted for opening."""

    __slots__ = ("_current", "_keys")

    def __init__(self, key: bytes, older_keys: Iterable[bytes] = ()) -> None:
        keys = [key, *older_keys]
        for k in keys:
            if not isinstance(k, bytes) or len(k) != SERVER_KEY_SIZE:
                raise InvalidKey(f"a server key must be exactly {SERVER_KEY_SIZE} bytes")
        self._keys = [(key_id(k), nacl.secret.Aead(k)) for k in keys]
        self._current = self._keys[0]

    def __repr__(self) -> str:
        return f"ServerBox(<{len(self._keys)} hidden key(s)>)"

    def seal(self, plaintext: bytes, place: RecordPlace) -> bytes:
        """Encrypt ``plaintext`` for ``place`` under the current server key."""
        kid, aead = self._current
        header = _header(ALG_SERVER, kid)
        nonce = nacl.utils.random(NONCE_SIZE)
        sealed = aead.encrypt(pad(plaintext), header + place.associated_data(), nonce)
        return header + bytes(sealed)

    def open(self, envelope: bytes, place: RecordPlace) -> bytes:
        """Decrypt an envelope made by :meth:`seal` for the same ``place``."""
        header, kid, body = _split_header(envelope, ALG_SERVER)
        if len(body) < NONCE_SIZE + nacl.secret.Aead.MACBYTES:
            raise RecordOpenError("envelope too short")
        aad = header + place.associated_data()
        # The matching key first, then the others: a key id can in principle collide.
        for _kid, aead in sorted(self._keys, key=lambda k: k[0] != kid):
            try:
                padded = aead.decrypt(body, aad)
            except nacl.exceptions.CryptoError:
                continue
            return _unpad(envelope[0], padded)
        raise RecordOpenError("the record does not open here (wrong key, place or tampered)")

    def seal_int(self, value: int, place: RecordPlace) -> bytes:
        return self.seal(str(int(value)).encode("ascii"), place)

    def open_int(self, envelope: bytes, place: RecordPlace) -> int:
        return int(self.open(envelope, place).decode("ascii"))


class TeamSealer:
    """Seals records to the team public key. Holds no secret: the bot can write, not read."""

    __slots__ = ("_kid", "_sealed_box", "public_key")

    def __init__(self, public_key: bytes) -> None:
        if not isinstance(public_key, bytes) or len(public_key) != nacl.public.PublicKey.SIZE:
            raise InvalidKey("the team public key must be 32 bytes")
        self.public_key = public_key
        self._kid = key_id(public_key)
        self._sealed_box = nacl.public.SealedBox(nacl.public.PublicKey(public_key))

    def seal(self, plaintext: bytes, place: RecordPlace) -> bytes:
        """Seal ``plaintext`` for ``place`` with a fresh content key."""
        content_key = nacl.utils.random(CONTENT_KEY_SIZE)
        sealed_key = bytes(self._sealed_box.encrypt(content_key))
        header = _header(ALG_TEAM, self._kid)
        nonce = nacl.utils.random(NONCE_SIZE)
        aad = header + sealed_key + place.associated_data()
        body = nacl.secret.Aead(content_key).encrypt(pad(plaintext), aad, nonce)
        return header + sealed_key + bytes(body)


class TeamOpener:
    """Opens team-sealed records. Exists only where the passphrase unlocked the private key."""

    __slots__ = ("_keys",)

    def __init__(self, private_keys: Sequence[bytes]) -> None:
        if not private_keys:
            raise InvalidKey("at least one team private key is needed")
        self._keys: list[tuple[bytes, nacl.public.SealedBox[nacl.public.PrivateKey]]] = []
        for raw in private_keys:
            if not isinstance(raw, bytes) or len(raw) != nacl.public.PrivateKey.SIZE:
                raise InvalidKey("a team private key must be 32 bytes")
            private = nacl.public.PrivateKey(raw)
            self._keys.append((key_id(bytes(private.public_key)), nacl.public.SealedBox(private)))

    def __repr__(self) -> str:
        return f"TeamOpener(<{len(self._keys)} hidden key(s)>)"

    def open(self, envelope: bytes, place: RecordPlace) -> bytes:
        """Open an envelope made by :meth:`TeamSealer.seal` or :func:`seal_multi` (on a
        device or here) for the same ``place``: reports read both alike."""
        if envelope_algorithm(envelope) == ALG_MULTI:
            return _open_multi(self._keys, envelope, place)
        header, kid, body = _split_header(envelope, ALG_TEAM)
        if len(body) < SEALED_KEY_SIZE + NONCE_SIZE + nacl.secret.Aead.MACBYTES:
            raise RecordOpenError("envelope too short")
        sealed_key, rest = body[:SEALED_KEY_SIZE], body[SEALED_KEY_SIZE:]
        aad = header + sealed_key + place.associated_data()
        for _kid, box in sorted(self._keys, key=lambda k: k[0] != kid):
            try:
                content_key = box.decrypt(sealed_key)
            except nacl.exceptions.CryptoError:
                continue
            try:
                padded = nacl.secret.Aead(content_key).decrypt(rest, aad)
            except nacl.exceptions.CryptoError:
                break
            return _unpad(envelope[0], padded)
        raise RecordOpenError("the record does not open here (wrong key, place or tampered)")


@dataclass(frozen=True, slots=True)
class Recipient:
    """A reader of a multi-recipient record: a public key and its key id."""

    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise InvalidKey(f"a recipient's public key must be {PUBLIC_KEY_SIZE} bytes")

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)


PUBLIC_KEY_SIZE = nacl.public.PublicKey.SIZE


def multi_envelope_size(recipients: int, plaintext_size: int) -> int:
    """The exact length of an ``ALG_MULTI`` envelope (what a page must keep under limits)."""
    padded = (plaintext_size // MULTI_PAD_BLOCK + 1) * MULTI_PAD_BLOCK
    wraps = 1 + recipients * WRAP_SIZE
    return HEADER_SIZE + wraps + NONCE_SIZE + padded + nacl.secret.Aead.MACBYTES


def seal_multi(
    plaintext: bytes, place: RecordPlace, team: Recipient, readers: Sequence[Recipient] = ()
) -> bytes:
    """Seal ``plaintext`` for ``place`` to the team key and each of ``readers``.

    The same format as the Mini App writes on a phone: the bot uses it for what it seals to a
    member's or caseworker's devices itself, and the tests use it to check the browser opens
    what Python sealed.
    """
    everyone = [team, *readers]
    if len(everyone) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients")
    content_key = nacl.utils.random(CONTENT_KEY_SIZE)
    wraps = b"".join(r.kid + _wrap_key(r.public_key, content_key) for r in everyone)
    header = _header(ALG_MULTI, team.kid)
    recipients_block = bytes((len(everyone),)) + wraps
    aad = header + recipients_block + place.associated_data()
    nonce = nacl.utils.random(NONCE_SIZE)
    body = nacl.secret.Aead(content_key).encrypt(pad(plaintext, MULTI_PAD_BLOCK), aad, nonce)
    return header + recipients_block + bytes(body)


def _wrap_key(public_key: bytes, content_key: bytes) -> bytes:
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(public_key)).encrypt(content_key))


def multi_recipient_ids(envelope: bytes) -> list[bytes]:
    """The key ids an ``ALG_MULTI`` envelope was sealed to, team key first (no key needed)."""
    _header_bytes, _kid, body = _split_header(envelope, ALG_MULTI)
    count, wraps, _rest = _split_wraps(body)
    return [wraps[i * WRAP_SIZE : i * WRAP_SIZE + KEY_ID_SIZE] for i in range(count)]


def _split_wraps(body: bytes) -> tuple[int, bytes, bytes]:
    if not body:
        raise RecordOpenError("envelope too short")
    count = body[0]
    if not 1 <= count <= MAX_RECIPIENTS:
        raise RecordOpenError("bad recipient count")
    end = 1 + count * WRAP_SIZE
    if len(body) < end + NONCE_SIZE + nacl.secret.Aead.MACBYTES:
        raise RecordOpenError("envelope too short")
    return count, body[1:end], body[end:]


def _open_multi(
    keys: Sequence[tuple[bytes, nacl.public.SealedBox[nacl.public.PrivateKey]]],
    envelope: bytes,
    place: RecordPlace,
) -> bytes:
    header, _kid, body = _split_header(envelope, ALG_MULTI)
    count, wraps, rest = _split_wraps(body)
    aad = header + body[: 1 + count * WRAP_SIZE] + place.associated_data()
    for own_kid, box in keys:
        for i in range(count):
            wrap = wraps[i * WRAP_SIZE : (i + 1) * WRAP_SIZE]
            if wrap[:KEY_ID_SIZE] != own_kid:
                continue
            try:
                content_key = box.decrypt(wrap[KEY_ID_SIZE:])
            except nacl.exceptions.CryptoError:
                continue
            try:
                padded = nacl.secret.Aead(content_key).decrypt(rest, aad)
            except nacl.exceptions.CryptoError as exc:
                raise RecordOpenError(
                    "the record does not open here (wrong place or tampered)"
                ) from exc
            return _unpad(envelope[0], padded, MULTI_PAD_BLOCK)
    raise RecordOpenError("the record was not sealed to this key")


class DeviceOpener:
    """Opens multi-recipient records with one device's private key (tests, and the staff
    page's logic mirrored in Python)."""

    __slots__ = ("_keys",)

    def __init__(self, private_key: bytes) -> None:
        if not isinstance(private_key, bytes) or len(private_key) != nacl.public.PrivateKey.SIZE:
            raise InvalidKey("a device private key must be 32 bytes")
        private = nacl.public.PrivateKey(private_key)
        self._keys = [(key_id(bytes(private.public_key)), nacl.public.SealedBox(private))]

    def __repr__(self) -> str:
        return "DeviceOpener(<hidden key>)"

    def open(self, envelope: bytes, place: RecordPlace) -> bytes:
        return _open_multi(self._keys, envelope, place)
