"""The phone and the server speak one envelope: sealed in Chromium with libsodium's JS
build, opened in Python, and the reverse, byte for byte in the same format."""

from __future__ import annotations

import aiohttp
import nacl.public
import nacl.signing
import pytest
from aiohttp.test_utils import TestServer

from crypto.boxes import (
    ALG_MULTI,
    DeviceOpener,
    Recipient,
    RecordPlace,
    TeamOpener,
    key_id,
    multi_envelope_size,
    multi_recipient_ids,
    seal_multi,
)
from crypto.devices import Certified, CertRole, DeviceCert, check_chain, fingerprint
from crypto.errors import RecordOpenError
from crypto.signing import TeamSigner
from tests.webapp.conftest import OfflinePage

PLACE = RecordPlace("webapp_records", "sealed", "7f0c3a52-row")
# Korean, Chinese and an emoji: the UTF-8 both sides encode must agree.
TEXT = "오늘은 괜찮아요. 我今天还好。 🌱"

_LOAD = """async () => {
  const sodium = (await import("/webapp/vendor/libsodium-wrappers.mjs")).default;
  await sodium.ready;
  const { envelopes } = await import("/webapp/js/envelope.mjs");
  window.__e = envelopes(sodium);
  window.__s = sodium;
  return true;
}"""


async def _open_page(offline_page: OfflinePage, server: TestServer) -> None:
    await offline_page.page.goto(str(server.make_url("/webapp/index.html")))
    assert await offline_page.page.evaluate(_LOAD), offline_page.console


async def test_sealed_in_the_browser_opens_in_python(
    offline_page: OfflinePage, webapp_server: TestServer, team_private_key: bytes
) -> None:
    # Given a team key and one caseworker device
    team = nacl.public.PrivateKey(team_private_key)
    device = nacl.public.PrivateKey.generate()
    stranger = nacl.public.PrivateKey.generate()
    recipients = [
        {"pk": bytes(k.public_key).hex(), "kid": key_id(bytes(k.public_key)).hex()}
        for k in (team, device)
    ]
    await _open_page(offline_page, webapp_server)

    # When the page seals a text for a place
    envelope_hex = await offline_page.page.evaluate(
        """([text, place, recipients]) => {
          const s = window.__s;
          const env = window.__e.seal(new TextEncoder().encode(text), place,
            recipients.map((r) => ({publicKey: s.from_hex(r.pk), keyId: s.from_hex(r.kid)})));
          return s.to_hex(env);
        }""",
        [TEXT, {"table": PLACE.table, "column": PLACE.column, "rowId": PLACE.row_id}, recipients],
    )
    envelope = bytes.fromhex(envelope_hex)

    # Then the team key (reports) and the device open it in Python, nobody else does
    assert envelope[1] == ALG_MULTI
    assert TeamOpener([team_private_key]).open(envelope, PLACE).decode() == TEXT
    assert DeviceOpener(bytes(device)).open(envelope, PLACE).decode() == TEXT
    with pytest.raises(RecordOpenError):
        DeviceOpener(bytes(stranger)).open(envelope, PLACE)
    # bound to its row
    with pytest.raises(RecordOpenError):
        TeamOpener([team_private_key]).open(envelope, RecordPlace(PLACE.table, PLACE.column, "x"))
    # the length is the fixed one, whatever was typed
    assert len(envelope) == multi_envelope_size(2, 0) == multi_envelope_size(2, 2047)
    assert multi_recipient_ids(envelope) == [bytes.fromhex(r["kid"]) for r in recipients]
    assert TEXT.encode() not in envelope


