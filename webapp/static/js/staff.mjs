// The caseworker's page: this phone's key (made here, kept in Telegram's secure storage,
// its fingerprint shown for the admin to compare); records sealed to it opened here; replies
// sealed here to the member's phone and the team key.
import { RecordTooLong } from "./envelope.mjs";
import {
  NoSecureStorage, api, deviceKey, fromBase64, newRecordId, readCheckin, readHelp, recipients,
  show, start, toBase64, word,
} from "./common.mjs";

const ctx = await start();
const { sodium, tg, team, box } = ctx;

function element(tag, text) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text; // member-written text is text, never markup
  return el;
}

function describe(record, plaintext) {
  if (record.kind === "checkin") {
    const c = readCheckin(plaintext);
    if (!c) return "?";
    const threat = word(c.threat ? "yes" : "no");
    return `${c.health}/5 · ${threat}${c.note ? ` · ${c.note}` : ""}`;
  }
  if (record.kind === "help") {
    const h = readHelp(plaintext);
    if (!h) return "?";
    return `${word(`cat-${h.category}`)} · ${word(`urg-${h.urgency}`)}${h.text ? ` · ${h.text}` : ""}`;
  }
  return new TextDecoder().decode(plaintext);
}

const TABLES = { checkin: "checkins", message: "notes", help: "cases" };

function replyForm(record, key) {
  const form = element("form");
  const area = element("textarea");
  area.name = "text";
  area.maxLength = 600;
  area.required = true;
  area.placeholder = word("reply");
  const button = element("button", word("send"));
  button.type = "submit";
  form.append(area, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const pk = sodium.to_hex(key.publicKey);
      const { readers } = await api(tg, "reply-keys", { public_key: pk, member_id: record.member_id });
      const recordId = newRecordId(sodium);
      const place = { table: "notes", column: "sealed", rowId: recordId };
      const envelope = box.seal(new TextEncoder().encode(area.value.trim()), place,
        recipients(sodium, team, readers));
      await api(tg, "reply", {
        public_key: pk, member_id: record.member_id, record_id: recordId,
        envelope: toBase64(sodium, envelope),
      });
      form.replaceWith(element("p", word("sent")));
    } catch (e) {
      show("status", word(e instanceof RecordTooLong ? "too-long" : "failed"));
    }
  });
  return form;
}

async function main() {
  let key;
  try {
    key = await deviceKey(ctx);
  } catch (e) {
    if (e instanceof NoSecureStorage) return show("status", word("no-storage"));
    throw e;
  }
  document.getElementById("fingerprint").textContent = box.fingerprint(key.publicKey);
  const { status } = await api(tg, "device", { public_key: sodium.to_hex(key.publicKey) });
  if (status !== "approved") {
    show("status", word("pending"));
    document.body.dataset.ready = "pending";
    return;
  }
  const { records } = await api(tg, "inbox", { public_key: sodium.to_hex(key.publicKey) });
  const list = document.getElementById("records");
  for (const record of records) {
    const place = { table: TABLES[record.kind], column: "sealed", rowId: record.record_id };
    const item = element("li");
    item.dataset.recordId = record.record_id;
    const head = element("p", `${record.pseudonym} · ${word(`kind-${record.kind}`)} · ${record.day}`);
    let body;
    try {
      body = element("p", describe(record, box.open(fromBase64(sodium, record.envelope), place, key)));
      body.className = "plaintext";
    } catch {
      body = element("p", "—");
    }
    item.append(head, body);
    if (record.kind !== "checkin") item.append(replyForm(record, key));
    list.append(item);
  }
  if (!records.length) show("status", word("nothing-new"));
  document.body.dataset.ready = "1";
}

await main().catch(() => show("status", word("load-failed")));
