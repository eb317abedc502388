// Model versions: status, metrics, data size, creation time; activate one (admin key).

import { admin, enc, get } from "../api.js";
import {
  ago, card, errorPanel, flattenMetrics, h, loading, num, pill, statusPill, when,
} from "../ui.js";

// the metrics worth a column; everything else is one click away
const HEADLINE = ["valid recall@20", "valid ndcg@20", "test recall@20", "test ndcg@20", "recall@20"];

function headlineMetrics(metrics) {
  const rows = flattenMetrics(metrics);
  const chosen = HEADLINE.map((k) => rows.find(([label]) => label === k)).filter(Boolean);
  const shown = chosen.length ? chosen : rows.slice(0, 3);
  return h("div", { class: "metric-cells" },
    shown.map(([k, v]) => h("span", { class: "metric" }, h("span", { class: "muted" }, k),
      " ", h("strong", { class: "num" }, typeof v === "number" ? num(v, 4) : String(v)))),
    rows.length > shown.length ? h("details", { class: "all-metrics" },
      h("summary", {}, `all ${rows.length}`),
      h("table", { class: "kv" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {},
        h("th", {}, k), h("td", { class: "num" }, typeof v === "number" ? num(v, 4) : String(v)))))))
      : null);
}

function row(model, onActivate) {
  const canActivate = model.status === "ready" || model.status === "retired";
  return h("tr", { dataset: { version: model.version, status: model.status },
    class: model.status === "active" ? "is-active" : null },
  h("td", {}, h("div", { class: "version" }, h("strong", { class: "mono" }, model.version),
    model.status === "active" ? pill("★ active", "good") : null,
    model.live ? pill("live here", "info") : null),
  model.note ? h("div", { class: "muted small note" }, model.note) : null),
  h("td", {}, model.model_kind || "–"),
  h("td", {}, statusPill(model.status)),
  h("td", {}, headlineMetrics(model.metrics)),
  h("td", { class: "num" }, model.n_users.toLocaleString("en-US")),
  h("td", { class: "num" }, model.n_items.toLocaleString("en-US")),
  h("td", {}, h("span", { title: when(model.created_at) }, ago(model.created_at)),
    model.activated_at ? h("div", { class: "muted small" }, `activated ${ago(model.activated_at)}`)
      : null),
  h("td", {}, canActivate ? h("button", {
    type: "button", class: "btn btn-small", dataset: { activate: model.version },
    onclick: (event) => onActivate(model.version, event.currentTarget),
  }, "Activate") : null));
}

export async function render(root, ctx) {
  const message = h("div", { id: "models-message" });
  const body = h("div", {}, loading());
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "Models"),
    h("p", { class: "muted" }, "Every registered version. Activating one makes it the live "
      + "model of every API process within a poll interval; retired versions can be "
      + "activated again (rollback).")), message, body);

  const activate = async (version, button) => {
    button.disabled = true;
    message.replaceChildren(h("div", { class: "notice" }, loading(`Activating ${version}…`)));
    try {
      const out = await admin("POST", `/models/${enc(version)}/activate`, undefined,
        { action: `Activating model ${version}` });
      message.replaceChildren(h("div", { class: "success-panel", role: "status" },
        `Model ${out.version} is now active`
        + (out.activated_at ? ` (since ${when(out.activated_at)}).` : ".")));
      ctx.refreshLiveModel();
      await load();
    } catch (error) {
      message.replaceChildren(errorPanel(error, `Could not activate ${version}`));
      button.disabled = false;
    }
  };

  const load = async () => {
    let out;
    try {
      out = await get("/models");
    } catch (error) {
      body.replaceChildren(errorPanel(error, "Could not load the model versions"));
      return;
    }
    if (!out.models.length) {
      body.replaceChildren(card(null, h("p", { class: "notice" }, "No model is registered "
        + "yet: train one with `margo train --out $MARGO_MODEL_DIR/<name>` or start a retrain "
        + "on the Jobs page.")));
      return;
    }
    body.replaceChildren(card(null, h("div", { class: "table-scroll" },
      h("table", { class: "data models-table", id: "models-table" },
        h("thead", {}, h("tr", {}, ["version", "kind", "status", "metrics", "users", "items",
          "created", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, out.models.map((m) => row(m, activate)))))));
  };
  await load();
}