async def test_sealed_in_python_opens_in_the_browser(
    offline_page: OfflinePage, webapp_server: TestServer, team_private_key: bytes
) -> None:
    # Given a member device key made in the page
    await _open_page(offline_page, webapp_server)
    device = await offline_page.page.evaluate(
        """() => { const s = window.__s; const kp = s.crypto_box_keypair();
                   return {pk: s.to_hex(kp.publicKey), sk: s.to_hex(kp.privateKey),
                           fp: window.__e.fingerprint(kp.publicKey)}; }"""
    )
    device_public = bytes.fromhex(device["pk"])
    team_public = bytes(nacl.public.PrivateKey(team_private_key).public_key)

    # When Python seals a reply to the team key and that device
    envelope = seal_multi(TEXT.encode(), PLACE, Recipient(team_public), [Recipient(device_public)])

    # Then the page opens it with its own key, and the fingerprints agree on both sides
    opened = await offline_page.page.evaluate(
        """([env, place, kp]) => {
          const s = window.__s;
          const out = window.__e.open(s.from_hex(env), place,
            {publicKey: s.from_hex(kp.pk), privateKey: s.from_hex(kp.sk)});
          return new TextDecoder().decode(out);
        }""",
        [
            envelope.hex(),
            {"table": PLACE.table, "column": PLACE.column, "rowId": PLACE.row_id},
            device,
        ],
    )
    assert opened == TEXT
    assert device["fp"] == fingerprint(device_public)

    # And a record moved to another row, or with one byte flipped, does not open there
    for place, env in (
        ({"table": PLACE.table, "column": PLACE.column, "rowId": "other"}, envelope),
        (
            {"table": PLACE.table, "column": PLACE.column, "rowId": PLACE.row_id},
            envelope[:-5] + bytes([envelope[-5] ^ 1]) + envelope[-4:],
        ),
    ):
        refused = await offline_page.page.evaluate(
            """([env, place, kp]) => {
              const s = window.__s;
              try { window.__e.open(s.from_hex(env), place,
                      {publicKey: s.from_hex(kp.pk), privateKey: s.from_hex(kp.sk)});
                    return false; } catch (e) { return true; }
            }""",
            [env.hex(), place, device],
        )
        assert refused


async def test_the_page_refuses_a_text_longer_than_one_block(
    offline_page: OfflinePage, webapp_server: TestServer, team_private_key: bytes
) -> None:
    await _open_page(offline_page, webapp_server)
    team_public = bytes(nacl.public.PrivateKey(team_private_key).public_key)
    refused = await offline_page.page.evaluate(
        """([pk, kid]) => {
          const s = window.__s;
          try { window.__e.seal(new Uint8Array(2048), {table: "t", column: "c", rowId: "r"},
                  [{publicKey: s.from_hex(pk), keyId: s.from_hex(kid)}]); return "sealed"; }
          catch (e) { return e.constructor.name; }
        }""",
        [team_public.hex(), key_id(team_public).hex()],
    )
    assert refused == "RecordTooLong"


async def test_served_pages_pin_the_team_key_and_a_strict_policy(
    webapp_server: TestServer, team_private_key: bytes
) -> None:
    team_public = bytes(nacl.public.PrivateKey(team_private_key).public_key)
    async with aiohttp.ClientSession() as session:
        async with session.get(webapp_server.make_url("/webapp/index.html")) as resp:
            body = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
            assert resp.headers["Content-Encoding"] == "gzip"  # asked for by the client
    assert team_public.hex() in body and fingerprint(team_public) in body
    assert "{{" not in body
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors" in csp


_LOAD_CERTS = """async () => {
  const sodium = (await import("/webapp/vendor/libsodium-wrappers.mjs")).default;
  await sodium.ready;
  const { certs } = await import("/webapp/js/certs.mjs");
  const { envelopes } = await import("/webapp/js/envelope.mjs");
  window.__c = certs(sodium);
  window.__e = envelopes(sodium);
  window.__s = sodium;
  return true;
}"""


