// The envelope format of crypto/boxes.py (ALG_MULTI), made and opened on the phone with
// libsodium's JavaScript build. Byte-compatible with Python's seal_multi / DeviceOpener /
// TeamOpener: the tests seal here and open in Python, and the reverse.
//
//   version(1)=2 | algorithm(1)=3 | team key id(8) | count(1) |
//   count x (recipient key id(8) | crypto_box_seal(content key)(80)) |
//   nonce(24) | XChaCha20-Poly1305(sodium_pad(plaintext, 2048), aad)
//   aad = everything before the nonce + "saferelay|table|column|row id"
//
// The factory takes the sodium object so the same code runs in the page and under Node.

export const VERSION = 2;
export const ALG_MULTI = 3;
export const MULTI_PAD_BLOCK = 2048;
export const KEY_ID_SIZE = 8;
export const MAX_RECIPIENTS = 8;
const SEALED_KEY_SIZE = 80;
const WRAP_SIZE = KEY_ID_SIZE + SEALED_KEY_SIZE;
const NONCE_SIZE = 24;
const HEADER_SIZE = 2 + KEY_ID_SIZE;
const FINGERPRINT_PREFIX = "saferelay-device-fingerprint-v1|";

export class RecordTooLong extends Error {}

function placeBytes(place) {
  for (const part of [place.table, place.column, place.rowId]) {
    if (!part || !/^[\x20-\x7e]+$/.test(part) || part.includes("|")) {
      throw new Error("a record place has non-empty printable ASCII parts, no '|'");
    }
  }
  return new TextEncoder().encode(`saferelay|${place.table}|${place.column}|${place.rowId}`);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function envelopes(sodium) {
  // recipients: [{publicKey: Uint8Array(32), keyId: Uint8Array(8)}], the team key first.
  function seal(plaintext, place, recipients) {
    if (recipients.length < 1 || recipients.length > MAX_RECIPIENTS) {
      throw new Error("between 1 and 8 recipients");
    }
    if (plaintext.length >= MULTI_PAD_BLOCK) {
      // One size for every record: a longer one would say "this one wrote a lot".
      throw new RecordTooLong("the record does not fit one block");
    }
    const contentKey = sodium.crypto_aead_xchacha20poly1305_ietf_keygen();
    const header = concat(Uint8Array.of(VERSION, ALG_MULTI), recipients[0].keyId);
    const wraps = recipients.map((r) => {
      if (r.publicKey.length !== 32 || r.keyId.length !== KEY_ID_SIZE) {
        throw new Error("bad recipient key");
      }
      return concat(r.keyId, sodium.crypto_box_seal(contentKey, r.publicKey));
    });
    const recipientsBlock = concat(Uint8Array.of(recipients.length), ...wraps);
    const aad = concat(header, recipientsBlock, placeBytes(place));
    const nonce = sodium.randombytes_buf(NONCE_SIZE);
    const padded = sodium.pad(plaintext, MULTI_PAD_BLOCK);
    const body = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
      padded, aad, null, nonce, contentKey);
    sodium.memzero(contentKey);
    return concat(header, recipientsBlock, nonce, body);
  }

  // keyPair: {publicKey, privateKey}. Every wrap is tried (at most eight): the key ids are
  // hints from the server, and a wrong hint must not stop a reader from opening its record.
  function open(envelope, place, keyPair) {
    if (envelope.length < HEADER_SIZE + 1 || envelope[0] !== VERSION || envelope[1] !== ALG_MULTI) {
      throw new Error("not a multi-recipient envelope");
    }
    const count = envelope[HEADER_SIZE];
    if (count < 1 || count > MAX_RECIPIENTS) throw new Error("bad recipient count");
    const wrapsEnd = HEADER_SIZE + 1 + count * WRAP_SIZE;
    if (envelope.length < wrapsEnd + NONCE_SIZE + 16) throw new Error("envelope too short");
    const aad = concat(envelope.subarray(0, wrapsEnd), placeBytes(place));
    const nonce = envelope.subarray(wrapsEnd, wrapsEnd + NONCE_SIZE);
    const body = envelope.subarray(wrapsEnd + NONCE_SIZE);
    for (let i = 0; i < count; i++) {
      const start = HEADER_SIZE + 1 + i * WRAP_SIZE + KEY_ID_SIZE;
      let contentKey;
      try {
        contentKey = sodium.crypto_box_seal_open(
          envelope.subarray(start, start + SEALED_KEY_SIZE), keyPair.publicKey, keyPair.privateKey);
      } catch {
        continue;
      }
      const padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        null, body, aad, nonce, contentKey);
      return sodium.unpad(padded, MULTI_PAD_BLOCK);
    }
    throw new Error("the record was not sealed to this device");
  }

  // What a person compares on two phones before a device key is approved: 48 bits of
  // BLAKE2b over the public keys, "ABCD-EF12-3456" (Python: crypto.devices.fingerprint).
  // A staff phone's fingerprint covers its signing key too (signingKey, optional).
  function fingerprint(publicKey, signingKey) {
    const digest = sodium.crypto_generichash(
      6, concat(new TextEncoder().encode(FINGERPRINT_PREFIX), publicKey,
        signingKey || new Uint8Array(0)));
    const hex = sodium.to_hex(digest).toUpperCase();
    return `${hex.slice(0, 4)}-${hex.slice(4, 8)}-${hex.slice(8, 12)}`;
  }

  return { seal, open, fingerprint };
}
