// usvc admin dashboard. Every value reaches the page through textContent or attributes set
// by DOM APIs, never parsed as HTML: a payload holding "<script>" shows as text.
//
// The URL's hash holds the view (#/jobs?status=Failed&action=charge&cursor=...), so a link
// can be shared. A view is mounted once per hash; auto-refresh only updates its data
// region, keeping the filter form, the selection, focus and scroll where they are.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const REFRESH_MS = 5000;
const PAGE_SIZE = 25;
const STATUSES = ["Ready", "Assigned", "Processing", "Completed", "Failed"];
const FILTER_STATUSES = ["", "Scheduled", ...STATUSES];
const FILTER_KEYS = ["status", "action", "error_code", "error_text", "created_after", "created_before"];
const SVG = "http://www.w3.org/2000/svg";

const state = {
  route: null, // the hash the current view was mounted for
  update: null, // refreshes the current view's data
  paused: false,
  selected: new Set(), // job ids ticked on the job list
  busy: false,
  pending: false, // an operator's action came in during a refresh
  forced: false, // this refresh follows an operator's action: redraw even if unchanged
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
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
  if (init.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(init.json);
    delete init.json;
  }
  const response = await fetch("/admin/api" + path, init);
  if (response.status === 401) {
    window.location.assign("/admin/login");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail ? String(detail) : "HTTP " + response.status);
  }
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

function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return value.toFixed(3) + " ms";
  return (value < 10 ? value.toFixed(2) : value.toFixed(0)) + " ms";
}

function stamp() {
  const note = document.getElementById("refreshed");
  note.textContent = (state.paused ? "auto-refresh paused · " : "") + "updated " + new Date().toLocaleTimeString();
}

function fill(node, ...children) {
  // replaceChildren would write "null" for a part left out
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

function chartWidth() {
  // drawn at the page's width, so text keeps its size on a phone and on a wide screen
  return Math.max(300, Math.min(1200, document.getElementById("view").clientWidth - 2));
}

function tableWrap(table) {
  return el("div", { class: "table-wrap" }, table);
}

// --- the confirmation dialog (a <dialog> in the shell: no window.confirm, CSP-safe) -------

function confirmAction(text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel || "Confirm";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    ok.focus();
  });
}

function note(text) {
  const node = document.getElementById("action-note");
  if (node) node.textContent = text;
}

// --- hash routing --------------------------------------------------------------------------

function parseHash() {
  const hash = window.location.hash || "#/";
  const [path, query] = hash.slice(1).split("?", 2);
  return { path, params: new URLSearchParams(query || "") };
}

function go(path, params) {
  const query = params && params.toString();
  window.location.hash = path + (query ? "?" + query : "");
}

// --- charts with time axes -------------------------------------------------------------------

