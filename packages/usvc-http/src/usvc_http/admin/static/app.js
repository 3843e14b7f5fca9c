// usvc admin dashboard. Every value reaches the page through textContent or attributes set
// by DOM APIs, never parsed as HTML: a payload holding "<script>" shows as text.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const REFRESH_MS = 5000;
const STATUSES = ["Ready", "Assigned", "Processing", "Completed", "Failed"];
const SVG = "http://www.w3.org/2000/svg";
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (init.method && init.method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
  const response = await fetch("/admin/api" + path, init);
  if (response.status === 401) {
    window.location.assign("/admin/login");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? String(body.detail) : "HTTP " + response.status);
  return body;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
  document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
}

function failure(error) {
  show(el("p", { class: "error", role: "alert" }, "Could not load: " + error.message));
}

function chart(title, points, key, cls) {
  const width = 600, height = 140, pad = 24;
  const peak = Math.max(1, ...points.map((p) => p[key]));
  const step = (width - 2 * pad) / Math.max(1, points.length);
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart " + cls, role: "img" });
  box.append(svg("title", {}, title));
  points.forEach((p, i) => {
    const h = ((height - 2 * pad) * p[key]) / peak;
    const bar = svg("rect", {
      x: pad + i * step + 1, y: height - pad - h, width: Math.max(1, step - 2), height: h,
    });
    bar.append(svg("title", {}, `${new Date(p.minute).toLocaleTimeString()}: ${p[key]}`));
    box.append(bar);
  });
  box.append(svg("text", { x: pad, y: 14 }, `${title} (peak ${peak}/min)`));
  box.append(svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }));
  return el("figure", {}, box);
}

