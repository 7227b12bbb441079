// The demo page: one phone per person, redrawn from the server's state as it changes
// (server-sent events). Every click or text becomes that person's Telegram update on the
// local Bot API; nothing here decides anything the bot decides.

const phones = new Map(); // pane key -> {root, messages, keyboard, replyBar, input, error, ...}
const ROLE_NAMES = { admin: "admin", caseworker: "caseworker", member: "member", stranger: "not invited" };

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ ok: false, error: "No answer." }));
  if (!response.ok || !answer.ok) throw new Error(answer.error || `Error ${response.status}`);
  return answer;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// Telegram's entities count UTF-16 units, as JavaScript strings do: slice directly.
function formatted(text, entities) {
  const node = el("div", { class: "text" });
  if (!entities || entities.length === 0) {
    node.textContent = text;
    return node;
  }
  const styles = Array.from({ length: text.length }, () => []);
  for (const entity of entities) {
    for (let i = entity.offset; i < Math.min(text.length, entity.offset + entity.length); i++) {
      styles[i].push(`e-${entity.type}`);
    }
  }
  let start = 0;
  for (let i = 1; i <= text.length; i++) {
    if (i === text.length || styles[i].join(" ") !== styles[start].join(" ")) {
      const piece = text.slice(start, i);
      const classes = styles[start].join(" ");
      node.append(classes ? el("span", { class: classes }, piece) : piece);
      start = i;
    }
  }
  return node;
}

function showError(phone, message) {
  phone.error.textContent = message;
  clearTimeout(phone.errorTimer);
  phone.errorTimer = setTimeout(() => { phone.error.textContent = ""; }, 5000);
}

function setReply(phone, message) {
  phone.replyTo = message ? message.id : null;
  phone.replyBar.hidden = !message;
  if (message) {
    phone.replyText.textContent = `Replying to: ${message.text ?? `<${message.kind}>`}`;
    phone.input.focus();
  }
  for (const node of phone.messages.querySelectorAll(".msg")) {
    node.classList.toggle("replying", Number(node.dataset.id) === phone.replyTo);
  }
}

function makePhone(pane) {
  const phone = { key: pane.key, seen: new Map(), toasts: new Set(), replyTo: null, first: true };
  phone.messages = el("div", { class: "messages" });
  phone.keyboard = el("div", { class: "keyboard", hidden: "" });
  phone.replyText = el("span");
  phone.replyBar = el("div", { class: "reply-bar", hidden: "" }, phone.replyText,
    el("button", { type: "button", title: "Cancel reply", onclick: () => setReply(phone, null) }, "✕"));
  phone.input = el("input", { name: "text", autocomplete: "off", placeholder: "Message", "aria-label": `Message from ${pane.label}` });
  phone.error = el("div", { class: "error", role: "alert" });
  const form = el("form", { class: "compose" }, phone.input, el("button", { type: "submit", title: "Send" }, "➤"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = phone.input.value;
    if (!text.trim()) return;
    try {
      await post("send", { pane: phone.key, text, reply_to: phone.replyTo });
      phone.input.value = "";
      setReply(phone, null);
    } catch (error) {
      showError(phone, error.message);
    }
  });
  const initial = (pane.label.match(/\p{L}/u) || ["?"])[0];
  phone.root = el("section", { class: `phone ${pane.role}`, "data-pane": pane.key, "aria-label": pane.label },
    el("header", {}, el("div", { class: "avatar" }, initial),
      el("div", { class: "who" }, el("b", {}, pane.label), el("small", {}, ROLE_NAMES[pane.role] || pane.role))),
    phone.messages, phone.keyboard, phone.replyBar, phone.error, form);
  document.getElementById("phones").append(phone.root);
  return phone;
}

