// The remediator console: plain ES module, no framework, no network beyond this daemon's /api/.
// Every value from the API is put into the page as text (never as HTML): results carry event data.

const TOKEN_KEY = "remediator.token";
const REFRESH_MS = 3000;
const STATUSES = ["succeeded", "failed", "throttled", "suppressed", "dry_run",
  "paused", "awaiting_approval", "denied", "expired", "skipped", "outside_window"];
const view = document.getElementById("view");
let timer = null;

// --- small helpers -------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, options = {}) {
  // Tells the audit trail that a person clicked in the console (not a script).
  const headers = { Accept: "application/json", "X-Remediator-Client": "console",
    ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { status: response.status, ok: response.ok, body };
}

function notice(text, kind = "info") {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] = abs >= 86400 ? [abs / 86400, "d"] : abs >= 3600 ? [abs / 3600, "h"]
    : abs >= 60 ? [abs / 60, "m"] : [abs, "s"];
  const text = `${Math.floor(n)}${unit}`;
  return seconds < 0 ? `in ${text}` : `${text} ago`;
}

function duration(ms) {
  if (typeof ms !== "number") return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(ms / 60000)}m${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}s`;
}

function badge(status) { return h("span", { class: `badge s-${status}` }, status); }

function wrap(table) { return h("div", { class: "table-wrap" }, table); }

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function list(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  return [];
}

// --- overview ------------------------------------------------------------------------------

async function overview() {
  const [over, status, approvals, defs] = await Promise.all([
    api("/api/overview"), api("/api/status"), api("/api/approvals"), api("/api/rules"),
  ]);
  if (!over.ok) return failed(over);
  const control = status.ok ? status.body : null;
  const page = [
    controlBar(control),
    h("section", {}, h("h2", {}, "Results per minute, last hour"), chart(over.body.per_minute)),
    h("section", {}, h("h2", {}, "Rules"), rulesTable(over.body.rules, control, defs.ok ? list(defs.body, "rules") : [])),
  ];
  if (approvals.ok) page.push(approvalsSection(list(approvals.body, "approvals")));
  view.replaceChildren(...page);
}

function pausedScopes(control) {
  const scopes = new Set();
  for (const pause of list(control, "pauses")) {
    scopes.add(typeof pause === "string" ? pause : (pause.scope || pause.rule || "all"));
  }
  return scopes;
}

function openCircuits(control) {
  const rules = new Set();
  for (const c of [...list(control, "circuits"), ...list(control, "open_circuits")]) {
    rules.add(typeof c === "string" ? c : c.rule);
  }
  return rules;
}

function controlBar(control) {
  const bar = h("section", { class: "control" });
  if (!control) return bar;
  const all = pausedScopes(control).has("all");
  bar.append(h("span", { class: all ? "flag paused" : "flag running" },
    all ? "All rules paused" : "Running"));
  if (token()) {
    bar.append(all
      ? h("button", { "data-action": "resume-all", onclick: () => resume({ all: true }) }, "Resume all")
      : h("button", { "data-action": "pause-all", class: "danger",
        onclick: () => pause({ all: true }) }, "Pause all"));
  }
  return bar;
}

function rulesTable(rules, control, defs) {
  const paused = pausedScopes(control);
  const circuits = openCircuits(control);
  // Rules outside their windows now, and when each may act next (SPEC §17).
  const closed = new Map(defs.filter((d) => d.windows && !d.windows.open)
    .map((d) => [d.name, d.windows.next_open || "not within a week"]));
  const head = h("tr", {}, h("th", {}, "rule"), h("th", { class: "num" }, "fired 1h"),
    h("th", { class: "num" }, "failed 1h"), h("th", { class: "num" }, "throttled 1h"),
    h("th", { class: "num" }, "fired 24h"), h("th", { class: "num" }, "failed 24h"),
    h("th", { class: "num" }, "throttled 24h"), h("th", {}, "last"), h("th", {}, "state"));
  const rows = rules.map((rule) => {
    const last = rule.last;
    const name = last
      ? h("a", { href: `#/event/${encodeURIComponent(last.event_id)}`, class: "rule-link" }, rule.rule)
      : h("span", {}, rule.rule);
    const state = h("td", { class: "state" });
    if (paused.has(rule.rule) || paused.has("all")) state.append(h("span", { class: "flag paused" }, "paused"));
    if (circuits.has(rule.rule)) state.append(h("span", { class: "flag open" }, "circuit open"));
    if (closed.has(rule.rule)) {
      state.append(h("span", { class: "flag paused" }, `outside window; acts from ${closed.get(rule.rule)}`));
    }
    const ticks = list(control, "schedules").find((t) => t.rule === rule.rule);
    if (ticks) state.append(h("span", { class: "muted ticks" },
      `last tick ${ticks.last_tick ? ago(ticks.last_tick) : "none yet"}, next ${ticks.next_tick || "?"} `));
    if (token()) {
      state.append(h("button", { class: "small", "data-action": "run-now",
        onclick: () => runEditor(rule.rule, last) }, "Run now"));
    }
    if (control && token() && !paused.has("all")) {
      state.append(paused.has(rule.rule)
        ? h("button", { class: "small", onclick: () => resume({ rules: [rule.rule] }) }, "resume")
        : h("button", { class: "small", onclick: () => pause({ rules: [rule.rule] }) }, "pause"));
    }
    const cell = (n, cls) => h("td", { class: `num ${n && cls ? cls : ""}` }, n);
    return h("tr", { "data-rule": rule.rule },
      h("td", {}, name),
      cell(rule.last_hour.fired), cell(rule.last_hour.failed, "bad"),
      cell(rule.last_hour.throttled, "warn"),
      cell(rule.last_day.fired), cell(rule.last_day.failed, "bad"),
      cell(rule.last_day.throttled, "warn"),
      h("td", {}, last ? [badge(last.status), " ", h("span", { class: "muted" }, ago(last.finished_at))] : ""),
      state);
  });
  if (!rows.length) return h("p", { class: "muted" }, "No rules loaded.");
  return wrap(h("table", { id: "rules" }, h("thead", {}, head), h("tbody", {}, rows)));
}

