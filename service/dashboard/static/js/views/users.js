// Recommendations for one user: top-K with per-modality contribution bars and weights.

import { enc, get, query } from "../api.js";
import { contributionBar, contributionLegend, contributionScale, weightBars } from "../charts.js";
import {
  card, errorPanel, h, itemLink, loading, modalityColor, modalityTag, num, pill,
} from "../ui.js";

const RECENT_USERS = "margo.recentUsers";
const KNOWN_CATEGORIES = "margo.categories";
const K_CHOICES = [5, 10, 20, 50];

function remembered(name) {
  try {
    return JSON.parse(sessionStorage.getItem(name) || "[]");
  } catch {
    return [];
  }
}

function remember(name, values, limit = 50) {
  const merged = [...new Set([...values, ...remembered(name)])].slice(0, limit);
  sessionStorage.setItem(name, JSON.stringify(merged));
}

function optionsOf(query) {
  return {
    k: Number(query.get("k")) || 10,
    excludeSeen: query.get("exclude_seen") !== "false",
    category: query.getAll("category").filter(Boolean),
  };
}

function hashFor(userId, { k, excludeSeen, category }) {
  return `#/users/${enc(userId)}${query({ k, exclude_seen: excludeSeen, category })}`;
}

function controls(userId, opts) {
  const userInput = h("input", {
    id: "user-input", name: "user", type: "search", list: "recent-users", required: true,
    placeholder: "user id, e.g. 0 or u1", value: userId || "", autocomplete: "off",
  });
  const kSelect = h("select", { id: "k-select", name: "k" },
    K_CHOICES.map((k) => h("option", { value: String(k), selected: k === opts.k }, String(k))));
  const seen = h("input", {
    id: "exclude-seen", name: "exclude_seen", type: "checkbox", checked: opts.excludeSeen,
  });
  const category = h("input", {
    id: "category-input", name: "category", type: "search", list: "known-categories",
    placeholder: "any", value: opts.category.join(", "), autocomplete: "off",
  });
  const form = h("form", { class: "controls", id: "user-form" },
    h("label", { class: "field grow" }, h("span", {}, "User"), userInput),
    h("label", { class: "field" }, h("span", {}, "Top K"), kSelect),
    h("label", { class: "field" }, h("span", {}, "Category"), category),
    h("label", { class: "switch" }, seen, h("span", { class: "switch-ui" }),
      h("span", {}, "Exclude seen")),
    h("button", { type: "submit", class: "btn btn-primary", id: "user-submit" }, "Recommend"),
    h("datalist", { id: "recent-users" },
      remembered(RECENT_USERS).map((u) => h("option", { value: u }))),
    h("datalist", { id: "known-categories" },
      remembered(KNOWN_CATEGORIES).map((c) => h("option", { value: c }))));
  // suggest stored users as the id is typed (GET /users?prefix=), recent ones first
  const suggestions = form.querySelector("#recent-users");
  let typed = 0;
  userInput.addEventListener("input", () => {
    const prefix = userInput.value.trim();
    const ticket = ++typed;
    setTimeout(async () => {
      if (ticket !== typed) return; // a later keystroke supersedes this one
      let found = [];
      try {
        found = (await get(`/users${query({ prefix, limit: 20 })}`)).users;
      } catch {
        return; // suggestions are a convenience: the form still works without them
      }
      if (ticket !== typed) return;
      const recent = remembered(RECENT_USERS).filter((u) => u.startsWith(prefix));
      const seen = new Set(recent);
      suggestions.replaceChildren(
        ...recent.map((u) => h("option", { value: u })),
        ...found.filter((u) => !seen.has(u.user_id)).map((u) => h("option", {
          value: u.user_id,
          label: `${u.personal ? "personal" : u.interactions ? "fold-in (new user)"
            : "popular (new user)"}, ${u.interactions} interactions`,
        })));
    }, 200);
  });
  const go = () => {
    const id = userInput.value.trim();
    if (!id) return;
    location.hash = hashFor(id, {
      k: Number(kSelect.value),
      excludeSeen: seen.checked,
      category: category.value.split(",").map((c) => c.trim()).filter(Boolean),
    });
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go();
  });
  // the switches apply at once when a user is already shown
  for (const el of [kSelect, seen]) el.addEventListener("change", () => userId && go());
  return form;
}

