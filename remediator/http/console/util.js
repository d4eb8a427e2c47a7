// Shared by the console's views: building nodes, calling /api/, times, statuses, confirmation.
// Every value from the API is put into the page as text (never as HTML): results carry event data.

export const TOKEN_KEY = "remediator.token";
export const view = document.getElementById("view");

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

export function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

export async function api(path, options = {}) {
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

export function notice(text, kind = "info") {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

export function failed(reply) {
  const message = reply.body && reply.body.error ? reply.body.error : "request failed";
  view.replaceChildren(h("p", { class: "error" }, `${reply.status}: ${message}`));
}

// --- times: one format everywhere -------------------------------------------------------------
// Relative in the page ("5m ago", "in 29m"), the absolute time on hover: the browser's time
// zone, 24-hour clock, to the second.

const ABSOLUTE = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hourCycle: "h23", timeZoneName: "short",
});

export function absolute(date) {
  const parts = Object.fromEntries(ABSOLUTE.formatToParts(date).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`
    + (parts.timeZoneName ? ` ${parts.timeZoneName}` : "");
}

export function ago(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  const [n, unit] = abs >= 86400 ? [abs / 86400, "d"] : abs >= 3600 ? [abs / 3600, "h"]
    : abs >= 60 ? [abs / 60, "m"] : [abs, "s"];
  const text = `${Math.floor(n)}${unit}`;
  return seconds < 0 ? `in ${text}` : `${text} ago`;
}

export function when(iso, prefix = "") {
  if (!iso) return h("span", { class: "muted" }, "-");
  const date = new Date(iso);
  return h("time", { datetime: date.toISOString(), title: absolute(date) }, prefix + ago(iso));
}

export function duration(ms) {
  if (typeof ms !== "number") return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(ms / 60000)}m${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}s`;
}

// --- statuses: the server's list (model.RESULT_STATUSES), fetched once ------------------------

let statusList = null;

export async function statuses() {
  if (statusList) return statusList;
  const reply = await api("/api/statuses");
  if (!reply.ok) return [];  // asked again once a token is saved
  statusList = reply.body.statuses;
  return statusList;
}

export function badge(status, text = status) {
  return h("span", { class: `badge s-${status}` }, text);
}

export function legend(list) {
  return h("div", { class: "legend", "aria-label": "statuses" }, list.map((s) => badge(s)));
}

export function wrap(table) { return h("div", { class: "table-wrap" }, table); }

export function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

export function list(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  return [];
}

// --- confirmation: every act asks first, in the page (no inline script or style needed) ------

export function confirmAct(question, { reason = null, danger = false } = {}) {
  return new Promise((resolve) => {
    const input = reason === null ? null
      : h("input", { name: "reason", value: reason, "aria-label": "reason" });
    const dialog = h("dialog", { id: "confirm" },
      h("form", { method: "dialog" },
        h("p", {}, question),
        input ? h("label", {}, "Reason ", input) : null,
        h("div", { class: "buttons" },
          h("button", { value: "cancel", "data-confirm": "cancel" }, "Cancel"),
          h("button", { value: "ok", "data-confirm": "ok", class: danger ? "danger" : "primary" },
            "Confirm"))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok" ? { reason: input ? input.value : "" } : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export async function act(path, body, done) {
  const reply = await api(path, { method: "POST", body });
  const message = reply.body && (reply.body.message || reply.body.error);
  notice(reply.ok ? (message || done(reply.body)) : `${reply.status}: ${message || "refused"}`,
    reply.ok ? "info" : "error");
  return reply;
}
