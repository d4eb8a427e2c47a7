// The remediator console: plain ES modules, no framework, no network beyond this daemon's /api/.
// This module routes (the hash), refreshes and keeps the token; the views live beside it.

import { approvalPage } from "./approvals.js";
import { auditPage } from "./audit.js";
import { overview } from "./overview.js";
import { eventDetail, results } from "./results.js";
import { TOKEN_KEY, absolute, notice, token, view } from "./util.js";

const REFRESH_MS = 3000;
let timer = null;
let drawing = Promise.resolve();

// One render at a time, each drawing the view the hash names when it starts: a slow one
// (an overview started before a link was followed) must not land over a newer one.
function render() {
  drawing = drawing.then(draw, draw);
  return drawing;
}

async function draw() {
  const hash = location.hash || "#/";
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.dataset.view === "overview" ? hash === "#/"
      : hash.startsWith(`#/${link.dataset.view}`);
    link.classList.toggle("current", current);
  }
  try {
    if (hash.startsWith("#/event/")) await eventDetail(decodeURIComponent(hash.slice(8)));
    else if (hash.startsWith("#/approvals/")) await approvalPage(decodeURIComponent(hash.slice(12)), render);
    else if (hash.startsWith("#/results")) await results();
    else if (hash.startsWith("#/audit")) await auditPage();
    else await overview(render);
    document.getElementById("refreshed").textContent = `updated ${absolute(new Date())}`;
  } catch (error) {
    notice(`cannot reach the daemon: ${error}`, "error");
  }
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(() => {
    const live = document.getElementById("live").checked;
    const still = location.hash.startsWith("#/event/") || location.hash.startsWith("#/approvals/");
    const busy = document.getElementById("confirm") || document.getElementById("run-editor");
    if (live && !document.hidden && !still && !busy) render();
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
