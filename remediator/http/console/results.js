// The results list (filters kept in the URL, pages through everything the daemon holds) and
// one event's results.

import { runRule } from "./run.js";
import { api, badge, duration, failed, h, pretty, statuses, token, view, when, wrap } from "./util.js";

export const PAGE = 50;
const FIELDS = ["rule", "status", "q", "since", "until"];

export function filters() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const f = Object.fromEntries(FIELDS.map((k) => [k, params.get(k) || ""]));
  f.page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  return f;
}

function link(f) {
  const query = new URLSearchParams(FIELDS.filter((k) => f[k]).map((k) => [k, f[k]]));
  if (f.page) query.set("page", String(f.page));
  return `#/results?${query}`;
}

// A time typed as local (`2026-12-07T10:00`, from a datetime picker) is sent as UTC ISO;
// a duration (`15m`) or a time with its zone goes as is.
function apiTime(text) {
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?$/.test(text)) return new Date(text).toISOString();
  return text;
}

async function filterForm(f) {
  const known = await statuses();
  const input = (name, label, attrs = {}) => h("label", {}, `${label} `,
    h("input", { name, value: f[name], ...attrs }));
  const form = h("form", { id: "filters", onsubmit: (e) => { e.preventDefault(); applyFilters(form); } },
    input("rule", "rule", { placeholder: "any" }),
    h("label", {}, "status ", h("select", { name: "status" }, h("option", { value: "" }, "any"),
      known.map((s) => h("option", { value: s, selected: s === f.status }, s)))),
    input("q", "text", { placeholder: "host, event, error…", type: "search" }),
    input("since", "since", { placeholder: "24h or 2026-12-07T10:00", size: 10 }),
    input("until", "until", { placeholder: "now", size: 10 }),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "#/results", class: "clear" }, "clear"));
  return form;
}

export async function results() {
  const f = filters();
  if (!document.getElementById("filters")) {
    view.replaceChildren(h("h2", {}, "Results"), await filterForm(f), h("div", { id: "result-list" }));
  }
  const query = new URLSearchParams({ limit: String(PAGE), offset: String(f.page * PAGE) });
  for (const k of FIELDS) if (f[k]) query.set(k, k === "since" || k === "until" ? apiTime(f[k]) : f[k]);
  const reply = await api(`/api/results?${query}`);
  if (!reply.ok) return failed(reply);
  const box = document.getElementById("result-list");
  if (box) box.replaceChildren(resultsTable(reply.body.results), pager(f, reply.body.more));
}

function pager(f, more) {
  const to = (page) => link({ ...f, page });
  return h("nav", { class: "pager" },
    f.page > 0 ? h("a", { href: to(f.page - 1), "data-page": "newer" }, "← newer") : h("span", {}),
    h("span", { class: "muted" }, `page ${f.page + 1}`),
    more ? h("a", { href: to(f.page + 1), "data-page": "older" }, "older →") : h("span", {}));
}

function applyFilters(form) {
  const data = Object.fromEntries(new FormData(form).entries());
  location.hash = link({ ...data, page: 0 });
}

function resultsTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No results match.");
  const labels = ["time", "rule", "status", "event", "duration", "reason"];
  return wrap(h("table", { id: "results", class: "cards" },
    h("thead", {}, h("tr", {}, labels.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-event": r.event_id },
      h("td", { "data-label": "time" }, when(r.finished_at)),
      h("td", { "data-label": "rule" }, r.rule),
      h("td", { "data-label": "status" }, badge(r.status)),
      h("td", { "data-label": "event", class: "event" },
        h("a", { href: `#/event/${encodeURIComponent(r.event_id)}` }, r.event_id)),
      h("td", { "data-label": "duration", class: "num" }, duration(r.duration_ms)),
      h("td", { "data-label": "reason", class: "reason" }, reason(r)))))));
}

function reason(r) {
  if (r.reason) return r.reason;
  const step = (r.steps || []).find((s) => s.status === "failed" && s.error);
  return step ? `${step.name}: ${step.error}` : "";
}

export async function eventDetail(id) {
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
    h("p", { class: "muted" }, when(r.finished_at), ` · ${duration(r.duration_ms)}`,
      r.redelivered ? " · redelivered" : ""),
    r.reason ? h("p", { class: "reason" }, r.reason) : null,
    steps.length ? wrap(h("table", { class: "steps cards" },
      h("thead", {}, h("tr", {}, ["step", "kind", "status", "attempts", "duration", "output / error"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, steps.map((s) => h("tr", { class: "step", "data-step": s.name },
        h("td", { "data-label": "step" }, s.name), h("td", { "data-label": "kind" }, s.kind),
        h("td", { "data-label": "status" }, badge(s.status)),
        h("td", { "data-label": "attempts", class: "num" }, s.attempts),
        h("td", { "data-label": "duration", class: "num" }, duration(s.duration_ms)),
        h("td", { "data-label": "output" },
          s.output !== null && s.output !== undefined ? h("pre", {}, pretty(s.output)) : null,
          s.error ? h("pre", { class: "error" }, s.error) : null))))))
      : h("p", { class: "muted" }, "No step ran."));
}