function recItem(item, scale) {
  const explained = item.modalities && Object.keys(item.modalities).length;
  return h("li", { class: "rec", dataset: { itemId: item.item_id, score: String(item.score) } },
    h("div", { class: "rec-rank" }, String(item.rank)),
    h("div", { class: "rec-main" },
      h("div", { class: "rec-head" },
        h("div", { class: "rec-title" },
          itemLink(item.item_id, item.title || item.item_id),
          h("span", { class: "rec-id muted" }, item.item_id)),
        h("div", { class: "rec-badges" },
          item.top_modality ? h("span", {
            class: "pill pill-top", title: "the modality with the largest contribution",
            style: { borderColor: modalityColor(item.top_modality) },
          }, "carried by ", modalityTag(item.top_modality)) : null,
          item.cold ? pill("new item", "info", {
            title: "folded in from its content without a retrain (see the item's page)",
          }) : null,
          item.low_confidence && !item.cold ? pill("low confidence", "warn", {
            title: `weights learned from only ${item.positives} training positives`,
          }) : null),
        h("div", { class: "rec-score" }, h("span", { class: "muted" }, "score "),
          h("strong", { class: "num" }, num(item.score)))),
      h("div", { class: "rec-categories" }),
      explained ? h("div", { class: "rec-explain" },
        h("div", { class: "rec-bar" },
          h("div", { class: "rec-label muted" }, "contributions"),
          contributionBar(item.modalities, scale)),
        contributionLegend(item.modalities, item.top_modality),
        h("div", { class: "rec-weights" },
          h("div", { class: "rec-label muted" }, "reliability weights"),
          weightBars(Object.fromEntries(Object.entries(item.modalities)
            .map(([m, t]) => [m, t.weight])), scale.maxWeight)))
        : h("p", { class: "muted small" }, "no per-modality explanation for this item")));
}

/** Categories come from GET /items/{id} (titles come with the recommendations; refreshed here). */
async function fillTitles(list, items) {
  const categories = new Set();
  await Promise.all(items.map(async (item) => {
    try {
      const meta = await get(`/items/${enc(item.item_id)}`);
      const li = list.querySelector(`li[data-item-id="${CSS.escape(item.item_id)}"]`);
      if (!li) return;
      if (meta.title) li.querySelector(".item-link").textContent = meta.title;
      const chips = li.querySelector(".rec-categories");
      for (const c of meta.categories || []) {
        categories.add(c);
        chips.append(h("span", { class: "chip" }, c));
      }
    } catch {
      // an item the catalogue lost keeps its id as title; the list itself is still right
    }
  }));
  remember(KNOWN_CATEGORIES, [...categories].sort(), 200);
}

function intro() {
  return card("Pick a user",
    h("p", {}, "Type a user id to see the model's top-K for them. Each item shows how much "
      + "each modality contributed to its score (the stacked bar: weight × modality score), "
      + "how reliable the model finds the item's content (the weights), and which modality "
      + "carried the recommendation."),
    h("p", { class: "muted" }, "Users the model has never seen get the most popular items "
      + "until they post interactions; then a query folded in from those (fold-in)."));
}

export async function render(root, ctx) {
  const userId = ctx.params[0] || "";
  const opts = optionsOf(ctx.query);
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "Recommendations"),
    h("p", { class: "muted" }, "Why each item was recommended, modality by modality.")),
  card(null, controls(userId, opts)));
  if (!userId) {
    root.append(intro());
    return;
  }
  const results = h("div", { id: "recs" }, loading());
  root.append(results);
  const path = `/users/${enc(userId)}/recommendations`
    + query({ k: opts.k, exclude_seen: opts.excludeSeen, explain: true, category: opts.category });
  let body;
  try {
    body = await get(path);
  } catch (error) {
    results.replaceChildren(errorPanel(error, `Could not load recommendations for ${userId}`));
    return;
  }
  remember(RECENT_USERS, [userId]);
  const scale = contributionScale(body.items.map((it) => it.modalities));
  scale.maxWeight = Math.max(1e-9, ...body.items.flatMap((it) =>
    Object.values(it.modalities || {}).map((t) => t.weight)));
  const list = h("ol", { class: "rec-list", id: "rec-list" }, body.items.map((it) => recItem(it, scale)));
  const summary = h("div", { class: "result-head" },
    h("h2", {}, `Top ${body.items.length} for `, h("span", { class: "mono" }, body.user_id)),
    h("div", { class: "result-meta" },
      pill(`model ${body.model_version}`, "info"),
      pill(body.strategy, body.strategy === "popular" ? "warn" : "good", { id: "strategy" }),
      body.fold_in ? pill(`query updated from ${body.fold_in.interactions} interactions`, "info",
        { id: "fold-in" }) : null,
      opts.excludeSeen ? pill("seen items excluded", "muted") : pill("seen items included", "muted"),
      opts.category.length ? pill(`category: ${opts.category.join(" + ")}`, "muted") : null));
  const notes = [];
  if (body.strategy === "popular") {
    notes.push(h("p", { class: "notice" }, `The model does not know user ${body.user_id}: these `
      + "are the most popular items, with no personal explanation."));
  }
  if (body.strategy === "fold-in") {
    notes.push(h("p", { class: "notice" }, `The model was trained without user ${body.user_id}: `
      + "these come from a query folded in from the interactions they posted since."));
  }
  if (!body.items.length) {
    notes.push(h("p", { class: "notice" }, "No item matches: try another category or include "
      + "seen items."));
  }
  results.replaceChildren(card(null, summary, ...notes, list));
  await fillTitles(list, body.items);
}
