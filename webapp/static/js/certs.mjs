// Device certificates (crypto/devices.py, byte for byte): which staff phones a page may seal
// to, decided here against the team's verify key pinned into the page, never by the server.
//
//   statement = "sr-device-cert-v1\0" | role(1) | len(id)(1) | id | x25519(32) | ed25519(32)
//               | issuer(32), signed with Ed25519 (detached) by the issuer
//
// The team key certifies admins' phones (`saferelay devices trust`, offline); such a phone
// (a certifier) certifies other staff phones. No longer chain is accepted.
//
// The factory takes the sodium object so the same code runs in the page and under tests.

import { concat } from "./envelope.mjs";

export const CERT_DOMAIN = "sr-device-cert-v1\0";
export const ROLES = { admin: 1, caseworker: 2 };

export function certs(sodium) {
  // cert: {role: "admin"|"caseworker", id, publicKey, signingKey, issuer} (keys: Uint8Array)
  function statement(cert) {
    const role = ROLES[cert.role];
    const id = new TextEncoder().encode(cert.id);
    if (!role || !/^[A-Za-z0-9_-]{1,64}$/.test(cert.id)) throw new Error("bad certificate");
    for (const key of [cert.publicKey, cert.signingKey, cert.issuer]) {
      if (!(key instanceof Uint8Array) || key.length !== 32) throw new Error("bad certificate");
    }
    return concat(new TextEncoder().encode(CERT_DOMAIN), Uint8Array.of(role, id.length), id,
      cert.publicKey, cert.signingKey, cert.issuer);
  }

  function sign(cert, secretKey) {
    return sodium.crypto_sign_detached(statement(cert), secretKey);
  }

  function valid(cert, signature) {
    try {
      return signature.length === 64 &&
        sodium.crypto_sign_verify_detached(signature, statement(cert), cert.issuer);
    } catch {
      return false;
    }
  }

  // A certificate as the API gives it ({id, role, pk, spk, iss, sig}, hex) -> bytes.
  function parse(shown) {
    if (!shown) return null;
    try {
      return {
        cert: {
          role: shown.role, id: shown.id, publicKey: sodium.from_hex(shown.pk),
          signingKey: sodium.from_hex(shown.spk), issuer: sodium.from_hex(shown.iss),
        },
        signature: sodium.from_hex(shown.sig),
      };
    } catch {
      return null;
    }
  }

  const same = (a, b) => a.length === b.length && sodium.memcmp(a, b);

  // Does `device` (and its issuer, if not the team) chain to `anchor`, the pinned team
  // verify key? `publicKey`, if given, must be the key certified (what is sealed to).
  function chainHolds(anchor, device, issuer, publicKey) {
    if (!anchor || anchor.length !== 32 || !device) return false;
    const { cert, signature } = device;
    if (publicKey && !same(cert.publicKey, publicKey)) return false;
    if (same(cert.issuer, anchor)) return valid(cert, signature);
    if (!issuer) return false;
    const boss = issuer.cert;
    return boss.role === "admin" && same(boss.issuer, anchor) && same(boss.signingKey, cert.issuer) &&
      boss.id !== cert.id && valid(boss, issuer.signature) && valid(cert, signature);
  }

  // Is `device` a certifier: an admin's phone certified by the team key itself?
  function isCertifier(anchor, device) {
    return Boolean(device) && device.cert.role === "admin" && anchor && anchor.length === 32 &&
      same(device.cert.issuer, anchor) && valid(device.cert, device.signature);
  }

  return { statement, sign, valid, parse, chainHolds, isCertifier };
}