async def test_certificates_are_the_same_bytes_and_check_on_both_sides(
    offline_page: OfflinePage, webapp_server: TestServer
) -> None:
    # Given a team signing key (the anchor), an admin's phone it certified (in Python), and
    # in the page a caseworker's phone's keys
    team = TeamSigner(bytes(range(7, 39)))
    admin_sign = nacl.signing.SigningKey.generate()
    admin_cert = DeviceCert(
        CertRole.ADMIN,
        "AdminPhone_0123456789a",
        bytes(nacl.public.PrivateKey.generate().public_key),
        bytes(admin_sign.verify_key),
        team.verify_key,
    )
    admin = Certified(admin_cert, admin_cert.sign(team.signing_key))
    await offline_page.page.goto(str(webapp_server.make_url("/webapp/index.html")))
    assert await offline_page.page.evaluate(_LOAD_CERTS), offline_page.console

    # When the admin's phone (the page, with the admin's seed) signs the caseworker's
    # certificate, and the page checks both chains against the anchor
    made = await offline_page.page.evaluate(
        """([seed, anchor, admin]) => {
          const s = window.__s, c = window.__c;
          const signer = s.crypto_sign_seed_keypair(s.from_hex(seed));
          const phone = { pk: s.crypto_box_keypair().publicKey,
                          spk: s.crypto_sign_keypair().publicKey };
          const cert = { role: "caseworker", id: "MinaPhone_0123456789ab",
                         publicKey: phone.pk, signingKey: phone.spk, issuer: signer.publicKey };
          const sig = c.sign(cert, signer.privateKey);
          const shown = { id: cert.id, role: cert.role, pk: s.to_hex(phone.pk),
                          spk: s.to_hex(phone.spk), iss: s.to_hex(signer.publicKey),
                          sig: s.to_hex(sig) };
          const a = s.from_hex(anchor);
          const flip = (shown.sig[0] === "0" ? "1" : "0") + shown.sig.slice(1);
          const flipped = { ...shown, sig: flip };
          return {
            statement: s.to_hex(c.statement(cert)), shown,
            fp: window.__e.fingerprint(phone.pk, phone.spk),
            holds: c.chainHolds(a, c.parse(shown), c.parse(admin), phone.pk),
            flipped: c.chainHolds(a, c.parse(flipped), c.parse(admin), phone.pk),
            adminAlone: c.chainHolds(a, c.parse(admin), null, null),
            certifier: c.isCertifier(a, c.parse(admin)),
            caseworkerIsCertifier: c.isCertifier(a, c.parse(shown)),
            // an install whose pages have no verify key pinned yet trusts no staff phone
            noAnchor: c.chainHolds(null, c.parse(shown), c.parse(admin), phone.pk),
            otherAnchor: c.chainHolds(s.crypto_sign_keypair().publicKey, c.parse(shown),
                                      c.parse(admin), phone.pk),
          };
        }""",
        [
            admin_sign.encode().hex(),
            team.verify_key.hex(),
            {
                "id": admin_cert.device_id,
                "role": "admin",
                "pk": admin_cert.public_key.hex(),
                "spk": admin_cert.signing_key.hex(),
                "iss": admin_cert.issuer.hex(),
                "sig": admin.signature.hex(),
            },
        ],
    )
    shown = made["shown"]
    cert = DeviceCert(
        CertRole.CASEWORKER,
        shown["id"],
        bytes.fromhex(shown["pk"]),
        bytes.fromhex(shown["spk"]),
        bytes.fromhex(shown["iss"]),
    )
    # Then the statement is byte-identical, Python checks the page's signature in the chain,
    # the fingerprints agree, and the page accepts exactly what Python accepts
    assert made["statement"] == cert.statement().hex()
    check_chain(team.verify_key, Certified(cert, bytes.fromhex(shown["sig"])), admin)
    assert made["fp"] == fingerprint(cert.public_key, cert.signing_key)
    assert (made["holds"], made["adminAlone"], made["certifier"]) == (True, True, True)
    refused = ("flipped", "caseworkerIsCertifier", "otherAnchor", "noAnchor")
    assert [made[k] for k in refused] == [False] * 4
