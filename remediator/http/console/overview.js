// The overview: what each rule did in the last hour and day, its state, the chart, approvals.

import { approvalsSection } from "./approvals.js";
import { runEditor } from "./run.js";
import { act, api, badge, confirmAct, failed, h, legend, list, statuses, svg, token, view, when,
  wrap } from "./util.js";

// Counted apart from `fired` (steps ran): shown as small badges, never added to `fired`.
const FIRED = new Set(["fired", "succeeded", "failed"]);

export async function overview(render) {
  const [over, status, approvals, rules, known] = await Promise.all([
    api("/api/overview"), api("/api/status"), api("/api/approvals"), api("/api/rules"),
    statuses(),
  ]);
  if (!over.ok) return failed(over);
  const control = status.ok ? status.body : null;
  const defined = new Map(list(rules.ok ? rules.body : null, "rules").map((r) => [r.name, r]));
  const page = [
    controlBar(control, render),
    h("section", {}, h("h2", {}, "Results per minute, last hour"),
      chart(over.body.per_minute, known), legend(known)),
    h("section", {}, h("h2", {}, "Rules"), rulesTable(over.body.rules, control, defined, render)),
  ];
  if (approvals.ok) page.push(approvalsSection(list(approvals.body, "approvals"), render));
  view.replaceChildren(...page);
}

function pausedScopes(control) {
  const scopes = new Set();
  for (const pause of list(control, "pauses")) {
    if (!pause.key) scopes.add(pause.scope || pause.rule || "all");
  }
  return scopes;
}

function openCircuits(control) {
  return new Set(list(control, "circuits").map((c) => c.rule));
}

function controlBar(control, render) {
  const bar = h("section", { class: "control" });
  if (!control) return bar;
  const all = pausedScopes(control).has("all");
  bar.append(h("span", { class: all ? "flag paused" : "flag running" },
    all ? "All rules paused" : "Running"));
  if (token()) {
    bar.append(all
      ? h("button", { "data-action": "resume-all", onclick: () => resume({ all: true }, "all rules", render) },
        "Resume all")
      : h("button", { "data-action": "pause-all", class: "danger",
        onclick: () => pause({ all: true }, "all rules", render) }, "Pause all"));
  }
  return bar;
}

function markers(rule, defined, paused, circuits) {
  const marks = [];
  if (defined && defined.dry_run) marks.push(h("span", { class: "flag dry", "data-marker": "dry_run" }, "dry run"));
  if (paused.has(rule) || paused.has("all") || (defined && defined.paused)) {
    marks.push(h("span", { class: "flag paused", "data-marker": "paused" }, "paused"));
  }
  if (circuits.has(rule)) marks.push(h("span", { class: "flag open", "data-marker": "circuit-open" }, "circuit open"));
  if (defined && defined.approval) marks.push(h("span", { class: "flag ask", "data-marker": "approval" }, "asks approval"));
  if (defined && defined.windows) {
    // When a rule outside its windows may act next (SPEC §17), from /api/rules.
    const { open, next_open: next } = defined.windows;
    const text = open ? "in window" : `outside window; acts from ${next || "not within a week"}`;
    marks.push(h("span", { class: `flag ${open ? "running" : "paused"}`, "data-marker": "window" }, text));
  }
  return marks;
}

function held(counts) {
  // Every status that is not a run, each with its own colour: paused, dry_run, throttled…
  const parts = Object.entries(counts).filter(([s, n]) => n && !FIRED.has(s))
    .map(([s, n]) => badge(s, `${s} ${n}`));
  return parts.length ? parts : "0";
}