function timeLabel(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function barChart(title, points, key, cls) {
  const width = chartWidth(), height = 150, left = 34, right = 10, top = 22, bottom = 22;
  const peak = Math.max(1, ...points.map((p) => p[key]));
  const inner = width - left - right;
  const step = inner / Math.max(1, points.length);
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart " + cls, role: "img" });
  box.append(svg("title", {}, title));
  points.forEach((p, i) => {
    const h = ((height - top - bottom) * p[key]) / peak;
    const bar = svg("rect", {
      x: left + i * step + 1, y: height - bottom - h, width: Math.max(1, step - 2), height: h,
    });
    bar.append(svg("title", {}, `${timeLabel(new Date(p.minute))}: ${p[key]}`));
    box.append(bar);
  });
  box.append(svg("text", { x: left, y: 14 }, `${title} per minute (peak ${peak})`));
  box.append(svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  box.append(svg("line", { x1: left, y1: top, x2: left, y2: height - bottom }));
  box.append(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end", class: "axis" }, String(peak)));
  box.append(svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end", class: "axis" }, "0"));
  const every = Math.max(1, Math.round(points.length / 6));
  points.forEach((p, i) => {
    if (i % every !== 0) return;
    const x = left + i * step + step / 2;
    box.append(svg("line", { x1: x, y1: height - bottom, x2: x, y2: height - bottom + 4, class: "tick" }));
    box.append(svg("text", { x, y: height - 6, "text-anchor": "middle", class: "axis" }, timeLabel(new Date(p.minute))));
  });
  return el("figure", {}, box);
}

function scatterChart(title, points, start, end) {
  // points: [{t: Date, v: number}] on a time axis from start to end.
  const width = chartWidth(), height = 150, left = 68, right = 24, top = 22, bottom = 22;
  const peak = Math.max(1e-9, ...points.map((p) => p.v));
  const span = Math.max(1, end - start);
  const x = (t) => left + ((t - start) / span) * (width - left - right);
  const y = (v) => height - bottom - (v / peak) * (height - top - bottom);
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart runtime", role: "img" });
  box.append(svg("title", {}, title));
  box.append(svg("text", { x: left, y: 14 }, title));
  box.append(svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  box.append(svg("line", { x1: left, y1: top, x2: left, y2: height - bottom }));
  box.append(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end", class: "axis" }, ms(peak)));
  box.append(svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end", class: "axis" }, "0"));
  for (let i = 0; i <= 6; i++) {
    const t = new Date(start.getTime() + (span * i) / 6);
    const tx = x(t);
    box.append(svg("line", { x1: tx, y1: height - bottom, x2: tx, y2: height - bottom + 4, class: "tick" }));
    const anchor = i === 0 ? "start" : i === 6 ? "end" : "middle";
    box.append(svg("text", { x: tx, y: height - 6, "text-anchor": anchor, class: "axis" }, timeLabel(t)));
  }
  for (const p of points) {
    const dot = svg("circle", { cx: x(p.t), cy: y(p.v), r: 2.5 });
    dot.append(svg("title", {}, `${timeLabel(p.t)}: ${ms(p.v)}`));
    box.append(dot);
  }
  return el("figure", {}, box);
}

// --- overview ------------------------------------------------------------------------------

function countsTable(stats) {
  const head = el("tr", {}, el("th", {}, "action"), ...STATUSES.map((s) => el("th", {}, s)),
    el("th", {}, "scheduled"), el("th", {}, "oldest Ready"));
  const rows = stats.actions.map((a) => el("tr", {},
    el("td", {}, el("a", { href: "#/jobs?" + new URLSearchParams({ action: a.action }) }, a.action)),
    ...STATUSES.map((s) => el("td", { class: "num" }, a.counts[s] || 0)),
    el("td", { class: "num" }, a.scheduled || 0),
    el("td", { class: "num" }, age(a.oldest_ready_age_seconds))));
  return tableWrap(el("table", { class: "counts" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function mountOverview(view) {
  const data = el("div", { id: "overview-data" });
  view.append(el("h1", {}, "Overview"), data);
  return async () => {
    const stats = await api("/stats?minutes=60");
    const total = el("dl", { class: "totals" }, ...STATUSES.flatMap((s) => [
      el("dt", {}, s), el("dd", { id: "count-" + s }, stats.counts[s] || 0)]),
      el("dt", {}, "scheduled"), el("dd", { id: "count-scheduled" }, stats.scheduled || 0),
      el("dt", {}, "oldest Ready"), el("dd", {}, age(stats.oldest_ready_age_seconds)));
    fill(data,
      total,
      stats.paused_actions.length ? el("p", { class: "warning" }, "Paused: " + stats.paused_actions.join(", ")) : null,
      el("h2", {}, "By action"),
      stats.actions.length ? countsTable(stats) : el("p", {}, "No jobs yet."),
      el("h2", {}, "Last hour"),
      barChart("completed", stats.per_minute, "completed", "ok"),
      barChart("failed", stats.per_minute, "failed", "bad"),
    );
  };
}

// --- job list: filter, pages, selection, bulk actions -----------------------------------------

function filterParams(params) {
  const out = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const value = params.get(key);
    if (!value) continue;
    if (key === "status") out.set(key, value.toLowerCase() === "scheduled" ? "scheduled" : value);
    else out.set(key, value);
  }
  return out;
}

function toIso(local) {
  // <input type=datetime-local> gives local wall time; the API wants an aware time.
  return local ? new Date(local).toISOString() : "";
}

function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function filterForm(params) {
  const field = (label, input) => el("label", {}, el("span", {}, label), input);
  const status = el("select", { id: "f-status", name: "status" },
    ...FILTER_STATUSES.map((s) => el("option", { value: s, selected: (params.get("status") || "").toLowerCase() === s.toLowerCase() }, s || "any")));
  const text = (id, name, placeholder) => el("input", { id, name, type: "text", value: params.get(name) || "", placeholder, autocomplete: "off" });
  const after = el("input", { id: "f-created_after", type: "datetime-local", value: toLocal(params.get("created_after")) });
  const before = el("input", { id: "f-created_before", type: "datetime-local", value: toLocal(params.get("created_before")) });
  const form = el("form", { class: "filters", id: "filters" },
    field("status", status),
    field("action", text("f-action", "action", "e.g. charge")),
    field("error code", text("f-error_code", "error_code", "e.g. HANDLER_ERROR")),
    field("error text", text("f-error_text", "error_text", "words in the message")),
    field("created after", after),
    field("created before", before),
    el("div", { class: "filter-buttons" },
      el("button", { type: "submit", id: "apply-filter" }, "Filter"),
      el("button", { type: "button", class: "plain", onclick: () => go("/jobs") }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const set = (key, value) => { if (value) next.set(key, value); };
    set("status", status.value);
    set("action", form.querySelector("#f-action").value.trim());
    set("error_code", form.querySelector("#f-error_code").value.trim());
    set("error_text", form.querySelector("#f-error_text").value.trim());
    set("created_after", toIso(after.value));
    set("created_before", toIso(before.value));
    go("/jobs", next);
  });
  return form;
}

function findForm() {
  const input = el("input", { id: "find-key", type: "search", placeholder: "job id, idempotency key or unique key", autocomplete: "off", required: true });
  const form = el("form", { class: "find", id: "find" }, input, el("button", { type: "submit", id: "find-go" }, "Jump"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    try {
      const found = await api("/find?" + new URLSearchParams({ key }));
      if (found.jobs.length === 1) go("/job/" + encodeURIComponent(found.jobs[0].id));
      else if (found.jobs.length === 0) note(`No job has the id or key “${key}”.`);
      else go("/find", new URLSearchParams({ key }));
    } catch (error) {
      note("Find failed: " + error.message);
    }
  });
  return form;
}

function jobsTable(jobs, selectable) {
  const all = selectable ? el("input", { type: "checkbox", id: "select-page", "aria-label": "select this page" }) : null;
  if (all) {
    all.checked = jobs.length > 0 && jobs.every((j) => state.selected.has(j.id));
    all.addEventListener("change", () => {
      for (const j of jobs) all.checked ? state.selected.add(j.id) : state.selected.delete(j.id);
      document.querySelectorAll("input.row-select").forEach((box) => { box.checked = all.checked; });
      updateBulkBar();
    });
  }
  const head = el("tr", {}, selectable ? el("th", { class: "pick" }, all) : null,
    el("th", {}, "id"), el("th", {}, "action"), el("th", {}, "status"), el("th", {}, "attempts"),
    el("th", {}, "created"), el("th", {}, "error"));
  const rows = jobs.map((j) => {
    let pick = null;
    if (selectable) {
      const box = el("input", { type: "checkbox", class: "row-select", "data-id": j.id, id: "pick-" + j.id, "aria-label": "select job " + j.id });
      box.checked = state.selected.has(j.id);
      box.addEventListener("change", () => {
        box.checked ? state.selected.add(j.id) : state.selected.delete(j.id);
        updateBulkBar();
      });
      pick = el("td", { class: "pick" }, box);
    }
    const shown = j.scheduled ? "Scheduled" : j.status;
    return el("tr", { "data-id": j.id }, pick,
      el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(j.id), class: "job-link" }, j.id)),
      el("td", {}, j.action),
      el("td", { class: "status " + shown }, shown + (j.cancel_requested ? " (cancelling)" : "")),
      el("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
      el("td", {}, when(j.created_at)),
      el("td", { class: "error-cell" }, el("strong", {}, j.error_code || ""), " ", j.error_message || ""));
  });
  return tableWrap(el("table", { class: "jobs" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function updateBulkBar() {
  const n = state.selected.size;
  const count = document.getElementById("selected-count");
  if (count) count.textContent = n === 1 ? "1 job selected" : `${n} jobs selected`;
  for (const id of ["bulk-retry-selected", "bulk-cancel-selected", "clear-selection"]) {
    const button = document.getElementById(id);
    if (button) button.disabled = n === 0;
  }
}

async function bulkSelected(operation) {
  const ids = [...state.selected];
  const verb = operation === "retry" ? "Retry" : "Cancel";
  const text = `${verb} ${ids.length} selected job${ids.length === 1 ? "" : "s"}?` +
    (operation === "retry" ? " Only Failed ones go back to Ready." : " Only unfinished ones are cancelled.");
  if (!(await confirmAction(text, `${verb} ${ids.length}`))) return;
  try {
    const done = await api("/jobs/bulk/" + operation, { method: "POST", json: { ids } });
    state.selected.clear();
    note(`${verb}: ${done.touched} of ${done.matched} selected job${done.matched === 1 ? "" : "s"}.`);
  } catch (error) {
    note(`${verb} failed: ${error.message}`);
  }
  await refresh(true);
}

async function bulkMatching(operation, filter) {
  const verb = operation === "retry" ? "Retry" : "Cancel";
  let counted;
  try {
    counted = await api("/jobs/count?" + filter);
  } catch (error) {
    note("Count failed: " + error.message);
    return;
  }
  const n = counted.count + (counted.capped ? "+" : "");
  if (counted.count === 0) {
    note("No job matches this filter.");
    return;
  }
  const text = `${verb} all ${n} job${counted.count === 1 ? "" : "s"} matching this filter?` +
    (operation === "retry" ? " Only Failed ones go back to Ready." : " Only unfinished ones are cancelled.");
  if (!(await confirmAction(text, `${verb} ${n}`))) return;
  try {
    const done = await api(`/jobs/bulk/${operation}?${filter}`, { method: "POST" });
    note(`${verb}: ${done.touched} of ${done.matched} matching job${done.matched === 1 ? "" : "s"}.`);
  } catch (error) {
    note(`${verb} failed: ${error.message}`);
  }
  await refresh(true);
}

function mountJobs(view, params) {
  const filter = filterParams(params);
  const cursor = params.get("cursor");
  const prev = params.getAll("prev"); // earlier pages' cursors ("" = the first page)
  const pageNumber = prev.length + 1;
  const bar = el("div", { class: "bulk", id: "bulk" },
    el("span", { id: "selected-count" }),
    el("button", { id: "bulk-retry-selected", type: "button", onclick: () => bulkSelected("retry") }, "Retry selected"),
    el("button", { id: "bulk-cancel-selected", type: "button", class: "danger", onclick: () => bulkSelected("cancel") }, "Cancel selected"),
    el("button", { id: "clear-selection", type: "button", class: "plain", onclick: () => {
      state.selected.clear();
      document.querySelectorAll("input.row-select, #select-page").forEach((b) => { b.checked = false; });
      updateBulkBar();
    } }, "Clear selection"),
    el("span", { class: "spacer" }),
    el("button", { id: "bulk-retry-matching", type: "button", onclick: () => bulkMatching("retry", filter) }, "Retry all matching…"),
    el("button", { id: "bulk-cancel-matching", type: "button", class: "danger", onclick: () => bulkMatching("cancel", filter) }, "Cancel all matching…"));
  const data = el("div", { id: "jobs-data" });
  const pager = el("nav", { class: "pager", "aria-label": "pages" });
  const status = params.get("status");
  let lastSeen = null;
  view.append(
    el("h1", {}, status ? `${status} jobs` : "Jobs"),
    findForm(),
    filterForm(params),
    el("p", { id: "action-note", role: "status" }),
    bar, data, pager);
  updateBulkBar();
  return async () => {
    const query = new URLSearchParams(filter);
    query.set("limit", String(PAGE_SIZE));
    if (cursor) query.set("cursor", cursor);
    const page = await api("/jobs?" + query);
    const seen = JSON.stringify(page);
    if (seen === lastSeen && !state.forced) return; // unchanged: no redraw
    lastSeen = seen;
    fill(data, page.jobs.length ? jobsTable(page.jobs, true) : el("p", { class: "empty" }, "No job matches."));
    const previous = el("button", { id: "page-prev", type: "button", class: "plain", disabled: prev.length === 0, onclick: () => {
      const back = new URLSearchParams(filter);
      const earlier = prev.slice(0, -1);
      earlier.forEach((c) => back.append("prev", c));
      if (prev[prev.length - 1]) back.set("cursor", prev[prev.length - 1]);
      go("/jobs", back);
    } }, "← Previous");
    const next = el("button", { id: "page-next", type: "button", class: "plain", disabled: !page.next_cursor, onclick: () => {
      const forward = new URLSearchParams(filter);
      [...prev, cursor || ""].forEach((c) => forward.append("prev", c));
      forward.set("cursor", page.next_cursor);
      go("/jobs", forward);
    } }, "Next →");
    fill(pager, previous, el("span", { id: "page-number" }, `page ${pageNumber}`), next);
    updateBulkBar();
  };
}

function mountFind(view, params) {
  const key = params.get("key") || "";
  const data = el("div");
  view.append(el("h1", {}, "Jobs named by ", el("code", {}, key)), findForm(), el("p", { id: "action-note", role: "status" }), data);
  return async () => {
    const found = await api("/find?" + new URLSearchParams({ key }));
    fill(data, found.jobs.length ? jobsTable(found.jobs, false) : el("p", {}, "None."));
  };
}

// --- one job -------------------------------------------------------------------------------

function block(title, value, id) {
  const text = value === null || value === undefined ? "–" : JSON.stringify(value, null, 2);
  return el("section", { id }, el("h2", {}, title), el("pre", { class: "json" }, text));
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
    tableWrap(el("table", { class: "jobs" }, el("thead", {}, head), el("tbody", {}, ...rows))));
}

async function actOnJob(operation, job) {
  const text = operation === "retry"
    ? `Retry job ${job.id} (${job.action})? It goes back to Ready with fresh attempts.`
    : `Cancel job ${job.id} (${job.action})?` + (job.status === "Processing" ? " Its worker stops it at its next lease renewal." : "");
  if (!(await confirmAction(text, operation === "retry" ? "Retry" : "Cancel job"))) return;
  try {
    const result = await api(`/jobs/${encodeURIComponent(job.id)}/${operation}`, { method: "POST" });
    note(operation === "retry" ? "Retried." : "Cancel: " + result.outcome + ".");
  } catch (error) {
    note("Failed: " + error.message);
  }
  await refresh(true);
}

function mountJob(view, id) {
  const head = el("div", { id: "job-head" });
  const payload = el("div", { id: "job-payload" });
  view.append(el("h1", {}, "Job ", el("span", { id: "job-id" }, id)), head,
    el("p", { id: "action-note", role: "status" }), payload);
  let shownStatus = null;
  let loadedFull = false;
  let lastSeen = null;
  // The payload and result are fetched when the page opens and again only when the status
  // changes (a result appears); the 5 s refresh reads the job without them.
  return async () => {
    const light = await api("/jobs/" + encodeURIComponent(id) + "?payload=false");
    const seen = JSON.stringify(light);
    if (seen === lastSeen && !state.forced) return; // unchanged: leave the page (and any text selection) alone
    lastSeen = seen;
    const key = light.status + "|" + light.cancel_requested + "|" + light.attempts;
    if (!loadedFull || key !== shownStatus) {
      const full = await api("/jobs/" + encodeURIComponent(id));
      fill(payload,
        block("Payload", full.payload_error ? full.payload_error : full.payload, "payload"),
        block("Result", full.results, "result"));
      loadedFull = true;
    }
    shownStatus = key;
    const job = light;
    const buttons = el("p", { class: "buttons" });
    if (job.status === "Failed") {
      buttons.append(el("button", { id: "retry", type: "button", onclick: () => actOnJob("retry", job) }, "Retry"));
    }
    if (["Ready", "Assigned", "Processing"].includes(job.status) && !job.cancel_requested) {
      buttons.append(el("button", { id: "cancel", type: "button", class: "danger", onclick: () => actOnJob("cancel", job) }, "Cancel"));
    }
    const facts = [
      ["status", job.scheduled ? "Scheduled" : job.status, job.cancel_requested ? " (cancel requested)" : ""],
      ["due", when(job.run_at)],
      ["idempotency key", job.idempotency_key || "–"], ["unique key", job.unique_key || "–"],
      ["lease owner", job.lease_owner || "–"], ["lease expires", when(job.lease_expires_at)],
      ["action", job.action], ["attempts", `${job.attempts}/${job.max_attempts}`],
      ["priority", job.priority], ["token", job.token], ["created", when(job.created_at)],
      ["started", when(job.started_at)], ["finished", when(job.finished_at)],
      ["runtime", ms(job.runtime_ms)],
    ];
    fill(head,
      el("dl", { class: "facts" }, ...facts.flatMap(([k, v, extra]) => [
        el("dt", {}, k), el("dd", { id: "job-" + k }, v + (extra || ""))])),
      buttons,
      job.error_code ? el("section", { class: "error-box" }, el("h2", {}, "Error"),
        el("p", {}, el("strong", { id: "job-error-code" }, job.error_code)),
        el("pre", { id: "job-error-message" }, job.error_message || "")) : null,
      attemptsTable(job.attempt_history || []));
  };
}

// --- workers, actions, schedules -----------------------------------------------------------

function mountWorkers(view) {
  const data = el("div", { id: "workers-data" });
  view.append(el("h1", {}, "Workers"), el("p", { class: "muted" },
    "Each worker process records itself with a heartbeat; one silent for two heartbeats is gone (its jobs went back to Ready)."), data);
  return async () => {
    const { workers } = await api("/workers");
    const live = workers.filter((w) => !w.gone).length;
    const head = el("tr", {}, ...["state", "worker", "host", "pid", "version", "started", "last seen", "running", "actions"].map((h) => el("th", {}, h)));
    const rows = workers.map((w) => el("tr", { class: w.gone ? "gone" : "live", "data-pid": w.pid },
      el("td", { class: "state " + (w.gone ? "gone" : "live") }, w.gone ? "gone" : "live"),
      el("td", {}, w.worker_id), el("td", {}, w.host), el("td", { class: "num" }, w.pid),
      el("td", {}, w.version), el("td", {}, when(w.started_at)), el("td", {}, when(w.last_seen_at)),
      el("td", { class: "num" }, `${w.running}/${w.concurrency}`), el("td", {}, w.actions.join(", "))));
    fill(data,
      el("p", { id: "workers-summary" }, `${live} live, ${workers.length - live} gone`),
      workers.length ? tableWrap(el("table", { class: "workers" }, el("thead", {}, head), el("tbody", {}, ...rows)))
        : el("p", {}, "No worker has recorded itself yet."));
  };
}

async function pauseOrResume(action, paused) {
  try {
    await api(`/actions/${encodeURIComponent(action)}/${paused ? "resume" : "pause"}`, { method: "POST" });
    note(paused ? `Resumed ${action}.` : `Paused ${action}: no worker claims its jobs until it is resumed.`);
  } catch (error) {
    note("Failed: " + error.message);
  }
  await refresh(true);
}

function mountActions(view) {
  const data = el("div", { id: "actions-data" });
  const charts = el("div", { id: "actions-charts" });
  view.append(el("h1", {}, "Actions"), el("p", { id: "action-note", role: "status" }), data,
    el("h2", {}, "Runtime over the last hour"), charts);
  return async () => {
    const [{ actions }, runtime, stats] = await Promise.all([api("/actions"), api("/actions/runtime"), api("/stats?minutes=1")]);
    const timing = Object.fromEntries(runtime.actions.map((a) => [a.action, a]));
    const scheduled = Object.fromEntries(stats.actions.map((a) => [a.action, a.scheduled || 0]));
    const head = el("tr", {}, ...["action", "ready", "scheduled", "running / max", "state", "p50", "p95", "failure rate", ""].map((h) => el("th", {}, h)));
    const rows = actions.map((a) => {
      const t = timing[a.action] || {};
      const rate = t.failure_rate === null || t.failure_rate === undefined ? "–" : (100 * t.failure_rate).toFixed(1) + " %";
      return el("tr", { "data-action": a.action, class: a.paused ? "paused" : "" },
        el("td", {}, el("a", { href: "#/jobs?" + new URLSearchParams({ action: a.action }) }, a.action)),
        el("td", { class: "num" }, a.ready),
        el("td", { class: "num" }, scheduled[a.action] || 0),
        el("td", { class: "num" }, `${a.running} / ${a.max_running === null ? "∞" : a.max_running}`),
        el("td", { class: "state " + (a.paused ? "paused" : "active") }, a.paused ? "paused" : "active"),
        el("td", { class: "num" }, ms(t.p50_ms)), el("td", { class: "num" }, ms(t.p95_ms)),
        el("td", { class: "num" }, rate),
        el("td", {}, el("button", { type: "button", id: (a.paused ? "resume-" : "pause-") + a.action,
          class: a.paused ? "" : "danger", onclick: () => pauseOrResume(a.action, a.paused) }, a.paused ? "Resume" : "Pause")));
    });
    fill(data, actions.length ? tableWrap(el("table", { class: "actions" }, el("thead", {}, head), el("tbody", {}, ...rows)))
      : el("p", {}, "No actions."));
    const end = new Date();
    const start = new Date(end.getTime() - runtime.window_seconds * 1000);
    fill(charts, ...runtime.actions.filter((a) => a.points.length).map((a) =>
      scatterChart(`${a.action}: runtime of completed jobs`, a.points.map((p) => ({ t: new Date(p.finished_at), v: p.runtime_ms })), start, end)));
    if (!charts.childElementCount) charts.append(el("p", { class: "muted" }, "No job completed in the last hour."));
  };
}

function mountSchedules(view) {
  const data = el("div", { id: "schedules-data" });
  view.append(el("h1", {}, "Schedules"), data);
  return async () => {
    const { schedules, window_seconds: window } = await api("/schedules");
    const head = el("tr", {}, ...["action", "cron", "next run", "last run", "missed", "recent slots (newest first)"].map((h) => el("th", {}, h)));
    const rows = schedules.map((s) => el("tr", { "data-action": s.action },
      el("td", {}, s.action), el("td", {}, el("code", {}, s.cron), " ", s.timezone),
      el("td", { class: "next-run" }, when(s.next_run)),
      el("td", {}, s.last_run ? el("a", { href: "#/job/" + encodeURIComponent(s.last_run.job_id) },
        when(s.last_run.slot) + " · " + s.last_run.status) : "–"),
      el("td", { class: "num missed" + (s.missed ? " bad" : "") }, s.missed),
      el("td", { class: "slots" }, ...s.recent_slots.map((slot) => {
        const chip = slot.job_id
          ? el("a", { href: "#/job/" + encodeURIComponent(slot.job_id), class: "slot " + slot.status, title: when(slot.slot) + ": " + slot.status }, "●")
          : slot.missed ? el("span", { class: "slot missing", title: when(slot.slot) + ": missed (no job)" }, "○")
            : el("span", { class: "slot before", title: when(slot.slot) + ": no job (before the first run in view, or due now)" }, "·");
        return chip;
      }))));
    fill(data,
      schedules.length ? tableWrap(el("table", { class: "schedules" }, el("thead", {}, head), el("tbody", {}, ...rows)))
        : el("p", {}, "This service has no schedules."),
      el("p", { class: "muted" }, `Missed: a slot of the last ${age(window)} (the latest 20 per schedule) without a job, after the first one that ran — no worker ran then, or the slot was past the catch-up window.`));
  };
}

// --- mounting, refreshing ------------------------------------------------------------------

function mount() {
  const { path, params } = parseHash();
  if (path === "/failed") { // the old link
    go("/jobs", new URLSearchParams({ status: "Failed" }));
    return null;
  }
  const view = document.getElementById("view");
  view.replaceChildren();
  document.querySelectorAll("header nav a").forEach((a) => {
    const current = a.dataset.status !== undefined
      ? path === "/jobs" && (a.dataset.status === "Failed") === ((params.get("status") || "").toLowerCase() === "failed")
      : a.getAttribute("href") === "#" + path;
    a.classList.toggle("current", current);
  });
  if (path.startsWith("/job/")) return mountJob(view, decodeURIComponent(path.slice(5)));
  if (path === "/jobs") return mountJobs(view, params);
  if (path === "/find") return mountFind(view, params);
  if (path === "/workers") return mountWorkers(view);
  if (path === "/actions") return mountActions(view);
  if (path === "/schedules") return mountSchedules(view);
  return mountOverview(view);
}

async function refresh(force) {
  if (!state.update) return;
  if (state.busy) { // one at a time; an operator's action is redrawn right after
    if (force) state.pending = true;
    return;
  }
  if (!force) {
    if (state.paused || document.hidden) return;
    if (document.getElementById("confirm").open) return; // the operator is deciding
  }
  // Focus is kept by id: the data region is redrawn with the same ids.
  const focused = document.activeElement && document.activeElement.id;
  state.busy = true;
  state.forced = Boolean(force);
  try {
    await state.update();
    const alert = document.getElementById("load-error");
    if (alert) alert.remove();
    stamp();
  } catch (error) {
    if (error.message !== "signed out") showError(error);
  } finally {
    state.busy = false;
  }
  if (state.pending) {
    state.pending = false;
    await refresh(true);
    return;
  }
  if (focused && document.activeElement !== document.getElementById(focused)) {
    const again = document.getElementById(focused);
    if (again) again.focus({ preventScroll: true });
  }
}

function showError(error) {
  const view = document.getElementById("view");
  let alert = document.getElementById("load-error");
  if (!alert) {
    alert = el("p", { class: "error", role: "alert", id: "load-error" });
    view.prepend(alert);
  }
  alert.textContent = "Could not load: " + error.message;
}

async function route() {
  const hash = window.location.hash || "#/";
  if (hash === state.route) return;
  const { path } = parseHash();
  if (!path.startsWith("/jobs")) state.selected.clear();
  state.route = hash;
  state.update = mount();
  await refresh(true);
}

function start() {
  const toggle = document.getElementById("refresh-toggle");
  toggle.addEventListener("click", () => {
    state.paused = !state.paused;
    toggle.textContent = state.paused ? "Resume auto-refresh" : "Pause auto-refresh";
    toggle.setAttribute("aria-pressed", String(state.paused));
    stamp();
  });
  document.getElementById("confirm-cancel").addEventListener("click", () => document.getElementById("confirm").close("cancel"));
  document.getElementById("confirm-ok").addEventListener("click", () => document.getElementById("confirm").close("ok"));
  window.addEventListener("hashchange", route);
  route();
  window.setInterval(() => refresh(false), REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