function chart(series) {
  const width = 600, height = 120, gap = 1, bar = width / Math.max(series.length, 1);
  const totals = series.map((m) => Object.values(m.counts).reduce((a, b) => a + b, 0));
  const top = Math.max(1, ...totals);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + 16}`, class: "chart",
    role: "img", "aria-label": "results per minute by status" });
  series.forEach((minute, i) => {
    let y = height;
    for (const status of STATUSES.concat(Object.keys(minute.counts).filter((s) => !STATUSES.includes(s)))) {
      const n = minute.counts[status] || 0;
      if (!n) continue;
      const tall = (n / top) * height;
      y -= tall;
      root.append(svg("rect", { x: i * bar + gap / 2, y, width: bar - gap, height: tall,
        class: `s-${status}` }, svg("title", {}, `${minute.minute.slice(11, 16)} ${status}: ${n}`)));
    }
  });
  root.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  root.append(svg("text", { x: 0, y: height + 13, class: "label" }, "-60m"));
  root.append(svg("text", { x: width, y: height + 13, class: "label end" }, "now"));
  root.append(svg("text", { x: 0, y: 10, class: "label" }, `${top}/min`));
  const legend = h("div", { class: "legend" }, STATUSES.slice(0, 5).map((s) => badge(s)));
  return h("div", {}, root, legend);
}

function approvalsSection(approvals) {
  const section = h("section", { id: "approvals" }, h("h2", {}, `Pending approvals (${approvals.length})`));
  if (!approvals.length) {
    section.append(h("p", { class: "muted" }, "Nothing waits for a decision."));
    return section;
  }
  section.append(h("ul", { class: "approvals" }, approvals.map((a) => h("li", { "data-approval": a.id },
    h("strong", {}, a.rule), " ", h("code", {}, a.id),
    h("span", { class: "muted" }, a.expires_at ? ` expires ${ago(a.expires_at)}` : ""),
    token() ? h("span", { class: "buttons" },
      h("button", { "data-action": "approve", "data-id": a.id, onclick: () => decide(a.id, "approve") }, "Approve"),
      h("button", { "data-action": "deny", "data-id": a.id, class: "danger",
        onclick: () => decide(a.id, "deny") }, "Deny"))
      : h("span", { class: "muted" }, " (save an operator token to decide)")))));
  return section;
}

// --- operator actions ----------------------------------------------------------------------

async function act(path, body, done) {
  const reply = await api(path, { method: "POST", body });
  const message = reply.body && (reply.body.message || reply.body.error);
  notice(reply.ok ? (message || done) : `${reply.status}: ${message || "refused"}`,
    reply.ok ? "info" : "error");
  await render();
}

function decide(id, decision) {
  return act(`/api/approvals/${encodeURIComponent(id)}/${decision}`, {}, `${decision}d ${id}`);
}

function pause(scope) {
  const reason = window.prompt("Reason for the pause?", "paused from the console");
  if (reason === null) return;
  return act("/api/pause", { ...scope, reason }, "paused");
}

function resume(scope) { return act("/api/resume", scope, "resumed"); }

// A manual run: "Run now" opens an editor holding the rule's last event; both ask first.
async function runEditor(rule, last) {
  let event = {};
  if (last) {
    const stored = await api(`/api/results/${encodeURIComponent(last.event_id)}/event`);
    if (stored.ok && stored.body && stored.body.event) event = stored.body.event;
    else if (last.event_id.startsWith("schedule:")) {  // a tick's event is not stored: rebuild it
      event = { schedule: { rule, tick: last.event_id.split(":").slice(2).join(":") } };
    }
  }
  const text = h("textarea", { id: "run-event", rows: 10, spellcheck: "false" });
  text.value = JSON.stringify(event, null, 2);
  const force = h("input", { type: "checkbox", id: "run-force" });
  const dry = h("input", { type: "checkbox", id: "run-dry" });
  const why = h("input", { id: "run-reason", placeholder: "reason (kept in the audit trail)" });
  const run = () => {
    let body;
    try { body = JSON.parse(text.value); } catch (error) { return notice(`not JSON: ${error}`, "error"); }
    runRule(rule, { event: body, force: force.checked, dry_run: dry.checked, reason: why.value });
  };
  document.getElementById("run-editor")?.remove();
  view.prepend(h("section", { id: "run-editor" }, h("h2", {}, "Run ", h("code", {}, rule), " now"),
    h("p", { class: "muted" }, "The event it runs with (its last event, when one is stored):"), text,
    h("p", {}, h("label", {}, force, " skip throttle and budget"), " ",
      h("label", {}, dry, " dry run"), " ", why),
    h("p", {}, h("button", { "data-action": "run", class: "danger", onclick: run }, "Run"), " ",
      h("button", { onclick: () => document.getElementById("run-editor")?.remove() }, "Cancel"))));
}

async function runRule(rule, body) {
  const what = body.from ? `Run ${rule} again with the event of ${body.from}?` : `Run ${rule} now?`;
  if (!window.confirm(what)) return;
  notice(`running ${rule}…`);
  const reply = await api(`/api/rules/${encodeURIComponent(rule)}/run`, { method: "POST", body });
  if (!reply.ok) return notice(`${reply.status}: ${(reply.body && reply.body.error) || "refused"}`, "error");
  const result = reply.body.result;
  notice(`${rule}: ${result.status}`);
  location.hash = `#/event/${encodeURIComponent(result.event_id)}`;
}

