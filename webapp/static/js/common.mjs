// What both pages share: libsodium, this device's key in Telegram's secure storage, the
// pinned team key, and calls to the bot's API signed with Telegram's initData.
import sodium from "../vendor/libsodium-wrappers.mjs";
import { certs } from "./certs.mjs";
import { envelopes } from "./envelope.mjs";

export const KEY_ITEM = "saferelay-device-key-v1";
export const SIGNING_ITEM = "saferelay-signing-key-v1";
export class NoSecureStorage extends Error {}
export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

export async function start() {
  await sodium.ready;
  const tg = window.Telegram && window.Telegram.WebApp;
  if (!tg || !tg.initData) throw new ApiError(401, "not opened from Telegram");
  tg.ready();
  const body = document.body.dataset;
  // Pinned into the page when the server started, never fetched: a server that wanted to
  // hand one person another team key would have to change the page for everyone.
  const team = {
    publicKey: sodium.from_hex(body.teamKey),
    keyId: sodium.from_hex(body.teamKeyId),
  };
  // The anchor of staff device certificates, pinned the same way; empty on an install
  // whose coordinator has not run `saferelay devices trust` yet: then no staff phone is
  // trusted and records are sealed to the team key alone.
  const anchor = body.teamVerifyKey ? sodium.from_hex(body.teamVerifyKey) : null;
  return { sodium, tg, team, anchor, box: envelopes(sodium), certs: certs(sodium) };
}

function secureStorage(tg) {
  // Telegram's SecureStorage keeps items in the phone's Keychain / Keystore. Without it a
  // private key would sit in plain browser storage: the page refuses rather than do that.
  const store = tg.SecureStorage;
  if (!store || typeof store.getItem !== "function") throw new NoSecureStorage();
  return store;
}

// 32 secret bytes kept under `item` in secure storage, made here the first time.
async function storedSecret(sodium, store, item, make) {
  const stored = await new Promise((resolve, reject) =>
    store.getItem(item, (err, value) => (err ? reject(new NoSecureStorage(err)) : resolve(value))));
  if (stored) return sodium.from_hex(stored);
  const secret = make();
  await new Promise((resolve, reject) =>
    store.setItem(item, sodium.to_hex(secret), (err, ok) =>
      (err || !ok ? reject(new NoSecureStorage(err)) : resolve())));
  return secret;
}

export async function deviceKey({ sodium, tg }) {
  const store = secureStorage(tg);
  const privateKey = await storedSecret(sodium, store, KEY_ITEM,
    () => sodium.crypto_box_keypair().privateKey);
  return { privateKey, publicKey: sodium.crypto_scalarmult_base(privateKey) };
}

// A staff phone's Ed25519 key pair (from a seed kept beside the device key): what an
// admin's phone signs other phones' certificates with.
export async function signingKey({ sodium, tg }) {
  const store = secureStorage(tg);
  const seed = await storedSecret(sodium, store, SIGNING_ITEM,
    () => sodium.randombytes_buf(sodium.crypto_sign_SEEDBYTES));
  const pair = sodium.crypto_sign_seed_keypair(seed);
  return { publicKey: pair.publicKey, privateKey: pair.privateKey };
}

export async function api(tg, name, body) {
  const response = await fetch(`api/${name}`, {
    method: "POST",
    headers: { "Authorization": `tma ${tg.initData}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, answer.error || "failed");
  return answer;
}

export function newRecordId(sodium) {
  // 128 random bits, the server's own row id format (22 URL-safe characters).
  return sodium.to_base64(sodium.randombytes_buf(16), sodium.base64_variants.URLSAFE_NO_PADDING);
}

export function recipients(sodium, team, readers) {
  return [team, ...readers.map((r) => ({ publicKey: sodium.from_hex(r.pk), keyId: sodium.from_hex(r.kid) }))];
}

// The staff phones a member's page may seal to: only those whose certificate chain holds
// from the pinned team verify key. The server filters the same way; this page does not
// take its word for it (a server that marked its own key approved gets nothing here).
export function certifiedReaders({ sodium, anchor, certs: c }, readers) {
  return readers.filter((r) => {
    try {
      return c.chainHolds(anchor, c.parse(r.cert), c.parse(r.issuer), sodium.from_hex(r.pk));
    } catch {
      return false;
    }
  });
}

export function toBase64(sodium, bytes) {
  return sodium.to_base64(bytes, sodium.base64_variants.ORIGINAL);
}

export function fromBase64(sodium, text) {
  return sodium.from_base64(text, sodium.base64_variants.ORIGINAL);
}

export function show(id, text) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.hidden = false;
}

export function word(name) {
  // The page's words are written into it per language by the server, in <template>s.
  return document.getElementById(`t-${name}`).content.textContent.trim();
}

// A check-in in the bot's own format (bot/checkins.py, "C2"): fixed width for the choices.
export function checkinBytes(health, threat, note) {
  const text = new TextEncoder().encode(note || "");
  const out = new Uint8Array(5 + text.length);
  out.set([0x43, 0x32, health, threat ? 1 : 0, note ? 1 : 0]);
  out.set(text, 5);
  return out;
}

export function readCheckin(bytes) {
  if (bytes[0] !== 0x43 || bytes[1] !== 0x32) return null;
  return {
    health: bytes[2],
    threat: bytes[3] === 1,
    note: bytes[4] ? new TextDecoder().decode(bytes.subarray(5)) : null,
  };
}

// A help request in the bot's own format (bot/cases.py, "H2"): fixed width for the choices,
// so "danger, right now" and "housing, this week" seal to the same length. The lists are
// bot/cases.py's ALL_CATEGORIES and ALL_URGENCIES, by position (the server and the team's
// offline tools read them the same way; tests/webapp checks they agree).
export const CATEGORIES = ["danger", "medical", "money", "housing", "talk", "other", "silent",
  "unreachable", "sealed"];
export const URGENCIES = ["now", "today", "week", "sealed"];

export function helpBytes(category, urgency, text) {
  const c = CATEGORIES.indexOf(category);
  const u = URGENCIES.indexOf(urgency);
  if (c < 0 || c > 5 || u < 0 || u > 2) throw new Error("unknown choice");
  const words = new TextEncoder().encode(text || "");
  const out = new Uint8Array(6 + words.length);
  // duress is never set from the page: see bot/sealed.py
  out.set([0x48, 0x32, c, u, 0, text ? 1 : 0]);
  out.set(words, 6);
  return out;
}

export function readHelp(bytes) {
  if (bytes[0] !== 0x48 || bytes[1] !== 0x32 || bytes.length < 6) return null;
  return {
    category: CATEGORIES[bytes[2]],
    urgency: URGENCIES[bytes[3]],
    text: bytes[5] ? new TextDecoder().decode(bytes.subarray(6)) : null,
  };
}
