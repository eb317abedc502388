// Charts drawn with plain DOM and SVG: contribution bars, weight bars, histograms.

import { h, modalityColor, num, pct, signed, svg } from "./ui.js";

/**
 * The scale shared by a list of contribution bars: how far the stacks reach left of zero
 * (negative contributions) and right of it (positive ones), so bars compare across items.
 */
export function contributionScale(explanations) {
  let left = 0;
  let right = 0;
  for (const modalities of explanations) {
    let neg = 0;
    let pos = 0;
    for (const term of Object.values(modalities || {})) {
      if (term.contribution < 0) neg -= term.contribution;
      else pos += term.contribution;
    }
    left = Math.max(left, neg);
    right = Math.max(right, pos);
  }
  const span = left + right || 1;
  return { left, right, span };
}

/**
 * A stacked bar of per-modality contributions w_i^m * (e_u^m . e_i^m): positive parts stack
 * right of the zero line, negative parts left of it; a tick marks the net score.
 * Each part carries its exact contribution in data-contribution.
 */
export function contributionBar(modalities, scale) {
  const zero = scale.left / scale.span;
  const track = h("div", { class: "contrib-track" });
  let pos = zero;
  let neg = zero;
  let net = 0;
  for (const [name, term] of Object.entries(modalities)) {
    const width = Math.abs(term.contribution) / scale.span;
    let start;
    if (term.contribution >= 0) {
      start = pos;
      pos += width;
    } else {
      neg -= width;
      start = neg;
    }
    net += term.contribution;
    track.append(h("div", {
      class: `contrib-seg${term.contribution < 0 ? " negative" : ""}`,
      style: { left: pct(start, 4), width: pct(width, 4), background: modalityColor(name) },
      dataset: { modality: name, contribution: String(term.contribution) },
      title: `${name}: contribution ${signed(term.contribution)} = weight ${num(term.weight)}`
        + ` × score ${num(term.score)} (${pct(term.share)} of the total)`,
    }));
  }
  if (scale.left > 0) {
    track.append(h("div", { class: "contrib-zero", style: { left: pct(zero, 4) } }));
  }
  track.append(h("div", {
    class: "contrib-net", style: { left: pct((scale.left + net) / scale.span, 4) },
    title: `net score ${num(net)}`,
  }));
  return track;
}

/** The reliability score of an explanation term, as a tooltip (null when the model has none). */
function reliabilityTitle(term) {
  if (term.reliability === null || term.reliability === undefined) return null;
  return `reliability score ${num(term.reliability)} (confidence `
    + `${num(term.reliability_confidence, 2)})`;
}

/** One line per modality: "image +0.532 = 0.61 × 0.87 · 57%" (reliability score on hover). */
export function contributionLegend(modalities, top) {
  return h("ul", { class: "contrib-legend" },
    Object.entries(modalities).map(([name, term]) => h("li", {
      class: name === top ? "top" : null, title: reliabilityTitle(term),
      dataset: {
        modality: name,
        ...(reliabilityTitle(term) ? { reliability: String(term.reliability) } : {}),
      },
    },
    h("span", { class: "swatch", style: { background: modalityColor(name) } }),
    h("span", { class: "legend-name" }, name),
    h("span", { class: "legend-value num" }, signed(term.contribution)),
    h("span", { class: "legend-formula muted" }, `= ${num(term.weight)} × ${num(term.score)}`),
    h("span", { class: "legend-share muted" }, pct(term.share)))));
}

/** Horizontal bars of an item's reliability weights, scaled to ``max``. */
export function weightBars(weights, max) {
  const top = max || Math.max(...Object.values(weights), 1e-9);
  return h("div", { class: "weight-bars" },
    Object.entries(weights).map(([name, w]) => h("div", {
      class: "weight-row", dataset: { modality: name, weight: String(w) },
      title: `${name}: learned reliability weight ${num(w, 4)}`,
    },
    h("span", { class: "weight-name" }, name),
    h("span", { class: "weight-track" }, h("span", {
      class: "weight-fill",
      style: { width: pct(Math.max(0, Math.min(1, w / top)), 2), background: modalityColor(name) },
    })),
    h("span", { class: "weight-value num" }, num(w)))));
}

/**
 * An SVG histogram of one modality's weights (or other values: ``what`` names them).
 * ``marker``: a value to draw as a line (an item's own weight); ``quantiles``: drawn as a dashed
 * median line.
 */
export function histogram({
  modality, counts, edges, quantiles, marker, height = 180, what = "weights",
}) {
  const W = 420;
  const H = height;
  const pad = { l: 40, r: 10, t: 10, b: 28 };
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const x = (v) => pad.l + ((v - lo) / (hi - lo || 1)) * iw;
  const maxCount = Math.max(...counts, 1);
  const y = (c) => pad.t + ih - (c / maxCount) * ih;
  const color = modalityColor(modality);
  const chart = svg("svg", {
    class: "histogram", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `histogram of ${modality} ${what}`, dataset: { modality },
  });
  // gridlines and y ticks
  for (const f of [0, 0.5, 1]) {
    const c = Math.round(maxCount * f);
    chart.append(
      svg("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: y(c), y2: y(c) }),
      svg("text", { class: "tick", x: pad.l - 6, y: y(c) + 4, "text-anchor": "end" }, String(c)),
    );
  }
  counts.forEach((c, i) => {
    const x0 = x(edges[i]);
    const x1 = x(edges[i + 1]);
    chart.append(svg("rect", {
      class: "bar", x: x0 + 0.5, y: y(c), width: Math.max(0.5, x1 - x0 - 1), height: pad.t + ih - y(c),
      fill: color, dataset: { count: String(c), lo: String(edges[i]), hi: String(edges[i + 1]) },
    }, svg("title", {}, `${num(edges[i])} – ${num(edges[i + 1])}: ${c} items`)));
  });
  // x axis: 5 ticks
  chart.append(svg("line", { class: "axis", x1: pad.l, x2: W - pad.r, y1: pad.t + ih, y2: pad.t + ih }));
  for (let t = 0; t <= 4; t += 1) {
    const v = lo + ((hi - lo) * t) / 4;
    chart.append(svg("text", { class: "tick", x: x(v), y: H - 8, "text-anchor": "middle" }, num(v, 2)));
  }
  if (quantiles && quantiles.p50 !== undefined) {
    chart.append(svg("line", {
      class: "median", x1: x(quantiles.p50), x2: x(quantiles.p50), y1: pad.t, y2: pad.t + ih,
    }, svg("title", {}, `median ${num(quantiles.p50)}`)));
  }
  if (marker !== undefined && marker !== null) {
    const mx = x(Math.max(lo, Math.min(hi, marker)));
    chart.append(
      svg("line", { class: "marker", x1: mx, x2: mx, y1: pad.t - 4, y2: pad.t + ih },
        svg("title", {}, `this item: ${num(marker)}`)),
      svg("circle", { class: "marker-dot", cx: mx, cy: pad.t - 2, r: 3.5 }),
    );
  }
  return chart;
}

/** Fraction of the histogram's items below ``value`` (interpolated inside its bin). */
export function fractionBelow(value, counts, edges) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return 0;
  let below = 0;
  for (let i = 0; i < counts.length; i += 1) {
    const lo = edges[i];
    const hi = edges[i + 1];
    if (value >= hi) below += counts[i];
    else if (value > lo) below += counts[i] * ((value - lo) / (hi - lo || 1));
  }
  return below / total;
}
