// DOM helpers, formatting and the shared bits of every view. Everything the API returns goes
// into the page as text nodes or attributes (never as HTML), so item titles cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.setAttribute("class", value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value); // CSSOM: allowed by the CSP
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value" && "value" in el) el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("a", {href: "#/x", class: "link"}, "text", otherNode) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Replace el's children, skipping null/false ones (replaceChildren would print "null"). */
export function fill(el, ...children) {
  return append(clear(el), children);
}

// -- formatting ---------------------------------------------------------------------------------
export function num(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e6) return x.toLocaleString("en-US");
  const abs = Math.abs(x);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return x.toExponential(2);
  return x.toFixed(digits);
}

export function signed(x, digits = 3) {
  return (x > 0 ? "+" : x < 0 ? "−" : "") + num(Math.abs(x), digits);
}

export function pct(x, digits = 0) {
  return `${(100 * x).toFixed(digits)}%`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
}

export function ago(iso) {
  if (!iso) return "";
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(s)) return "";
  if (s < 5) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function duration(startIso, endIso) {
  if (!startIso) return "–";
  const ms = (endIso ? new Date(endIso) : new Date()) - new Date(startIso);
  if (!Number.isFinite(ms) || ms < 0) return "–";
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// -- modality colours: stable per name, the same on every page -------------------------------------
const KNOWN = { image: "#4c7be8", text: "#ef8f3a", meta: "#3aa57a", tags: "#a45fd1", id: "#7d8596" };
const PALETTE = ["#d1495b", "#2a9dbf", "#c9a227", "#6b5bd6", "#5aa64a", "#d16ba5", "#8c6d46"];

export function modalityColor(name) {
  if (KNOWN[name]) return KNOWN[name];
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

export function swatch(name) {
  return h("span", { class: "swatch", style: { background: modalityColor(name) } });
}

export function modalityTag(name) {
  return h("span", { class: "modality-tag" }, swatch(name), name);
}

// -- building blocks ----------------------------------------------------------------------------
export function pill(text, kind = "muted", attrs = {}) {
  return h("span", { ...attrs, class: `pill pill-${kind}` }, text);
}

const STATUS_KIND = {
  active: "good", ready: "info", retired: "muted", rejected: "warn", failed: "bad",
  queued: "info", running: "live", succeeded: "good", cancelled: "muted",
};

export function statusPill(status) {
  return pill(status, STATUS_KIND[status] || "muted", { dataset: { status } });
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", { class: "card-title" }, title) : null,
    ...children);
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading" }, h("span", { class: "spinner", "aria-hidden": "true" }),
    text);
}

export function itemLink(itemId, title) {
  return h("a", { class: "item-link", href: `#/items/${encodeURIComponent(itemId)}` },
    title || itemId);
}

export function progressBar(fraction, label) {
  const f = Math.max(0, Math.min(1, Number(fraction) || 0));
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": String(Math.round(f * 100)) },
  h("div", { class: "progress-fill", style: { width: pct(f, 1) } }),
  h("span", { class: "progress-label" }, label ?? pct(f)));
}

/** A readable message for a failed request: what failed, the API's words, and the status. */
export function errorPanel(error, what) {
  const status = error && error.status;
  const code = error && error.code;
  const detail = (error && (error.detail || error.message)) || String(error);
  const meta = status ? `HTTP ${status}${code ? ` · ${code}` : ""}` : code || "";
  return h("div", { class: "error-panel", role: "alert" },
    h("strong", {}, what || "Something went wrong"),
    h("p", { class: "error-detail" }, detail),
    meta ? h("p", { class: "error-meta" }, meta) : null);
}

let toastTimer = null;
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

/** Metrics of a model or job as [label, value] rows: nested {valid: {...}} becomes "valid recall@20". */
export function flattenMetrics(metrics, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(metrics || {})) {
    const label = prefix ? `${prefix} ${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      rows.push(...flattenMetrics(value, label));
    } else {
      rows.push([label, value]);
    }
  }
  return rows;
}

/** ``first``: rows whose label contains one of these words come first, in that order. */
export function metricsTable(metrics, { empty = "no metrics yet", first = [] } = {}) {
  const rank = ([label]) => {
    const i = first.findIndex((word) => label.includes(word));
    return i < 0 ? first.length : i;
  };
  const rows = flattenMetrics(metrics)
    .map((row, i) => [row, i])
    .sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1])
    .map(([row]) => row);
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", { class: "kv metrics" },
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { class: "num" },
      typeof v === "number" ? num(v, 4) : String(v))))));
}
