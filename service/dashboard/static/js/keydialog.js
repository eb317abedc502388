// The API key dialog: asks for a key and resolves to it (or to null when cancelled).

import { getKey, setKey } from "./api.js";
import { toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

function masked(key) {
  return key.length > 12 ? `${key.slice(0, 12)}…` : key;
}

/** Open the dialog; resolves to the key typed in, or null. */
export function askKey({ title = "API key", message = "", error = null, admin = false } = {}) {
  const dialog = $("key-dialog");
  const input = $("key-input");
  const errorEl = $("key-dialog-error");
  $("key-dialog-title").textContent = title;
  const current = getKey();
  $("key-dialog-message").textContent = message
    || (current ? `This tab uses the key ${masked(current)}.` : "No key is set in this tab.");
  errorEl.textContent = error ? `The API said: ${error}` : "";
  errorEl.hidden = !error;
  input.value = "";
  input.placeholder = admin ? "an admin key, mgk_…" : "mgk_…";
  $("key-forget").hidden = !current;
  dialog.dataset.mode = admin ? "admin" : "read";

  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      $("key-cancel").removeEventListener("click", onCancel);
      $("key-forget").removeEventListener("click", onForget);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const form = $("key-form");
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) {
        errorEl.textContent = "Enter a key, or cancel.";
        errorEl.hidden = false;
        input.focus();
        return;
      }
      done(key);
    };
    const onCancel = (event) => {
      event.preventDefault();
      done(null);
    };
    const onForget = () => {
      setKey(null);
      toast("The key is forgotten in this tab.");
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    $("key-cancel").addEventListener("click", onCancel);
    $("key-forget").addEventListener("click", onForget);
    dialog.addEventListener("cancel", onCancel);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}
