"""Device certificates: the bytes signed, the chain from the team key, and what is refused
(a flipped byte, an untrusted issuer, a caseworker posing as a certifier, a longer chain)."""

from __future__ import annotations

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.devices import (
    CERT_DOMAIN,
    Certified,
    CertRole,
    DeviceCert,
    check_chain,
    fingerprint,
)
from crypto.errors import BadSignature, InvalidKey
from crypto.signing import TeamSigner

TEAM = TeamSigner(bytes(range(32)))
ANCHOR = TEAM.verify_key


def _device(
    role: CertRole, device_id: str, issuer: nacl.signing.SigningKey | TeamSigner
) -> tuple[Certified, nacl.signing.SigningKey]:
    own = nacl.signing.SigningKey.generate()
    public = nacl.signing.SigningKey.generate().verify_key.encode()  # any 32 bytes
    signer = issuer.signing_key if isinstance(issuer, TeamSigner) else issuer
    cert = DeviceCert(role, device_id, public, bytes(own.verify_key), bytes(signer.verify_key))
    return Certified(cert, cert.sign(signer)), own


def test_the_statement_is_versioned_domain_separated_and_binds_every_field() -> None:
    cert = DeviceCert(CertRole.CASEWORKER, "dev-1", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    assert cert.statement() == (
        b"sr-device-cert-v1\x00" + b"\x02\x05dev-1" + b"\x01" * 32 + b"\x02" * 32 + b"\x03" * 32
    )
    assert cert.statement().startswith(CERT_DOMAIN)
    # Known answer, also built by webapp/static/js/certs.mjs (tests/webapp interop test)
    admin = DeviceCert(CertRole.ADMIN, "dev-1", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    assert admin.statement() != cert.statement()


def test_a_team_certified_admin_phone_is_trusted_and_certifies_a_caseworker() -> None:
    admin, admin_key = _device(CertRole.ADMIN, "admin-phone", TEAM)
    check_chain(ANCHOR, admin, None)
    caseworker, _ = _device(CertRole.CASEWORKER, "mina-phone", admin_key)
    check_chain(ANCHOR, caseworker, admin)


def test_a_flipped_byte_anywhere_is_refused() -> None:
    admin, admin_key = _device(CertRole.ADMIN, "admin-phone", TEAM)
    caseworker, _ = _device(CertRole.CASEWORKER, "mina-phone", admin_key)
    signature = bytearray(caseworker.signature)
    signature[10] ^= 1
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, Certified(caseworker.cert, bytes(signature)), admin)
    public = bytearray(caseworker.cert.public_key)
    public[0] ^= 1
    moved = DeviceCert(
        caseworker.cert.role,
        caseworker.cert.device_id,
        bytes(public),
        caseworker.cert.signing_key,
        caseworker.cert.issuer,
    )
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, Certified(moved, caseworker.signature), admin)
    # bound to its row: the same keys under another device id do not check
    other_row = DeviceCert(
        caseworker.cert.role,
        "another-row",
        caseworker.cert.public_key,
        caseworker.cert.signing_key,
        caseworker.cert.issuer,
    )
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, Certified(other_row, caseworker.signature), admin)


def test_untrusted_issuers_and_longer_chains_are_refused() -> None:
    # An admin phone nobody trusted (the server's own key, say)
    rogue, rogue_key = _device(CertRole.ADMIN, "rogue", nacl.signing.SigningKey.generate())
    reader, _ = _device(CertRole.CASEWORKER, "reader", rogue_key)
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, reader, rogue)
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, reader, None)
    # A caseworker's phone, team-certified by mistake, is still not a certifier
    caseworker, caseworker_key = _device(CertRole.CASEWORKER, "cw", TEAM)
    check_chain(ANCHOR, caseworker, None)
    made, _ = _device(CertRole.CASEWORKER, "made", caseworker_key)
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, made, caseworker)
    # An admin phone approved by another admin's phone is a reader, not a certifier
    admin, admin_key = _device(CertRole.ADMIN, "admin", TEAM)
    second, second_key = _device(CertRole.ADMIN, "second", admin_key)
    check_chain(ANCHOR, second, admin)
    third, _ = _device(CertRole.CASEWORKER, "third", second_key)
    with pytest.raises(BadSignature):
        check_chain(ANCHOR, third, second)
    # Without an anchor nothing holds
    with pytest.raises(BadSignature):
        check_chain(b"", admin, None)


def test_a_certificate_is_signed_by_the_issuer_it_names() -> None:
    cert = DeviceCert(CertRole.ADMIN, "x", b"\x01" * 32, b"\x02" * 32, ANCHOR)
    with pytest.raises(InvalidKey):
        cert.sign(nacl.signing.SigningKey.generate())
    with pytest.raises(InvalidKey):
        DeviceCert(CertRole.ADMIN, "bad id!", b"\x01" * 32, b"\x02" * 32, ANCHOR)
    with pytest.raises(InvalidKey):
        DeviceCert(CertRole.ADMIN, "x", b"\x01" * 31, b"\x02" * 32, ANCHOR)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_the_fingerprint_covers_both_keys(public: bytes, signing: bytes) -> None:
    assert fingerprint(public, signing) != fingerprint(public)
    flipped = bytes([signing[0] ^ 1]) + signing[1:]
    assert fingerprint(public, signing) != fingerprint(public, flipped)
