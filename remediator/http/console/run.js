// A manual run: "Run now" opens an editor holding the rule's last event; both ask first.

import { api, h, notice, view } from "./util.js";

export async function runEditor(rule, last) {
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

export async function runRule(rule, body) {
  const what = body.from ? `Run ${rule} again with the event of ${body.from}?` : `Run ${rule} now?`;
  if (!window.confirm(what)) return;
  notice(`running ${rule}…`);
  const reply = await api(`/api/rules/${encodeURIComponent(rule)}/run`, { method: "POST", body });
  if (!reply.ok) return notice(`${reply.status}: ${(reply.body && reply.body.error) || "refused"}`, "error");
  const result = reply.body.result;
  notice(`${rule}: ${result.status}`);
  location.hash = `#/event/${encodeURIComponent(result.event_id)}`;
}