function rulesTable(rules, control, defined, render) {
  const paused = pausedScopes(control);
  const circuits = openCircuits(control);
  const labels = ["rule", "fired 1h", "failed 1h", "not run 1h", "fired 24h", "failed 24h",
    "not run 24h", "last", ""];
  const head = h("tr", {}, labels.map((t, i) => h("th", { class: [1, 2, 4, 5].includes(i) ? "num" : null }, t)));
  const rows = rules.map((rule) => {
    const last = rule.last;
    const name = last
      ? h("a", { href: `#/event/${encodeURIComponent(last.event_id)}`, class: "rule-link" }, rule.rule)
      : h("span", {}, rule.rule);
    const cell = (i, content, cls) => h("td", { "data-label": labels[i], class: cls }, content);
    const num = (i, n, bad) => cell(i, n, `num ${n && bad ? "bad" : ""}`);
    return h("tr", { "data-rule": rule.rule },
      cell(0, [name, " ", markers(rule.rule, defined.get(rule.rule), paused, circuits)], "rule"),
      num(1, rule.last_hour.fired), num(2, rule.last_hour.failed, true), cell(3, held(rule.last_hour), "held"),
      num(4, rule.last_day.fired), num(5, rule.last_day.failed, true), cell(6, held(rule.last_day), "held"),
      cell(7, last ? [badge(last.status), " ", when(last.finished_at)] : "-"),
      cell(8, [ticks(rule.rule, control), ruleButtons(rule.rule, paused, control, render),
        token() ? h("button", { class: "small", "data-action": "run-now",
          onclick: () => runEditor(rule.rule, last) }, "Run now") : null], "actions"));
  });
  if (!rows.length) return h("p", { class: "muted" }, "No rules loaded.");
  return wrap(h("table", { id: "rules", class: "cards" }, h("thead", {}, head), h("tbody", {}, rows)));
}

function ticks(rule, control) {
  const found = list(control, "schedules").find((t) => t.rule === rule);
  if (!found) return null;
  return h("span", { class: "muted ticks" }, "last tick ",
    found.last_tick ? when(found.last_tick) : "none yet", `, next ${found.next_tick || "?"} `);
}

function ruleButtons(rule, paused, control, render) {
  if (!control || !token() || paused.has("all")) return null;
  return paused.has(rule)
    ? h("button", { class: "small", "data-action": "resume", onclick: () => resume({ rules: [rule] }, rule, render) }, "resume")
    : h("button", { class: "small", "data-action": "pause", onclick: () => pause({ rules: [rule] }, rule, render) }, "pause");
}

async function pause(scope, what, render) {
  const answer = await confirmAct(`Pause ${what} for an hour? Matching alerts are recorded as paused; nothing runs.`,
    { reason: "paused from the console", danger: true });
  if (!answer) return;
  await act("/api/pause", { ...scope, reason: answer.reason }, () => `paused ${what}`);
  await render();
}

async function resume(scope, what, render) {
  if (!await confirmAct(`Resume ${what}? Matching alerts run their steps again.`)) return;
  await act("/api/resume", scope, () => `resumed ${what}`);
  await render();
}

function chart(series, known) {
  const width = 600, height = 120, gap = 1, bar = width / Math.max(series.length, 1);
  const totals = series.map((m) => Object.values(m.counts).reduce((a, b) => a + b, 0));
  const top = Math.max(1, ...totals);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + 16}`, class: "chart",
    role: "img", "aria-label": "results per minute by status" });
  series.forEach((minute, i) => {
    let y = height;
    const order = known.concat(Object.keys(minute.counts).filter((s) => !known.includes(s)));
    for (const status of order) {
      const n = minute.counts[status] || 0;
      if (!n) continue;
      const tall = (n / top) * height;
      y -= tall;
      const at = new Date(minute.minute);
      const hhmm = `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
      root.append(svg("rect", { x: i * bar + gap / 2, y, width: bar - gap, height: tall,
        class: `s-${status}` }, svg("title", {}, `${hhmm} ${status}: ${n}`)));
    }
  });
  root.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  root.append(svg("text", { x: 0, y: height + 13, class: "label" }, "-60m"));
  root.append(svg("text", { x: width, y: height + 13, class: "label end" }, "now"));
  root.append(svg("text", { x: 0, y: 10, class: "label" }, `${top}/min`));
  return root;
}
