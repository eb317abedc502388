// Reliability audit: the distribution of the trainer's reliability score per modality, the
// learned weights' distribution (the paper's Fig. 5), and the items each modality is least and
// most reliable for, with both numbers (score and learned weight) side by side.

import { get, query } from "../api.js";
import { histogram } from "../charts.js";
import {
  card, errorPanel, h, itemLink, loading, modalityColor, modalityTag, num, pill,
} from "../ui.js";

const BY = { "": "score (weight if absent)", score: "reliability score", weight: "learned weight" };

function optionsOf(q) {
  const by = q.get("by") || "";
  return {
    minPositives: Math.max(0, Number(q.get("min_positives")) || 0),
    bins: Math.min(200, Math.max(2, Number(q.get("bins")) || 30)),
    rows: Math.min(100, Math.max(1, Number(q.get("rows")) || 10)),
    by: by in BY ? by : "",
  };
}

function controls(opts) {
  const minPos = h("input", {
    id: "min-positives", type: "number", min: "0", step: "1", value: String(opts.minPositives),
  });
  const bins = h("select", { id: "bins-select" },
    [10, 20, 30, 50].map((b) => h("option", { value: String(b), selected: b === opts.bins }, String(b))));
  const rows = h("select", { id: "rows-select" },
    [5, 10, 20, 50].map((r) => h("option", { value: String(r), selected: r === opts.rows }, String(r))));
  const by = h("select", { id: "by-select" },
    Object.entries(BY).map(([v, label]) => h("option", { value: v, selected: v === opts.by }, label)));
  const form = h("form", { class: "controls" },
    h("label", { class: "field" }, h("span", {}, "Min. training positives"), minPos),
    h("label", { class: "field" }, h("span", {}, "Bins"), bins),
    h("label", { class: "field" }, h("span", {}, "Rows per table"), rows),
    h("label", { class: "field" }, h("span", {}, "Order items by"), by),
    h("button", { type: "submit", class: "btn btn-primary" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/audit${query({
      min_positives: Number(minPos.value) || 0, bins: bins.value, rows: rows.value, by: by.value,
    })}`;
  });
  for (const el of [bins, rows, by]) el.addEventListener("change", () => form.requestSubmit());
  return form;
}

function histogramCard(m, edges, what) {
  const confidence = m.mean_confidence === null || m.mean_confidence === undefined ? ""
    : ` · mean confidence ${num(m.mean_confidence)}`;
  return h("figure", { class: "hist-card", dataset: { modality: m.modality } },
    h("figcaption", {}, modalityTag(m.modality),
      h("span", { class: "muted" }, ` mean ${num(m.mean)} · median ${num(m.quantiles.p50)} · `
        + `p10–p90 ${num(m.quantiles.p10)}–${num(m.quantiles.p90)}${confidence}`)),
    histogram({ modality: m.modality, counts: m.counts, edges, quantiles: m.quantiles, what }));
}

function scoreCell(it) {
  if (it.score === null) return h("td", { class: "num muted" }, "–");
  return h("td", { class: "num" }, h("span", {
    class: "inline-dot", style: { background: modalityColor(it.modality) },
  }), it.score.toFixed(3));
}

function itemsTable(body, caption) {
  const m = body.modality;
  const scored = body.reliability_absent === null;
  return h("table", {
    class: "data audit-table", dataset: { modality: m, order: body.order, by: body.by },
  },
  h("caption", {}, caption),
  h("thead", {}, h("tr", {},
    h("th", {}, "item"),
    h("th", { class: "num", title: "reliability score in [0, 1]" }, `${m} score`),
    h("th", { class: "num", title: "confidence of the score in [0, 1]" }, "confidence"),
    h("th", { class: "num", title: "the model's learned fusion weight" }, `${m} weight`),
    h("th", { class: "num" }, "positives"))),
  h("tbody", {}, body.items.map((it) => h("tr", {
    dataset: {
      itemId: it.item_id,
      weight: String(it.weight),
      ...(scored ? { score: String(it.score), confidence: String(it.confidence) } : {}),
    },
  },
  h("td", {}, itemLink(it.item_id, it.title || it.item_id),
    it.title ? h("span", { class: "muted mono small" }, ` ${it.item_id}`) : null),
  scoreCell({ ...it, modality: m }),
  h("td", { class: "num" }, scored ? it.confidence.toFixed(2) : "–"),
  h("td", { class: "num" }, num(it.weight, 4)),
  h("td", { class: "num" }, String(it.positives),
    it.low_confidence ? pill("low conf.", "warn", { title: "few training positives" }) : null)))));
}

async function tablesFor(modality, opts, container) {
  const params = { modality, limit: opts.rows, min_positives: opts.minPositives, by: opts.by };
  try {
    const [least, most] = await Promise.all([
      get(`/reliability${query({ ...params, order: "asc" })}`),
      get(`/reliability${query({ ...params, order: "desc" })}`),
    ]);
    const what = least.by === "score" ? "reliable" : "trusted (by weight)";
    container.replaceChildren(
      itemsTable(least, `Least ${what} ${modality}`),
      itemsTable(most, `Most ${what} ${modality}`));
  } catch (error) {
    container.replaceChildren(errorPanel(error, `Could not load the ${modality} tables`));
  }
}

function countLine(hist) {
  return `${hist.n_items.toLocaleString("en-US")} items`
    + (hist.min_positives ? ` with at least ${hist.min_positives} training positives` : "")
    + "; dashed line: median.";
}

function scoreCard(hist) {
  if (hist.reliability_absent) {
    return card(`Reliability score · model ${hist.model_version}`,
      h("p", { class: "notice notice-warn", id: "score-absent" },
        h("strong", {}, "No reliability score in this model. "), hist.reliability_absent,
        " The tables below order items by the learned weight."));
  }
  return card(`Reliability score distribution · model ${hist.model_version}`,
    h("p", { class: "muted" }, "0 = content that does not fit the item, 1 = content that "
      + `can be trusted. ${countLine(hist)}`),
    h("div", { class: "hist-grid", id: "score-histograms" },
      hist.modalities.map((m) => histogramCard(m, hist.edges, "reliability scores"))));
}

export async function render(root, ctx) {
  const opts = optionsOf(ctx.query);
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "Reliability audit"),
    h("p", { class: "muted" }, "The reliability score (0–1, computed by the trainer from how "
      + "well each item's content agrees with its interactions and with its other modalities) "
      + "says how far each item's image, text, … can be trusted: low scores flag content worth "
      + "a look, a photo that does not show the product, a description that says little about "
      + "it. The learned weight is how much the model leans on the modality.")),
  card(null, controls(opts)));
  const charts = h("div", {}, loading());
  root.append(charts);
  const params = { bins: opts.bins, min_positives: opts.minPositives };
  let scores;
  let weights;
  try {
    [scores, weights] = await Promise.all([
      get(`/reliability/histogram${query({ ...params, of: "score" })}`),
      get(`/reliability/histogram${query({ ...params, of: "weight" })}`),
    ]);
  } catch (error) {
    charts.replaceChildren(errorPanel(error, "Could not load the reliability distributions"));
    return;
  }
  charts.replaceChildren(scoreCard(scores), card(`Weight distribution · model ${weights.model_version}`,
    h("p", { class: "muted" }, countLine(weights)),
    h("div", { class: "hist-grid", id: "histograms" },
      weights.modalities.map((m) => histogramCard(m, weights.edges, "weights")))));
  const tables = weights.modalities.map((m) => {
    const box = h("div", { class: "grid-2 audit-tables" }, loading());
    root.append(card(h("span", {}, modalityTag(m.modality), " items"), box));
    return tablesFor(m.modality, opts, box);
  });
  await Promise.all(tables);
}
