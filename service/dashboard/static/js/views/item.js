// One item: metadata, its reliability scores and weights against the catalogue's, similar items.

import { enc, get } from "../api.js";
import { fractionBelow, histogram, weightBars } from "../charts.js";
import {
  card, errorPanel, fill, h, itemLink, loading, modalityTag, num, pct, pill,
} from "../ui.js";

function metadataTable(item) {
  const rows = [
    ["item id", h("span", { class: "mono" }, item.item_id)],
    ["categories", item.categories.length
      ? h("span", {}, item.categories.map((c) => h("span", { class: "chip" }, c))) : "–"],
  ];
  for (const [k, v] of Object.entries(item.metadata || {})) {
    rows.push([k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)]);
  }
  return h("table", { class: "kv", id: "item-metadata" },
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
}

/** The item's reliability score of one modality, placed among the catalogue's scores. */
function scoreLine(name, rel, scoreHist) {
  const dist = scoreHist ? scoreHist.modalities.find((m) => m.modality === name) : null;
  const below = dist ? fractionBelow(rel.score, dist.counts, scoreHist.edges) : null;
  return h("div", {
    class: "item-score", dataset: { modality: name, score: String(rel.score),
      confidence: String(rel.confidence) },
  },
  h("span", {}, "reliability score ", h("strong", { class: "num" }, rel.score.toFixed(3))),
  h("span", { class: "muted" }, ` · confidence ${rel.confidence.toFixed(2)}`),
  below === null ? null : h("span", { class: "muted" },
    ` · higher than ${pct(below)} of the catalogue`),
  rel.confidence < 0.5 ? pill("low confidence", "warn", {
    title: "little data behind this score",
  }) : null);
}

function reliabilityCard(model, hist, scoreHist) {
  const weights = model.weights;
  const byName = Object.fromEntries((hist ? hist.modalities : []).map((m) => [m.modality, m]));
  const rows = Object.entries(weights).map(([name, w]) => {
    const dist = byName[name];
    const below = dist ? fractionBelow(w, dist.counts, hist.edges) : null;
    const rel = model.reliability ? model.reliability[name] : null;
    return h("div", { class: "item-modality", dataset: { modality: name, weight: String(w) } },
      h("div", { class: "item-modality-head" },
        modalityTag(name),
        h("span", { class: "muted" }, "learned weight"),
        h("strong", { class: "num" }, num(w, 4)),
        below === null ? null : h("span", { class: "muted percentile" },
          `higher than ${pct(below)} of the catalogue`),
        dist ? h("span", { class: "muted" }, ` · median ${num(dist.quantiles.p50)}`) : null),
      rel ? scoreLine(name, rel, scoreHist) : null,
      dist ? histogram({ modality: name, counts: dist.counts, edges: hist.edges,
        quantiles: dist.quantiles, marker: w, height: 130 }) : null);
  });
  return card("Reliability",
    h("p", { class: "muted" }, "The reliability score (0–1) says how far each of this item's "
      + "modalities can be trusted; the learned weight is how much the model leans on it, "
      + "against the distribution over the catalogue (the line marks this item, the dashed "
      + "line the median)."),
    model.reliability ? null : h("p", { class: "notice", id: "item-score-absent" },
      `No reliability score: ${model.reliability_absent || "the model has none"}`),
    weightBars(weights),
    h("div", { class: "facts" },
      h("span", {}, "training positives ", h("strong", {}, String(model.positives))),
      h("span", {}, "popularity ", h("strong", {}, String(model.popularity))),
      h("span", {}, "model ", h("strong", {}, model.model_version)),
      model.low_confidence ? pill("low confidence: few positives", "warn") : null),
    h("div", { class: "item-modalities" }, rows));
}

