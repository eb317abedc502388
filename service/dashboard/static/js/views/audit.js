// Reliability audit: the learned weights' distribution per modality (the paper's Fig. 5) and
// the items each modality is least and most trusted for.

import { get, query } from "../api.js";
import { histogram } from "../charts.js";
import {
  card, errorPanel, h, itemLink, loading, modalityColor, modalityTag, num, pill,
} from "../ui.js";

function optionsOf(q) {
  return {
    minPositives: Math.max(0, Number(q.get("min_positives")) || 0),
    bins: Math.min(200, Math.max(2, Number(q.get("bins")) || 30)),
    rows: Math.min(100, Math.max(1, Number(q.get("rows")) || 10)),
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
  const form = h("form", { class: "controls" },
    h("label", { class: "field" }, h("span", {}, "Min. training positives"), minPos),
    h("label", { class: "field" }, h("span", {}, "Bins"), bins),
    h("label", { class: "field" }, h("span", {}, "Rows per table"), rows),
    h("button", { type: "submit", class: "btn btn-primary" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/audit${query({
      min_positives: Number(minPos.value) || 0, bins: bins.value, rows: rows.value,
    })}`;
  });
  for (const el of [bins, rows]) el.addEventListener("change", () => form.requestSubmit());
  return form;
}

function histogramCard(m, edges) {
  return h("figure", { class: "hist-card", dataset: { modality: m.modality } },
    h("figcaption", {}, modalityTag(m.modality),
      h("span", { class: "muted" }, ` mean ${num(m.mean)} · median ${num(m.quantiles.p50)} · `
        + `p10–p90 ${num(m.quantiles.p10)}–${num(m.quantiles.p90)}`)),
    histogram({ modality: m.modality, counts: m.counts, edges, quantiles: m.quantiles }));
}

function itemsTable(body, caption) {
  const others = body.items.length ? Object.keys(body.items[0].weights) : [];
  return h("table", {
    class: "data audit-table", dataset: { modality: body.modality, order: body.order },
  },
  h("caption", {}, caption),
  h("thead", {}, h("tr", {},
    h("th", {}, "item"),
    h("th", { class: "num" }, `${body.modality} weight`),
    others.filter((o) => o !== body.modality).map((o) => h("th", { class: "num" }, o)),
    h("th", { class: "num" }, "positives"))),
  h("tbody", {}, body.items.map((it) => h("tr", { dataset: { itemId: it.item_id } },
    h("td", {}, itemLink(it.item_id, it.title || it.item_id),
      it.title ? h("span", { class: "muted mono small" }, ` ${it.item_id}`) : null),
    h("td", { class: "num" }, h("span", {
      class: "inline-dot", style: { background: modalityColor(body.modality) },
    }), num(it.weight, 4)),
    others.filter((o) => o !== body.modality).map((o) => h("td", { class: "num" }, num(it.weights[o], 4))),
    h("td", { class: "num" }, String(it.positives),
      it.low_confidence ? pill("low conf.", "warn", { title: "few training positives" }) : null)))));
}

async function tablesFor(modality, opts, container) {
  const params = { modality, limit: opts.rows, min_positives: opts.minPositives };
  try {
    const [least, most] = await Promise.all([
      get(`/reliability${query({ ...params, order: "asc" })}`),
      get(`/reliability${query({ ...params, order: "desc" })}`),
    ]);
    container.replaceChildren(
      itemsTable(least, `Least trusted ${modality}`),
      itemsTable(most, `Most trusted ${modality}`));
  } catch (error) {
    container.replaceChildren(errorPanel(error, `Could not load the ${modality} tables`));
  }
}

export async function render(root, ctx) {
  const opts = optionsOf(ctx.query);
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "Reliability audit"),
    h("p", { class: "muted" }, "Learned weights say how much the model trusts each item's "
      + "image, text, … Low weights flag content worth a look: a photo that does not show the "
      + "product, a description that says little about it.")),
  card(null, controls(opts)));
  const charts = h("div", {}, loading());
  root.append(charts);
  let hist;
  try {
    hist = await get(`/reliability/histogram${query({ bins: opts.bins, min_positives: opts.minPositives })}`);
  } catch (error) {
    charts.replaceChildren(errorPanel(error, "Could not load the weight distribution"));
    return;
  }
  charts.replaceChildren(card(`Weight distribution · model ${hist.model_version}`,
    h("p", { class: "muted" }, `${hist.n_items.toLocaleString("en-US")} items`
      + (hist.min_positives ? ` with at least ${hist.min_positives} training positives` : "")
      + "; dashed line: median."),
    h("div", { class: "hist-grid", id: "histograms" },
      hist.modalities.map((m) => histogramCard(m, hist.edges)))));
  const tables = hist.modalities.map((m) => {
    const box = h("div", { class: "grid-2 audit-tables" }, loading());
    root.append(card(h("span", {}, modalityTag(m.modality), " items"), box));
    return tablesFor(m.modality, opts, box);
  });
  await Promise.all(tables);
}
