// The audit trail: who paused, resumed, decided or ran what, from where.

import { api, failed, h, list, view, when, wrap } from "./util.js";

export async function auditPage() {
  const reply = await api("/api/audit?since=7d&limit=500");
  if (!reply.ok) return failed(reply);
  const rows = list(reply.body, "audit").slice().reverse();
  const labels = ["time", "act", "target", "by", "via", "outcome", "reason"];
  const table = rows.length ? wrap(h("table", { id: "audit", class: "cards" },
    h("thead", {}, h("tr", {}, labels.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-act": r.act },
      h("td", { "data-label": "time" }, when(r.at)), h("td", { "data-label": "act" }, r.act),
      h("td", { "data-label": "target" }, r.target), h("td", { "data-label": "by" }, r.by),
      h("td", { "data-label": "via" }, r.remote ? `${r.source} ${r.remote}` : r.source),
      h("td", { "data-label": "outcome" }, r.outcome),
      h("td", { "data-label": "reason", class: "reason" }, r.reason))))))
    : h("p", { class: "muted" }, "Nobody has paused, resumed, decided or run anything in 7 days.");
  view.replaceChildren(h("h2", {}, "Who did what (last 7 days)"), table);
}
