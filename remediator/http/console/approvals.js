// Approvals an approver can judge: which alert (its key labels), what will run (the steps
// rendered as in a dry run, secrets masked), who asked and until when; each decision confirmed.

import { act, api, badge, confirmAct, failed, h, notice, pretty, token, view, when,
  wrap } from "./util.js";

function labels(approval) {
  const entries = Object.entries(approval.labels || {});
  if (!entries.length) return h("span", { class: "muted" }, "no labels");
  return h("span", { class: "labels" }, entries.map(([k, v]) => h("code", { class: "label" }, `${k}=${v}`)));
}

function stepNames(approval) {
  return (approval.steps || []).map((s) => `${s.name} (${s.kind})`).join(", ") || "no steps";
}

function previewWarning(approval) {
  return approval.preview_failed
    ? h("p", { class: "error preview-failed" }, "The preview of a step failed: it would fail when run too.")
    : null;
}

function decisionButtons(approval, render) {
  if (approval.state !== "pending") return null;
  if (!token()) return h("span", { class: "muted" }, " (save an operator token to decide)");
  const button = (decision, cls) => h("button", { "data-action": decision, "data-id": approval.id, class: cls,
    onclick: () => decide(approval, decision, render) }, decision === "approve" ? "Approve" : "Deny");
  return h("span", { class: "buttons" }, button("approve", "primary"), button("deny", "danger"));
}

export function approvalsSection(approvals, render) {
  const section = h("section", { id: "approvals" }, h("h2", {}, `Pending approvals (${approvals.length})`));
  if (!approvals.length) {
    section.append(h("p", { class: "muted" }, "Nothing waits for a decision."));
    return section;
  }
  section.append(h("ul", { class: "approvals" }, approvals.map((a) => h("li", { "data-approval": a.id },
    h("a", { href: `#/approvals/${encodeURIComponent(a.id)}`, class: "approval-link" }, h("strong", {}, a.rule)),
    " ", labels(a), decisionButtons(a, render),
    h("div", { class: "muted" }, "will run: ", stepNames(a), " · asked ", when(a.created_at),
      " · expires ", when(a.expires_at)),
    previewWarning(a)))));
  return section;
}

async function decide(approval, decision, render) {
  const what = decision === "approve"
    ? `Approve ${approval.rule}? Its steps run now: ${stepNames(approval)}.`
    : `Deny ${approval.rule}? Nothing runs; the denial is recorded.`;
  const answer = await confirmAct(what, { reason: "", danger: decision === "deny" });
  if (!answer) return;
  const path = `/api/approvals/${encodeURIComponent(approval.id)}/${decision}`;
  await act(path, { comment: answer.reason }, (body) => {
    const done = body && body.approval ? body.approval : {};
    return `${approval.rule}: ${done.decision || decision} by ${done.decided_by || "you"}`;
  });
  await render();
}

export async function approvalPage(id, render) {
  const reply = await api(`/api/approvals/${encodeURIComponent(id)}`);
  if (!reply.ok) return failed(reply);
  const a = reply.body.approval;
  const decided = a.state !== "pending";
  view.replaceChildren(h("article", { class: "result approval", "data-approval": a.id },
    h("h2", {}, "Approval for ", h("strong", {}, a.rule), " ", badge(a.decision || a.state)),
    h("dl", { class: "facts" },
      h("dt", {}, "alert"), h("dd", {}, labels(a)),
      h("dt", {}, "asked by"), h("dd", {}, a.asked_by || a.rule),
      h("dt", {}, "subject"), h("dd", {}, h("code", {}, a.subject)),
      h("dt", {}, "event"), h("dd", {}, h("a", { href: `#/event/${encodeURIComponent(a.event_id)}` }, a.event_id)),
      h("dt", {}, "asked"), h("dd", {}, when(a.created_at)),
      h("dt", {}, decided ? "expired" : "expires"), h("dd", {}, when(a.expires_at)),
      decided ? [h("dt", {}, "decided"), h("dd", { class: "decided" },
        a.decided_by ? `${a.decision} by ${a.decided_by} ` : `${a.state} `,
        a.decided_at ? when(a.decided_at) : "", a.comment ? ` — ${a.comment}` : "",
        a.outcome ? ` · outcome: ${a.outcome}` : "")] : null),
    previewWarning(a),
    h("h3", {}, "What will run (rendered as in a dry run, secrets masked)"),
    stepsTable(a.steps || []),
    h("p", {}, decisionButtons(a, render))));
  if (decided) notice(`Already decided: ${a.decided_by ? `${a.decision} by ${a.decided_by}` : a.state}`);
}

function stepsTable(steps) {
  if (!steps.length) return h("p", { class: "muted" }, "No steps.");
  return wrap(h("table", { class: "steps cards" },
    h("thead", {}, h("tr", {}, ["step", "kind", "preview"].map((t) => h("th", {}, t)))),
    h("tbody", {}, steps.map((s) => h("tr", { class: "step", "data-step": s.name },
      h("td", { "data-label": "step" }, s.name), h("td", { "data-label": "kind" }, s.kind),
      h("td", { "data-label": "preview" },
        s.output !== null && s.output !== undefined ? h("pre", {}, pretty(s.output)) : null,
        s.error ? h("pre", { class: "error" }, s.error) : null))))));
}