function countsTable(stats) {
  const head = el("tr", {}, el("th", {}, "action"), ...STATUSES.map((s) => el("th", {}, s)),
    el("th", {}, "oldest Ready"));
  const rows = stats.actions.map((a) => el("tr", {},
    el("td", {}, a.action),
    ...STATUSES.map((s) => el("td", { class: "num" }, a.counts[s] || 0)),
    el("td", { class: "num" }, age(a.oldest_ready_age_seconds))));
  return el("table", { class: "counts" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function jobsTable(jobs, withError) {
  const head = el("tr", {}, el("th", {}, "id"), el("th", {}, "action"), el("th", {}, "status"),
    el("th", {}, "attempts"), el("th", {}, "created"),
    withError ? el("th", {}, "error") : null);
  const rows = jobs.map((j) => el("tr", {},
    el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(j.id), class: "job-link" }, j.id)),
    el("td", {}, j.action),
    el("td", { class: "status " + j.status }, j.status + (j.cancel_requested ? " (cancelling)" : "")),
    el("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
    el("td", {}, when(j.created_at)),
    withError ? el("td", { class: "error-cell" },
      el("strong", {}, j.error_code || ""), " ", j.error_message || "") : null));
  return el("table", { class: "jobs" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

async function overview() {
  const stats = await api("/stats?minutes=60");
  const total = el("dl", { class: "totals" }, ...STATUSES.flatMap((s) => [
    el("dt", {}, s), el("dd", { id: "count-" + s }, stats.counts[s] || 0)]),
    el("dt", {}, "oldest Ready"), el("dd", {}, age(stats.oldest_ready_age_seconds)),
    el("dt", {}, "scheduled"), el("dd", { id: "count-scheduled" }, stats.scheduled || 0));
  show(
    el("h1", {}, "Overview"),
    total,
    el("h2", {}, "By action"),
    stats.actions.length ? countsTable(stats) : el("p", {}, "No jobs yet."),
    el("h2", {}, "Last hour"),
    chart("completed", stats.per_minute, "completed", "ok"),
    chart("failed", stats.per_minute, "failed", "bad"),
  );
}

async function jobList(status) {
  const query = status ? "?status=" + status + "&limit=100" : "?limit=100";
  const page = await api("/jobs" + query);
  show(
    el("h1", {}, status ? "Failed jobs" : "All jobs"),
    page.jobs.length ? jobsTable(page.jobs, Boolean(status)) : el("p", {}, "None."),
  );
}

function block(title, value) {
  const text = value === null || value === undefined ? "–" : JSON.stringify(value, null, 2);
  return el("section", {}, el("h2", {}, title), el("pre", { class: "json" }, text));
}

async function act(path, id) {
  const note = document.getElementById("action-note");
  try {
    const result = await api(`/jobs/${encodeURIComponent(id)}/${path}`, { method: "POST" });
    note.textContent = path === "retry" ? "Retried." : "Cancel: " + result.outcome + ".";
  } catch (error) {
    note.textContent = "Failed: " + error.message;
  }
  await render();
}

async function jobPage(id) {
  const job = await api("/jobs/" + encodeURIComponent(id));
  const buttons = el("p", { class: "buttons" });
  if (job.status === "Failed") {
    buttons.append(el("button", { id: "retry", onclick: () => act("retry", job.id) }, "Retry"));
  }
  if (["Ready", "Assigned", "Processing"].includes(job.status) && !job.cancel_requested) {
    buttons.append(el("button", { id: "cancel", class: "danger", onclick: () => act("cancel", job.id) },
      "Cancel"));
  }
  const facts = [
    ["status", (job.scheduled ? "Scheduled" : job.status) +
      (job.cancel_requested ? " (cancel requested)" : "")],
    ["due", when(job.run_at)],
    ["idempotency key", job.idempotency_key || "–"], ["unique key", job.unique_key || "–"],
    ["lease owner", job.lease_owner || "–"], ["lease expires", when(job.lease_expires_at)],
    ["action", job.action], ["attempts", `${job.attempts}/${job.max_attempts}`],
    ["priority", job.priority], ["token", job.token], ["created", when(job.created_at)],
    ["started", when(job.started_at)], ["finished", when(job.finished_at)],
    ["runtime", job.runtime_ms === null ? "–" : job.runtime_ms.toFixed(1) + " ms"],
  ];
  const previous = document.getElementById("action-note");
  show(
    el("h1", {}, "Job ", el("span", { id: "job-id" }, job.id)),
    el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { id: "job-" + k }, v)])),
    buttons,
    el("p", { id: "action-note", role: "status" }, previous ? previous.textContent : ""),
    job.error_code ? el("section", { class: "error-box" }, el("h2", {}, "Error"),
      el("p", {}, el("strong", { id: "job-error-code" }, job.error_code)),
      el("pre", { id: "job-error-message" }, job.error_message || "")) : null,
    attemptsTable(job.attempt_history || []),
    block("Payload", job.payload_error ? job.payload_error : job.payload),
    block("Result", job.results),
  );
}

function attemptsTable(attempts) {
  if (!attempts.length) return null;
  const head = el("tr", {}, ...["#", "worker", "started", "ended", "outcome", "error"].map(
    (name) => el("th", {}, name)));
  const rows = attempts.map((a) => el("tr", {},
    el("td", { class: "num" }, a.number), el("td", {}, a.worker_id || "–"),
    el("td", {}, when(a.started_at)), el("td", {}, when(a.finished_at)), el("td", {}, a.outcome),
    el("td", { class: "error-cell" }, el("strong", {}, a.error_code || ""), " ",
      a.error_message || "")));
  return el("section", { id: "attempts" }, el("h2", {}, "Attempts"),
    el("table", { class: "jobs" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

async function render() {
  const hash = window.location.hash || "#/";
  try {
    if (hash.startsWith("#/job/")) await jobPage(decodeURIComponent(hash.slice(6)));
    else if (hash === "#/failed") await jobList("Failed");
    else if (hash === "#/jobs") await jobList(null);
    else await overview();
  } catch (error) {
    if (error.message !== "signed out") failure(error);
  }
}

function start() {
  window.addEventListener("hashchange", () => {
    const note = document.getElementById("action-note");
    if (note) note.textContent = "";
    render();
  });
  render();
  timer = window.setInterval(render, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