// --- the audit trail ---------------------------------------------------------------------

async function auditPage() {
  const reply = await api("/api/audit?since=7d&limit=500");
  if (!reply.ok) return failed(reply);
  const rows = list(reply.body, "audit").slice().reverse();
  const table = rows.length ? wrap(h("table", { id: "audit" },
    h("thead", {}, h("tr", {}, ["time", "act", "target", "by", "via", "outcome", "reason"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-act": r.act },
      h("td", { title: r.at }, ago(r.at)), h("td", {}, r.act), h("td", {}, r.target),
      h("td", {}, r.by), h("td", {}, r.remote ? `${r.source} ${r.remote}` : r.source),
      h("td", {}, r.outcome), h("td", { class: "reason" }, r.reason))))))
    : h("p", { class: "muted" }, "Nobody has paused, resumed, decided or run anything in 7 days.");
  view.replaceChildren(h("h2", {}, "Who did what (last 7 days)"), table);
}

// --- results list --------------------------------------------------------------------------

function filters() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  return { rule: params.get("rule") || "", status: params.get("status") || "",
    since: params.get("since") || "24h", limit: params.get("limit") || "100" };
}

async function results() {
  const f = filters();
  let form = document.getElementById("filters");
  if (!form) {
    form = h("form", { id: "filters", onsubmit: (e) => { e.preventDefault(); applyFilters(form); } },
      h("label", {}, "rule ", h("input", { name: "rule", value: f.rule, placeholder: "any" })),
      h("label", {}, "status ", h("select", { name: "status" }, h("option", { value: "" }, "any"),
        STATUSES.map((s) => h("option", { value: s, selected: s === f.status }, s)))),
      h("label", {}, "since ", h("input", { name: "since", value: f.since, size: 5 })),
      h("button", { type: "submit" }, "Filter"));
    view.replaceChildren(h("h2", {}, "Results"), form, h("div", { id: "result-list" }));
  }
  const query = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
  const reply = await api(`/api/results?${query}`);
  if (!reply.ok) return failed(reply);
  document.getElementById("result-list").replaceChildren(resultsTable(reply.body.results));
}

function applyFilters(form) {
  const data = new FormData(form);
  const query = new URLSearchParams([...data.entries()].filter(([, v]) => v));
  location.hash = `#/results?${query}`;
}

function resultsTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No results match.");
  return wrap(h("table", { id: "results" },
    h("thead", {}, h("tr", {}, ["time", "rule", "status", "event", "duration", "reason"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-event": r.event_id },
      h("td", { title: r.finished_at }, ago(r.finished_at)), h("td", {}, r.rule),
      h("td", {}, badge(r.status)),
      h("td", {}, h("a", { href: `#/event/${encodeURIComponent(r.event_id)}` }, r.event_id)),
      h("td", { class: "num" }, duration(r.duration_ms)),
      h("td", { class: "reason" }, reason(r)))))));
}

function reason(r) {
  if (r.reason) return r.reason;
  const step = (r.steps || []).find((s) => s.status === "failed" && s.error);
  return step ? `${step.name}: ${step.error}` : "";
}

// --- one event's results -------------------------------------------------------------------

async function eventDetail(id) {
  // By query: an id of `.` or `..` would be resolved away as a path segment.
  const reply = await api(`/api/event?id=${encodeURIComponent(id)}`);
  if (!reply.ok) return failed(reply);
  const first = reply.body.results[0];
  view.replaceChildren(
    h("h2", {}, "Event ", h("code", {}, id)),
    h("dl", { class: "facts" }, h("dt", {}, "subject"), h("dd", {}, first.subject),
      h("dt", {}, "trace"), h("dd", {}, h("code", {}, first.trace_id))),
    h("section", { id: "event" }, h("h3", {}, "The alert"), h("p", { class: "muted" }, "loading…")),
    ...reply.body.results.map(resultCard));
  const stored = await api(`/api/event/alert?id=${encodeURIComponent(id)}`);
  const section = document.getElementById("event");
  if (!section) return;
  section.replaceChildren(h("h3", {}, "The alert"), stored.ok
    ? h("pre", { class: "event" }, pretty(stored.body.event))
    : h("p", { class: "muted" }, (stored.body && stored.body.error) || "not available"));
}

function resultCard(r) {
  const steps = r.steps || [];
  return h("article", { class: "result", "data-rule": r.rule },
    h("h3", {}, r.rule, " ", badge(r.status), token() ? [" ", h("button", { class: "small",
      "data-action": "run-again", onclick: () => runRule(r.rule, { from: r.event_id }) }, "Run again")]
      : null),
    r.trigger ? h("p", { class: "muted trigger" }, `run by ${r.trigger.by}`,
      r.trigger.reason ? `: ${r.trigger.reason}` : "", r.trigger.forced ? " (forced)" : "") : null,
    h("p", { class: "muted" }, `${ago(r.finished_at)} · ${r.finished_at} · ${duration(r.duration_ms)}`,
      r.redelivered ? " · redelivered" : ""),
    r.reason ? h("p", { class: "reason" }, r.reason) : null,
    steps.length ? wrap(h("table", { class: "steps" },
      h("thead", {}, h("tr", {}, ["step", "kind", "status", "attempts", "duration", "output / error"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, steps.map((s) => h("tr", { class: "step", "data-step": s.name },
        h("td", {}, s.name), h("td", {}, s.kind), h("td", {}, badge(s.status)),
        h("td", { class: "num" }, s.attempts), h("td", { class: "num" }, duration(s.duration_ms)),
        h("td", {}, s.output !== null && s.output !== undefined ? h("pre", {}, pretty(s.output)) : null,
          s.error ? h("pre", { class: "error" }, s.error) : null))))))
      : h("p", { class: "muted" }, "No step ran."));
}

// --- routing and refresh -------------------------------------------------------------------

function failed(reply) {
  const message = reply.body && reply.body.error ? reply.body.error : "request failed";
  view.replaceChildren(h("p", { class: "error" }, `${reply.status}: ${message}`));
}

async function render() {
  const hash = location.hash || "#/";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", hash.startsWith(`#/${link.dataset.view === "overview" ? "" : link.dataset.view}`)
      && (link.dataset.view !== "overview" || hash === "#/"));
  }
  try {
    if (hash.startsWith("#/event/")) await eventDetail(decodeURIComponent(hash.slice(8)));
    else if (hash.startsWith("#/results")) await results();
    else if (hash.startsWith("#/audit")) await auditPage();
    else await overview();
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    notice(`cannot reach the daemon: ${error}`, "error");
  }
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(() => {
    const live = document.getElementById("live").checked;
    const editing = document.getElementById("run-editor");
    if (live && !document.hidden && !editing && !location.hash.startsWith("#/event/")) render();
  }, REFRESH_MS);
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  const forget = document.getElementById("token-forget");
  const show = () => { forget.hidden = !token(); input.placeholder = token() ? "token saved" : "operator token (optional)"; };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) localStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    show();
    render();
  });
  forget.addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); show(); render(); });
  show();
}

window.addEventListener("hashchange", () => {
  notice("");
  if (!location.hash.startsWith("#/results")) view.replaceChildren();
  else document.getElementById("filters")?.remove();
  render();
});
setupToken();
render();
schedule();
