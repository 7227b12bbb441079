// The member's page: check-in and message sealed on this phone to the team key and the
// caseworker's devices whose certificates this page has checked; replies opened here with this phone's own key.
import { RecordTooLong } from "./envelope.mjs";
import {
  NoSecureStorage, api, certifiedReaders, checkinBytes, deviceKey, fromBase64, helpBytes,
  newRecordId, recipients, show, start, toBase64, word,
} from "./common.mjs";

const ctx = await start();
const { sodium, tg, team, box } = ctx;
let key = null;

async function ready() {
  try {
    key = await deviceKey(ctx);
  } catch (e) {
    if (e instanceof NoSecureStorage) {
      show("status", word("no-storage"));
      for (const form of document.forms) form.hidden = true;
      return;
    }
    throw e;
  }
  await api(tg, "device", { public_key: sodium.to_hex(key.publicKey) });
  await showReplies();
  document.body.dataset.ready = "1";
}

async function showReplies() {
  const { records } = await api(tg, "replies", { public_key: sodium.to_hex(key.publicKey) });
  const list = document.getElementById("reply-list");
  for (const record of records) {
    const place = { table: "notes", column: "sealed", rowId: record.record_id };
    const text = new TextDecoder().decode(box.open(fromBase64(sodium, record.envelope), place, key));
    const item = document.createElement("li");
    item.textContent = text; // text only, never markup
    list.append(item);
    // Read: its ciphertext leaves the server now.
    await api(tg, "read", { record_id: record.record_id });
  }
  document.getElementById("replies").hidden = records.length === 0;
}

const TABLES = { checkin: "checkins", message: "notes", help: "cases" };

async function send(kind, plaintext, notify, shown = {}) {
  show("status", word("sending"));
  // A "right now" request left unlocked goes to every caseworker: sealed to all their phones.
  const { readers } = await api(tg, "recipients", { urgent: shown.urgency === "now" });
  const recordId = newRecordId(sodium);
  const place = { table: TABLES[kind], column: "sealed", rowId: recordId };
  // Only staff phones whose certificates chain to the pinned team key; the team key always.
  const trusted = certifiedReaders(ctx, readers);
  const envelope = box.seal(plaintext, place, recipients(sodium, team, trusted));
  sodium.memzero(plaintext);
  await api(tg, "submit", {
    kind, record_id: recordId, envelope: toBase64(sodium, envelope), notify, shown,
  });
  show("status", word("sent"));
  for (const form of document.forms) form.reset();
  tg.close();
}

function guarded(handler) {
  return async (event) => {
    event.preventDefault();
    try {
      await handler(event.target);
    } catch (e) {
      show("status", word(e instanceof RecordTooLong ? "too-long" : "failed"));
    }
  };
}

document.getElementById("checkin-form").addEventListener("submit", guarded(async (form) => {
  const data = new FormData(form);
  const health = Number(data.get("health"));
  const threat = data.get("threat") === "1";
  const note = String(data.get("note") || "").trim();
  await send("checkin", checkinBytes(health, threat, note), data.get("notify") === "on");
}));

document.getElementById("help-form").addEventListener("submit", guarded(async (form) => {
  const data = new FormData(form);
  const category = String(data.get("category"));
  const urgency = String(data.get("urgency"));
  const text = String(data.get("words") || "").trim();
  // Only what the member left unlocked leaves the phone readable (bot/sealed.py says why).
  const shown = {};
  if (data.get("show_urgency") === "on") shown.urgency = urgency;
  if (data.get("show_category") === "on") shown.category = category;
  await send("help", helpBytes(category, urgency, text), true, shown);
}));

document.getElementById("message-form").addEventListener("submit", guarded(async (form) => {
  const text = String(new FormData(form).get("text") || "").trim();
  if (!text) return;
  await send("message", new TextEncoder().encode(text), true);
}));

await ready().catch(() => show("status", word("load-failed")));
