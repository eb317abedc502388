// The public JSON API, called with the browser session's key (header X-API-Key).
//
// Reads that answer 401 ask for a key once (one dialog however many requests were refused) and
// are retried with it; the key is kept in sessionStorage, so it lives as long as the tab.
// Admin actions send the session key and, when it is missing or its role is too low (401/403),
// ask for an admin key, showing the API's reason, until one works or the dialog is cancelled.

const KEY_STORAGE = "margo.apiKey";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || null;
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  for (const fn of listeners) fn(getKey());
}

export function onKeyChange(fn) {
  listeners.add(fn);
}

/** Who asks the user for a key: set by app.js to the key dialog ({title, message, error}). */
let askUser = async () => null;
export function setKeyPrompt(fn) {
  askUser = fn;
}

let pendingPrompt = null;
function promptOnce(options) {
  if (!pendingPrompt) {
    pendingPrompt = askUser(options).finally(() => { pendingPrompt = null; });
  }
  return pendingPrompt;
}

function errorFrom(status, statusText, body) {
  if (body && typeof body === "object" && typeof body.detail === "string") {
    return new ApiError(status, body.error || `http_${status}`, body.detail);
  }
  if (body && typeof body === "object" && body.detail !== undefined) {
    return new ApiError(status, body.error || `http_${status}`, JSON.stringify(body.detail));
  }
  return new ApiError(status, `http_${status}`, `The server answered ${status} ${statusText}`.trim());
}

/** One request; resolves to the parsed JSON body, rejects with an ApiError. */
export async function request(path, { method = "GET", body, key = getKey() } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server did not answer. Is it still running?");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw errorFrom(response.status, response.statusText, data);
  return data;
}

/** GET with the session key; a 401 asks for a key and tries again. */
export async function get(path) {
  for (;;) {
    const sent = getKey();
    try {
      return await request(path, { key: sent });
    } catch (error) {
      if (error.status !== 401) throw error;
      if (getKey() !== sent) continue; // another request already got a new key: use it
      const key = await promptOnce({
        title: "This server needs an API key",
        message: "Reads need a key with role read (or higher). Ask an operator for one, or "
          + "create it with `margo keys create --role read`.",
        error: sent ? error.detail : null,
      });
      if (!key) throw error;
      if (getKey() !== key) setKey(key);
    }
  }
}

/** A write that needs an admin key: asks for one until it works or the user cancels. */
export async function admin(method, path, body, { action = "This action" } = {}) {
  let key = getKey();
  let reason = null;
  for (;;) {
    if (!key) {
      key = await promptOnce({
        title: "Admin key needed",
        message: `${action} needs an API key with role admin.`,
        error: reason,
        admin: true,
      });
      if (!key) throw new ApiError(0, "cancelled", `${action} needs an admin API key: cancelled.`);
    }
    try {
      const out = await request(path, { method, body, key });
      if (key !== getKey()) setKey(key); // an admin key may read too: keep it for the session
      return out;
    } catch (error) {
      if (error.status !== 401 && error.status !== 403) throw error;
      reason = error.detail;
      key = null;
    }
  }
}

/** Query string from an object; arrays repeat the key, empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;