/** A new item the model did not train on: folded in from its content (or why not yet). */
function foldInCard(fold) {
  if (!fold) return null;
  const prov = fold.provenance;
  const neighbours = prov ? Object.entries(prov.neighbours).map(([m, list]) =>
    h("div", { class: "item-modality", dataset: { modality: m } },
      h("div", { class: "item-modality-head" }, modalityTag(m),
        h("span", { class: "muted" }, "nearest catalogue items")),
      h("ol", { class: "similar-list" }, list.map((n) => h("li", {},
        itemLink(n.item_id, n.item_id),
        h("span", { class: "num similar-score" }, ` ${num(n.similarity)}`)))))) : [];
  return card("New item (fold-in)",
    h("div", { class: "result-meta", id: "item-fold-in" },
      pill(fold.status, fold.status === "folded" ? "good" : "warn"),
      prov ? pill(`weights: ${prov.weight_prior} prior`, "muted") : null),
    fold.detail ? h("p", { class: "muted" }, fold.detail) : null,
    prov ? h("p", { class: "muted" }, "Placed by the model's own item step over its nearest "
      + "catalogue items in each modality, without a retrain; the next retrain learns it.")
      : null,
    ...neighbours);
}

async function similarCard(itemId) {
  const body = h("div", {}, loading());
  const section = card("Similar items", body);
  (async () => {
    try {
      const out = await get(`/items/${enc(itemId)}/similar?k=10`);
      const list = h("ol", { class: "similar-list", id: "similar-list" }, out.items.map((s) =>
        h("li", { dataset: { itemId: s.item_id } }, itemLink(s.item_id, s.item_id),
          h("span", { class: "muted mono" }, ` ${s.item_id}`),
          s.cold ? pill("new", "info", { title: "folded in without a retrain" }) : null,
          h("span", { class: "num similar-score" }, num(s.score)))));
      body.replaceChildren(out.items.length ? list : h("p", { class: "muted" }, "none"));
      await Promise.all(out.items.map(async (s) => {
        try {
          const meta = await get(`/items/${enc(s.item_id)}`);
          const link = list.querySelector(`li[data-item-id="${CSS.escape(s.item_id)}"] a`);
          if (link && meta.title) link.textContent = meta.title;
        } catch {
          // keep the id as the link text
        }
      }));
    } catch (error) {
      body.replaceChildren(errorPanel(error, "Could not load similar items"));
    }
  })();
  return section;
}

export async function render(root, ctx) {
  const itemId = ctx.params[0];
  const status = h("div", {}, loading());
  root.append(status);
  let item;
  try {
    item = await get(`/items/${enc(itemId)}`);
  } catch (error) {
    status.replaceChildren(errorPanel(error, `Could not load item ${itemId}`));
    return;
  }
  let hist = null;
  let scoreHist = null;
  let histError = null;
  if (item.model) {
    try {
      [hist, scoreHist] = await Promise.all([
        get("/reliability/histogram?bins=30"),
        item.model.reliability ? get("/reliability/histogram?bins=30&of=score") : null,
      ]);
    } catch (error) {
      histError = error;
    }
  }
  fill(status,
    h("div", { class: "page-head" },
      h("p", { class: "crumbs" }, h("a", {
        href: "#/audit",
        onclick: (event) => {
          if (history.length > 1) {
            event.preventDefault();
            history.back();
          }
        },
      }, "← Back")),
      h("h1", { id: "item-title" }, item.title || item.item_id),
      h("div", { class: "result-meta" },
        h("span", { class: "mono muted" }, item.item_id),
        item.hidden ? pill("hidden from recommendations", "warn") : null)),
    h("div", { class: "grid-2" },
      card("Metadata", metadataTable(item)),
      item.model ? reliabilityCard(item.model, hist, scoreHist)
        : card("Reliability", h("p", { class: "notice" }, "The live model does not know this "
          + "item yet (it was added after the model was trained); it gets weights and becomes "
          + "recommendable once folded in, or at the next retrain."))),
    item.cold ? foldInCard(item.fold_in) : null,
    histError ? errorPanel(histError, "Could not load the catalogue distribution") : null,
    item.model ? await similarCard(item.item_id) : null);
}
