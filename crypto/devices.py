"""Device keys of the Mini App: the short fingerprint two people compare, and the
certificates that make a staff device key a reader without the server's say-so.

A device (a caseworker's or a member's phone) makes its own X25519 key pair in the page and
registers only the public half; a staff device also makes an Ed25519 signing key pair and
registers its public half. The fingerprint covers both public keys: it is what a person
compares on two phones before a key is trusted (computed on the device that holds it by
``webapp/static/js/envelope.mjs``, and on the other side from the registered keys). 48 bits:
finding a second key pair with the same fingerprint takes about 2**48 key generations, far
beyond a server trying to slip in its own keys between registration and approval; a shorter
one could be matched in hours. Covering the signing key matters: a server that could swap
an admin phone's signing key behind an unchanged fingerprint could approve readers itself.

Certificates (detached Ed25519 signatures over :meth:`DeviceCert.statement`):

- the *team* (the Ed25519 key derived from the team private key, crypto/signing.py, used
  only offline by ``saferelay devices trust``) certifies an admin's phone: a *certifier*;
- a certifier certifies another staff device (a caseworker's, or another admin's phone):
  a *reader*. Only a team-certified admin device certifies: a chain is never longer.

The pages verify the chain against the team's verify key pinned into them at start, before
they seal anything to a device key; the server checks the same (defence in depth). The
statement binds the device's role (a caseworker's certificate can never pass for a
certifier's), its row id, both its public keys and the issuer's key, under a versioned,
domain-separated prefix. ``webapp/static/js/certs.mjs`` builds the same bytes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing

from crypto.errors import BadSignature, InvalidKey

PUBLIC_KEY_SIZE = 32
SIGNING_KEY_SIZE = 32
SIGNATURE_SIZE = 64
FINGERPRINT_BYTES = 6
_PREFIX = b"saferelay-device-fingerprint-v1|"
CERT_DOMAIN = b"sr-device-cert-v1\0"
# A device's row id as the server makes it (22 URL-safe characters), bound into its
# certificate so one row's certificate cannot be moved onto another's.
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CertRole(enum.IntEnum):
    """The role a certificate binds, one byte in the statement."""

    ADMIN = 1
    CASEWORKER = 2


def fingerprint(public_key: bytes, signing_key: bytes = b"") -> str:
    """``ABCD-EF12-3456``: the same on the phone that holds the keys and wherever it is
    compared. ``signing_key`` is a staff device's Ed25519 public key (absent for a member's
    phone and for the team key)."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"a device public key must be {PUBLIC_KEY_SIZE} bytes")
    if not isinstance(signing_key, bytes) or len(signing_key) not in (0, SIGNING_KEY_SIZE):
        raise InvalidKey(f"a device signing key must be {SIGNING_KEY_SIZE} bytes")
    digest = nacl.hash.blake2b(
        _PREFIX + public_key + signing_key,
        digest_size=FINGERPRINT_BYTES,
        encoder=nacl.encoding.RawEncoder,
    )
    text = digest.hex().upper()
    return f"{text[0:4]}-{text[4:8]}-{text[8:12]}"


@dataclass(frozen=True, slots=True)
class DeviceCert:
    """What a certificate says: this device (row id, role, keys) is trusted by ``issuer``."""

    role: CertRole
    device_id: str
    public_key: bytes  # the device's X25519 key: what records are sealed to
    signing_key: bytes  # the device's Ed25519 key: what it certifies others with (admins)
    issuer: bytes  # the Ed25519 key that signs this statement

    def __post_init__(self) -> None:
        if not DEVICE_ID.match(self.device_id):
            raise InvalidKey("a device id is 1 to 64 URL-safe characters")
        for key in (self.public_key, self.signing_key, self.issuer):
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
                raise InvalidKey("certificate keys are 32 bytes each")

    def statement(self) -> bytes:
        """``CERT_DOMAIN | role(1) | len(id)(1) | id | x25519(32) | ed25519(32) | issuer(32)``"""
        device_id = self.device_id.encode("ascii")
        return b"".join(
            (
                CERT_DOMAIN,
                bytes((int(self.role), len(device_id))),
                device_id,
                self.public_key,
                self.signing_key,
                self.issuer,
            )
        )

    def sign(self, signing_key: nacl.signing.SigningKey) -> bytes:
        """The detached signature; the key must be the issuer's."""
        if bytes(signing_key.verify_key) != self.issuer:
            raise InvalidKey("this certificate names another issuer")
        return bytes(signing_key.sign(self.statement()).signature)

    def check(self, signature: bytes) -> None:
        """:class:`BadSignature` unless ``issuer`` signed exactly this statement."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise BadSignature("a certificate signature is 64 bytes")
        try:
            nacl.signing.VerifyKey(self.issuer).verify(self.statement(), signature)
        except (nacl.exceptions.BadSignatureError, ValueError) as exc:
            raise BadSignature("the certificate does not match its issuer's signature") from exc


@dataclass(frozen=True, slots=True)
class Certified:
    """A device's certificate with its signature."""

    cert: DeviceCert
    signature: bytes


def check_chain(anchor: bytes, device: Certified, issuer: Certified | None) -> None:
    """:class:`BadSignature` unless ``device`` is trusted from ``anchor`` (the team's verify
    key): signed by the team itself, or by a certifier (``issuer``: a team-signed admin
    device whose signing key signed ``device``). Nothing longer is accepted."""
    if len(anchor) != SIGNING_KEY_SIZE:
        raise BadSignature("no team verify key")
    if device.cert.issuer == anchor:
        device.cert.check(device.signature)
        return
    if issuer is None:
        raise BadSignature("the certificate's issuer is not a certifier")
    if (
        issuer.cert.issuer != anchor
        or issuer.cert.role is not CertRole.ADMIN
        or issuer.cert.signing_key != device.cert.issuer
        or issuer.cert.device_id == device.cert.device_id
    ):
        raise BadSignature("the certificate's issuer is not a certifier")
    issuer.cert.check(issuer.signature)
    device.cert.check(device.signature)