function drawMessage(phone, message) {
  const node = el("div", {
    class: `msg ${message.mine ? "mine" : "bot"}`,
    "data-id": message.id,
    title: "Click to reply to this message",
  });
  if (message.reply_to) node.append(el("div", { class: "quote" }, message.reply_to.text));
  node.append(message.text === null
    ? el("div", { class: "text" }, `[${message.kind}]`)
    : formatted(message.text, message.entities));
  if (message.buttons.length) {
    node.append(el("div", { class: "inline" }, message.buttons.map((row) => el("div", { class: "row" },
      row.map((button) => el("button", {
        type: "button",
        disabled: button.data === null ? "" : null,
        onclick: async (event) => {
          event.stopPropagation();
          try {
            await post("press", { pane: phone.key, message_id: message.id, data: button.data });
          } catch (error) {
            showError(phone, error.message);
          }
        },
      }, button.text))))));
  }
  const time = new Date(message.date * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  node.append(el("div", { class: "meta" },
    message.protected ? el("span", { class: "protected", title: "Sent with protect_content: no forwarding or saving" }, "🔒 protected") : null,
    message.edits ? el("span", { class: "edited" }, "edited") : null,
    el("span", {}, time)));
  node.addEventListener("click", () => setReply(phone, message));
  return node;
}

function drawMessages(phone, pane) {
  const box = phone.messages;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const seen = new Map();
  const nodes = pane.messages.map((message) => {
    const node = drawMessage(phone, message);
    const before = phone.seen.get(message.id);
    if (!phone.first && before === undefined) node.classList.add("new");
    else if (before !== undefined && before < message.edits) node.classList.add("flash");
    if (message.id === phone.replyTo) node.classList.add("replying");
    seen.set(message.id, message.edits);
    return node;
  });
  if (phone.replyTo !== null && !seen.has(phone.replyTo)) setReply(phone, null);
  phone.seen = seen;
  box.replaceChildren(...(nodes.length ? nodes : [el("div", { class: "empty" }, "No messages")]));
  if (atBottom || phone.first) box.scrollTop = box.scrollHeight;
  phone.first = false;
}

function drawKeyboard(phone, pane) {
  const rows = pane.keyboard || [];
  phone.keyboard.hidden = rows.length === 0;
  phone.keyboard.replaceChildren(...rows.map((row) => el("div", { class: "row" }, row.map((text) =>
    el("button", {
      type: "button",
      onclick: async () => {
        try { await post("send", { pane: phone.key, text }); } catch (error) { showError(phone, error.message); }
      },
    }, text)))));
}

function drawToasts(phone, pane) {
  for (const toast of pane.toasts) {
    if (phone.toasts.has(toast.id)) continue;
    phone.toasts.add(toast.id);
    if (phone.first) continue;
    const node = el("div", { class: "toast", role: "status" }, toast.text);
    phone.root.append(node);
    setTimeout(() => node.remove(), toast.alert ? 6000 : 3000);
  }
}

function drawLog(log) {
  document.getElementById("log-count").textContent = `(${log.length ? log[log.length - 1].n : 0})`;
  document.getElementById("log-rows").replaceChildren(...log.slice().reverse().map((entry) =>
    el("tr", {},
      el("td", {}, String(entry.n)), el("td", {}, entry.at), el("td", {}, entry.method),
      el("td", {}, entry.chat),
      el("td", { class: entry.status === 200 ? "" : "bad" }, entry.status === null ? "—" : String(entry.status)))));
}

let lastVersion = -1;
let lastPanes = new Map();

function draw(state) {
  if (state.version <= lastVersion) return;
  lastVersion = state.version;
  const timers = state.timers;
  document.getElementById("timers").textContent =
    `Chats clear after ${timers.clear_minutes} min; an unclaimed "right now" request escalates after ${timers.escalate_minutes} min. Click a message to reply to it.`;
  for (const pane of state.panes) {
    let phone = phones.get(pane.key);
    if (!phone) {
      phone = makePhone(pane);
      phones.set(pane.key, phone);
    }
    drawToasts(phone, pane);
    const signature = JSON.stringify([pane.messages, pane.keyboard]);
    if (lastPanes.get(pane.key) !== signature) {
      drawMessages(phone, pane);
      drawKeyboard(phone, pane);
      lastPanes.set(pane.key, signature);
    }
    phone.first = false;
  }
  drawLog(state.log);
}

function connect() {
  const status = document.getElementById("status");
  const events = new EventSource("events");
  events.onopen = () => { status.textContent = "live"; };
  events.onmessage = (event) => draw(JSON.parse(event.data));
  events.onerror = () => {
    status.textContent = "disconnected: is `saferelay demo` still running?";
  };
}

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const kind = event.submitter ? event.submitter.value : "member";
  const buttons = form.querySelectorAll("button");
  buttons.forEach((button) => { button.disabled = true; });
  try {
    await post("people", { kind, language: form.elements.language.value });
  } catch (error) {
    document.getElementById("status").textContent = error.message;
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
});

connect();
