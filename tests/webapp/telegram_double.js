// Test double for Telegram's telegram-web-app.js: what a page opened inside Telegram sees.
// The test sets window.__tgInitData (signed with the test bot's token by the test) through
// an init script; sendData and close are recorded for the test to read.
(function () {
  const sent = [];
  const initData = window.__tgInitData || "";
  const params = new URLSearchParams(initData);
  let user = null;
  try { user = JSON.parse(params.get("user") || "null"); } catch (e) { user = null; }
  // SecureStorage outlives a page load, as the phone's Keychain does: kept in the test
  // origin's localStorage (the double's own, never the page's).
  const PREFIX = "__tg_secure:";
  const storage = {
    get(k) { return window.localStorage.getItem(PREFIX + k); },
    set(k, v) { window.localStorage.setItem(PREFIX + k, v); },
    del(k) { window.localStorage.removeItem(PREFIX + k); },
  };
  window.__tgSent = sent;
  window.__tgClosed = false;
  window.Telegram = {
    WebApp: {
      initData: initData,
      initDataUnsafe: { user: user, auth_date: params.get("auth_date") },
      platform: "android",
      version: "8.0",
      ready() {},
      expand() {},
      close() { window.__tgClosed = true; },
      sendData(data) {
        if (typeof data !== "string" || data.length > 4096) throw new Error("WebAppDataInvalid");
        sent.push(data);
      },
      // Telegram's SecureStorage (Keychain / Keystore): getItem and setItem with callbacks.
      SecureStorage: window.__tgNoSecureStorage ? undefined : {
        setItem(key, value, cb) { storage.set(key, value); if (cb) cb(null, true); },
        getItem(key, cb) { cb(null, storage.get(key)); },
        removeItem(key, cb) { storage.del(key); if (cb) cb(null, true); },
      },
      themeParams: {},
    },
  };
})();
