// Entry point: the hash router, the live-model badge and the key button.
//
// Routes:  #/ and #/users/<id>?k=&exclude_seen=&category=   recommendations
//          #/items/<id>                                      one item
//          #/audit?min_positives=&bins=                     reliability audit
//          #/models                                          model versions
//          #/jobs  and  #/jobs/<id>                          retraining jobs

import { get, getKey, onKeyChange, request, setKey, setKeyPrompt } from "./api.js";
import { askKey } from "./keydialog.js";
import { clear, errorPanel, h, toast } from "./ui.js";
import * as audit from "./views/audit.js";
import * as item from "./views/item.js";
import * as jobs from "./views/jobs.js";
import * as models from "./views/models.js";
import * as users from "./views/users.js";

const ROUTES = [
  [/^\/?$/, "users", users.render],
  [/^\/users\/(.+)$/, "users", users.render],
  [/^\/items\/(.+)$/, "audit", item.render],
  [/^\/audit$/, "audit", audit.render],
  [/^\/models$/, "models", models.render],
  [/^\/jobs$/, "jobs", jobs.renderList],
  [/^\/jobs\/(.+)$/, "jobs", jobs.renderDetail],
];

let cleanups = [];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs = ""] = raw.split("?", 2);
  return { path, query: new URLSearchParams(qs) };
}

async function route() {
  for (const fn of cleanups) fn();
  cleanups = [];
  const { path, query } = parseHash();
  const view = document.getElementById("view");
  const root = h("div", { class: "view-root" });
  clear(view).append(root);
  for (const [pattern, nav, render] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === nav);
    }
    let params;
    try {
      params = match.slice(1).map((p) => decodeURIComponent(p));
    } catch {
      root.append(errorPanel({ detail: `#${path} is not a valid address.` }, "Page not found"));
      return;
    }
    const ctx = {
      params,
      query,
      // views register timers here; they stop when the route changes
      onLeave: (fn) => cleanups.push(fn),
      alive: () => root.isConnected,
      refreshLiveModel,
    };
    try {
      await render(root, ctx);
    } catch (error) {
      if (root.isConnected) root.append(errorPanel(error, "This page could not be shown"));
    }
    return;
  }
  root.append(errorPanel({ detail: `There is no page at #${path}.` }, "Page not found"),
    h("p", {}, h("a", { href: "#/" }, "Back to recommendations")));
}

const LIVE_MODEL_POLL_MS = 30000;

/** The badge of the live model; the periodic refresh never asks for a key (``quiet``). */
async function refreshLiveModel({ quiet = false } = {}) {
  const el = document.getElementById("live-model");
  try {
    const body = quiet ? await request("/models") : await get("/models");
    const live = body.models.find((m) => m.version === body.live);
    el.textContent = live ? `live: ${live.version} · ${live.model_kind || "model"}` : "no live model";
    el.className = `pill ${live ? "pill-good" : "pill-warn"}`;
    el.title = live
      ? `${live.version}: ${live.n_items} items, ${live.n_users} users`
      : "train and register a model";
  } catch (error) {
    el.textContent = error.status === 401 ? "key needed" : "model: ?";
    el.className = "pill pill-muted";
    el.title = error.detail || "";
  }
}

function showKeyState() {
  const key = getKey();
  const button = document.getElementById("key-button");
  button.textContent = key ? "Key ✓" : "API key";
  button.title = key ? "a key is set for this tab" : "set an API key for this tab";
}

async function onKeyButton() {
  const key = await askKey({ title: "API key for this tab" });
  if (key) {
    setKey(key);
    toast("Key saved for this tab.");
    route();
    refreshLiveModel();
  }
}

function start() {
  document.documentElement.dataset.started = "1"; // see boot-check.js
  setKeyPrompt(askKey);
  onKeyChange(showKeyState);
  showKeyState();
  document.getElementById("key-button").addEventListener("click", onKeyButton);
  window.addEventListener("hashchange", route);
  window.addEventListener("unhandledrejection", (event) => {
    const e = event.reason || {};
    toast(e.detail || e.message || "An unexpected error happened", "bad");
  });
  route();
  refreshLiveModel();
  // another operator may activate a model meanwhile
  setInterval(() => refreshLiveModel({ quiet: true }), LIVE_MODEL_POLL_MS);
}

start();
