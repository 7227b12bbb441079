// The staff page: this phone's keys (made here, kept in Telegram's secure storage, their
// fingerprint shown to compare); records sealed to it opened here once its own certificate
// chain holds from the pinned team key; replies sealed here to the member's phone and the
// team key. On an admin's phone certified by the team key (a certifier), the phones waiting
// for approval, each with a fingerprint computed here from its keys, approved by a
// certificate this phone signs.
import { RecordTooLong } from "./envelope.mjs";
import {
  NoSecureStorage, api, deviceKey, fromBase64, newRecordId, readCheckin, readHelp, recipients,
  show, signingKey, start, toBase64, word,
} from "./common.mjs";

const ctx = await start();
const { sodium, tg, team, anchor, box, certs } = ctx;

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

// Approve or reject the phones waiting, on a certifier's phone only (the server checks the
// same, and every member's page checks the certificate again before sealing to it).
async function approvals(key, signer, mine) {
  const section = document.getElementById("approvals");
  section.hidden = false;
  const pk = sodium.to_hex(key.publicKey);
  if (!certs.isCertifier(anchor, mine) || !sodium.memcmp(mine.cert.signingKey, signer.publicKey)) {
    document.getElementById("untrusted").hidden = false;
    section.dataset.state = "untrusted";
    return;
  }
  const { devices } = await api(tg, "pending", { public_key: pk });
  const list = document.getElementById("waiting");
  for (const device of devices) {
    const cert = {
      role: device.role, id: device.id, publicKey: sodium.from_hex(device.pk),
      signingKey: sodium.from_hex(device.spk), issuer: signer.publicKey,
    };
    const item = element("li");
    item.dataset.deviceId = device.id;
    const fp = element("p", box.fingerprint(cert.publicKey, cert.signingKey));
    fp.className = "fingerprint";
    const approve = element("button", word("approve"));
    const reject = element("button", word("reject"));
    approve.type = reject.type = "button";
    approve.className = "approve";
    reject.className = "reject";
    const decide = (call, body, done) => async () => {
      approve.disabled = reject.disabled = true;
      try {
        await api(tg, call, { public_key: pk, device_id: device.id, ...body });
        item.replaceChildren(element("p", `${device.name} · ${word(done)}`));
      } catch {
        approve.disabled = reject.disabled = false;
        show("status", word("failed"));
      }
    };
    approve.addEventListener("click", decide("approve",
      { signature: sodium.to_hex(certs.sign(cert, signer.privateKey)) }, "approved"));
    reject.addEventListener("click", decide("reject", {}, "rejected"));
    item.append(element("p", `${device.name} · ${word(`role-${device.role}`)}`), fp, approve, reject);
    list.append(item);
  }
  document.getElementById("none-waiting").hidden = devices.length > 0;
  section.dataset.state = "ready";
}

async function main() {
  let key;
  let signer;
  try {
    key = await deviceKey(ctx);
    signer = await signingKey(ctx);
  } catch (e) {
    if (e instanceof NoSecureStorage) return show("status", word("no-storage"));
    throw e;
  }
  document.getElementById("fingerprint").textContent =
    box.fingerprint(key.publicKey, signer.publicKey);
  const pk = sodium.to_hex(key.publicKey);
  const me = await api(tg, "device", { public_key: pk, signing_key: sodium.to_hex(signer.publicKey) });
  // This phone reads only once its own chain holds from the pinned key, whatever the
  // server's status says: a page told "approved" by a server has nothing sealed to it.
  const mine = certs.parse(me.cert);
  const trusted = me.status === "approved" &&
    certs.chainHolds(anchor, mine, certs.parse(me.issuer), key.publicKey);
  if (me.role === "admin") await approvals(key, signer, trusted ? mine : null);
  if (!trusted) {
    show("status", word("pending"));
    document.body.dataset.ready = "pending";
    return;
  }
  const { records } = await api(tg, "inbox", { public_key: pk });
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
