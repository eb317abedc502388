// Retraining jobs: the list, one job's live progress, and a form to start a retrain.

import { admin, enc, get, query } from "../api.js";
import {
  ago, card, duration, errorPanel, h, loading, metricsTable, progressBar, statusPill, when,
} from "../ui.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "rejected"]);
const MODELS = ["margo", "fusion-learned", "fusion-sum", "vbpr", "lightgcn", "bpr"];
const POLL_MS = 1000;

export const isTerminal = (status) => TERMINAL.has(status);

function stageText(job) {
  const parts = [];
  if (job.stage) parts.push(job.stage);
  if (job.epoch !== null && job.epoch !== undefined) parts.push(`epoch ${job.epoch}`);
  return parts.join(" · ") || "–";
}

/** Calls ``tick`` every POLL_MS until it returns false or the page changes. */
function poll(ctx, tick) {
  let timer = null;
  let stopped = false;
  const loop = async () => {
    if (stopped || !ctx.alive()) return;
    let again = false;
    try {
      again = await tick();
    } catch {
      again = true; // a failed poll shows its error in the page; keep trying
    }
    if (again && !stopped && ctx.alive()) timer = setTimeout(loop, POLL_MS);
  };
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
  return loop();
}

function retrainForm(message) {
  const model = h("select", { id: "retrain-model", name: "model" },
    MODELS.map((m) => h("option", { value: m }, m)));
  const epochs = h("input", {
    id: "retrain-epochs", name: "epochs", type: "number", min: "1", max: "1000",
    placeholder: "default",
  });
  const note = h("input", {
    id: "retrain-note", name: "note", type: "text", maxlength: "2000",
    placeholder: "why this retrain (optional)",
  });
  const extra = h("textarea", {
    id: "retrain-hyperparameters", rows: "2", spellcheck: "false",
    placeholder: '{"patience": 5, "lr": 0.001}',
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: "retrain-submit" },
    "Start retrain");
  const form = h("form", { class: "controls controls-wrap", id: "retrain-form" },
    h("label", { class: "field" }, h("span", {}, "Model"), model),
    h("label", { class: "field" }, h("span", {}, "Epochs"), epochs),
    h("label", { class: "field grow" }, h("span", {}, "Note"), note),
    h("details", { class: "field-wide" }, h("summary", {}, "More hyper-parameters (JSON)"), extra),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let hyperparameters = {};
    if (extra.value.trim()) {
      try {
        hyperparameters = JSON.parse(extra.value);
      } catch (error) {
        message.replaceChildren(errorPanel({ detail: `hyper-parameters: not valid JSON (${error.message})` },
          "Could not start the retrain"));
        return;
      }
    }
    if (epochs.value) hyperparameters.epochs = Number(epochs.value);
    const body = { model: model.value, hyperparameters };
    if (note.value.trim()) body.note = note.value.trim();
    submit.disabled = true;
    try {
      const out = await admin("POST", "/retrain", body, { action: "Starting a retrain" });
      location.hash = `#/jobs/${enc(out.job_id)}`;
    } catch (error) {
      message.replaceChildren(errorPanel(error, "Could not start the retrain"));
      const running = /job ([0-9a-f]{8,64})/.exec(error.detail || "");
      if (error.status === 409 && running) {
        message.append(h("p", {}, h("a", { href: `#/jobs/${running[1]}` }, "Watch the running job →")));
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function jobsTable(jobs) {
  return h("div", { class: "table-scroll" }, h("table", { class: "data jobs-table", id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["job", "model", "status", "stage", "progress", "created",
      "took", "result"].map((c) => h("th", {}, c)))),
    h("tbody", {}, jobs.map((j) => h("tr", { dataset: { jobId: j.job_id, status: j.status } },
      h("td", {}, h("a", { href: `#/jobs/${enc(j.job_id)}`, class: "mono" }, j.job_id.slice(0, 8)),
        j.note ? h("div", { class: "muted small note" }, j.note) : null),
      h("td", {}, (j.params && j.params.model) || j.kind),
      h("td", {}, statusPill(j.status)),
      h("td", {}, stageText(j)),
      h("td", { class: "progress-cell" }, progressBar(j.progress)),
      h("td", { title: when(j.created_at) }, ago(j.created_at)),
      h("td", {}, duration(j.started_at, j.finished_at)),
      h("td", {}, j.result_version ? h("a", { href: "#/models", class: "mono" }, j.result_version)
        : "–"))))));
}

export async function renderList(root, ctx) {
  const message = h("div", { id: "jobs-message" });
  const list = h("div", {}, loading());
  root.append(h("div", { class: "page-head" },
    h("h1", {}, "Jobs"),
    h("p", { class: "muted" }, "Retraining runs on a snapshot of the stored interactions; the "
      + "new model goes live only if it is at least as good as the live one.")),
  card("Start a retrain", retrainForm(message), message),
  card("Recent jobs", list));
  await poll(ctx, async () => {
    let out;
    try {
      out = await get(`/jobs${query({ limit: 50 })}`);
    } catch (error) {
      list.replaceChildren(errorPanel(error, "Could not load the jobs"));
      return error.status !== 401 && error.status !== 403;
    }
    list.replaceChildren(out.jobs.length ? jobsTable(out.jobs)
      : h("p", { class: "muted" }, "No job yet."));
    return out.jobs.some((j) => !isTerminal(j.status));
  });
}

function detail(job, onCancel) {
  const open = !isTerminal(job.status);
  return [
    h("div", { class: "page-head" },
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / job"),
      h("h1", {}, "Job ", h("span", { class: "mono" }, job.job_id.slice(0, 8)),
        " ", statusPill(job.status)),
      h("p", { class: "muted" }, `${(job.params && job.params.model) || job.kind}`
        + (job.note ? ` · ${job.note}` : ""))),
    card(null,
      h("div", { class: "job-progress" },
        progressBar(job.progress, `${Math.round(100 * (job.progress || 0))}%`),
        h("div", { class: "facts" },
          h("span", {}, "stage ", h("strong", { id: "job-stage" }, stageText(job))),
          h("span", {}, "started ", h("strong", {}, job.started_at ? ago(job.started_at) : "not yet")),
          h("span", {}, "running for ", h("strong", {}, duration(job.started_at, job.finished_at))),
          job.result_version ? h("span", {}, "result ",
            h("a", { href: "#/models", class: "mono", id: "job-result" }, job.result_version)) : null,
          job.cancel_requested && open ? h("span", { class: "pill pill-warn" }, "cancelling…") : null),
        open ? h("div", {}, h("button", {
          type: "button", class: "btn btn-danger", id: "job-cancel",
          disabled: job.cancel_requested, onclick: onCancel,
        }, "Cancel job")) : null)),
    job.error ? h("div", {
      class: { rejected: "notice notice-warn", cancelled: "notice" }[job.status] || "error-panel",
      role: "alert", id: "job-error",
    },
    h("strong", {}, job.status === "rejected" ? "Not activated: the quality gate said no"
      : job.status === "cancelled" ? "Cancelled" : "Error"),
    h("pre", { class: "error-detail" }, job.error)) : null,
    h("div", { class: "grid-2" },
      card("Latest metrics", metricsTable(job.metrics, {
        empty: "no validation yet", first: ["recall@20", "ndcg@20", "loss", "gate"],
      })),
      card("Details", h("table", { class: "kv" }, h("tbody", {},
        [["job id", h("span", { class: "mono" }, job.job_id)],
          ["created", when(job.created_at)],
          ["started", when(job.started_at)],
          ["finished", when(job.finished_at)],
          ["last heartbeat", job.heartbeat_at ? ago(job.heartbeat_at) : "–"],
          ["model", (job.params && job.params.model) || "–"],
          ["hyper-parameters", h("code", {}, JSON.stringify((job.params || {}).hyperparameters || {}))],
          ["effective", job.params && job.params.effective ? h("details", {},
            h("summary", {}, "full training configuration"),
            h("pre", { class: "config" }, JSON.stringify(job.params.effective, null, 1))) : "–"],
        ].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))))),
  ];
}

export async function renderDetail(root, ctx) {
  const jobId = ctx.params[0];
  const message = h("div", { id: "job-message" });
  const body = h("div", { id: "job-detail" }, loading());
  root.append(message, body);
  let last = null;
  const onCancel = async () => {
    try {
      await admin("DELETE", `/jobs/${enc(jobId)}`, undefined, { action: "Cancelling a job" });
      message.replaceChildren(h("div", { class: "success-panel" }, "Cancellation requested: a "
        + "running job stops at its next epoch."));
    } catch (error) {
      message.replaceChildren(errorPanel(error, "Could not cancel the job"));
    }
  };
  await poll(ctx, async () => {
    let job;
    try {
      job = await get(`/jobs/${enc(jobId)}`);
    } catch (error) {
      body.replaceChildren(errorPanel(error, `Could not load job ${jobId}`));
      return error.status !== 404 && error.status !== 401 && error.status !== 403;
    }
    body.dataset.status = job.status;
    body.replaceChildren(...detail(job, onCancel).filter(Boolean));
    if (isTerminal(job.status) && last && !isTerminal(last)) ctx.refreshLiveModel();
    last = job.status;
    return !isTerminal(job.status);
  });
}
