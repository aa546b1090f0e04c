// The dashboard's shell: hash routes to pages, the API key, and what a key's scopes allow.
// Each page is an async function that fills <main> and registers what to stop on leave.

import { api, can, on, session, setKey, setScopes } from "./api.js";
import { $, $$, el, errorBox, fill } from "./dom.js";
import * as datasets from "./pages/datasets.js";
import * as jobs from "./pages/jobs.js";
import * as models from "./pages/models.js";
import * as sweeps from "./pages/sweeps.js";
import { openapi } from "./schema.js";

// The first page: the jobs, or the models for a key that may only use models.
async function home(ctx) {
  if (!can("read") && can("models")) return models.list(ctx);
  return jobs.list(ctx);
}

const ROUTES = [
  [[], home],
  [["datasets"], datasets.list],
  [["datasets", ":id"], datasets.detail],
  [["train"], jobs.trainForm],
  [["jobs"], jobs.list],
  [["jobs", ":id"], jobs.detail],
  [["sweeps"], sweeps.list],
  [["sweeps", "new"], sweeps.form],
  [["sweeps", ":id"], sweeps.detail],
  [["models"], models.list],
  [["models", ":name"], models.model],
  [["models", ":name", "compare"], models.compare],
  [["models", ":name", ":version"], models.version],
];

let current = null; // the page on screen: {cleanups, alive}
let firstRoute = true;

function match(segments) {
  for (const [pattern, page] of ROUTES) {
    if (pattern.length !== segments.length) continue;
    const params = {};
    if (pattern.every((part, i) => (part.startsWith(":") ? ((params[part.slice(1)] = segments[i]), true) : part === segments[i]))) {
      return { page, params };
    }
  }
  return null;
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor
  if (current) {
    current.alive = false;
    current.cleanups.forEach((fn) => fn());
  }
  const [pathPart, queryPart = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const segments = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  const found = match(segments);
  const view = $("#view");
  const page = { cleanups: [], alive: true };
  current = page;
  const section = segments[0] || "jobs";
  for (const a of $$("#nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  fill(view);
  const ctx = {
    view,
    params: found ? found.params : {},
    query: new URLSearchParams(queryPart),
    alive: () => page.alive,
    onLeave: (fn) => page.cleanups.push(fn),
    // Run fn now and every ms while the page is shown (the next run waits for this one).
    every(fn, ms) {
      let timer = null;
      const tick = async () => {
        if (!page.alive) return;
        let again = true;
        try {
          again = (await fn()) !== false;
        } finally {
          if (page.alive && again) timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
        }
      };
      page.cleanups.push(() => clearTimeout(timer));
      return tick();
    },
    go,
  };
  if (!found) {
    view.append(el("h1", { text: "Not found", tabindex: "-1" }), el("p", {}, "No page at this address. ", el("a", { href: "#/", text: "Back to the jobs" })));
  } else {
    try {
      await found.page(ctx);
    } catch (exc) {
      if (page.alive) view.append(errorBox(exc, "show this page"));
    }
  }
  if (!page.alive) return;
  applyScopes(view);
  const heading = $("h1", view);
  if (heading && !firstRoute && !view.contains(document.activeElement)) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
  firstRoute = false;
  document.title = heading ? `${heading.textContent} · trainserve` : "trainserve dashboard";
}

// ---- scopes ---------------------------------------------------------------

// Controls marked data-scope="train" are disabled (links hidden) when the key lacks it.
export function applyScopes(root = document) {
  for (const node of $$("[data-scope]", root)) {
    const scope = node.dataset.scope;
    const allowed = can(scope);
    const why = `Your API key does not have the “${scope}” scope.`;
    if (node.tagName === "A" || node.dataset.scopeHide !== undefined) {
      node.hidden = !allowed;
    } else if ("disabled" in node) {
      if (!allowed && !node.disabled) {
        node.disabled = true;
        node.dataset.scopeDisabled = "";
        node.title = why;
      } else if (allowed && node.dataset.scopeDisabled !== undefined) {
        node.disabled = false;
        delete node.dataset.scopeDisabled;
        node.removeAttribute("title");
      }
    } else {
      node.classList.toggle("not-allowed", !allowed);
    }
  }
  for (const note of $$("[data-scope-note]", root)) {
    const scope = note.dataset.scopeNote;
    note.hidden = can(scope);
    note.textContent = `Your API key does not have the “${scope}” scope, so this is read-only here. Ask an administrator for a key with it (trainserve keys create --scope ${scope}).`;
  }
  renderKeyStatus();
}

function renderKeyStatus() {
  const status = $("#key-status");
  if (!session.key) {
    status.textContent = "";
    return;
  }
  const scopes = session.scopes ? [...session.scopes].join(", ") : null;
  const denied = [...session.denied];
  status.textContent = `key ${session.key.slice(0, 7)}…${scopes ? ` · scopes: ${scopes}` : ""}${!scopes && denied.length ? ` · without: ${denied.join(", ")}` : ""}`;
}

// Learn the key's scopes, if the API has an endpoint that tells (else 403s teach us).
async function loadIdentity() {
  try {
    const doc = await openapi();
    const path = Object.keys(doc.paths).find((p) => /\/(whoami|me|keys\/current)$/.test(p));
    if (!path) return;
    const me = await api(path);
    if (me && Array.isArray(me.scopes)) setScopes(me.scopes, me.tenant);
  } catch {
    /* not known: everything stays enabled until a 403 says otherwise */
  }
}

// ---- the key dialog -------------------------------------------------------

function askForKey(reason) {
  const dialog = $("#key-dialog");
  $("#key-reason").textContent = reason || "";
  $("#key-forget").hidden = !session.key;
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

function setupSkipLink() {
  $(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    const heading = $("#view h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    } else $("#view").focus();
  });
}

function setupKey() {
  const dialog = $("#key-dialog");
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    $("#key-input").value = "";
    dialog.close();
    $("#notice").hidden = true; // a refusal of the previous key no longer applies
    setKey(key);
    loadIdentity().then(() => route());
  });
  $("#key-cancel").addEventListener("click", () => dialog.close());
  $("#key-forget").addEventListener("click", () => {
    dialog.close();
    setKey(null);
    route();
  });
  $("#change-key").addEventListener("click", () => askForKey("Enter another API key."));
  let asked = false;
  on("unauthorized", () => {
    const reason = session.key ? "That API key was refused (unknown or revoked); enter another one." : "This server needs an API key.";
    const notice = $("#notice");
    notice.textContent = reason;
    notice.hidden = false;
    if (!asked || session.key) askForKey(reason);
    asked = true;
  });
  on("scopes", () => applyScopes(document));
}

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  setupSkipLink();
  // Nodes added later (lists refreshed, rows appended) get the same treatment.
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && (node.matches("[data-scope],[data-scope-note]") || node.querySelector("[data-scope],[data-scope-note]"))) applyScopes(node.parentNode || node);
      }
    }
  }).observe($("#view"), { childList: true, subtree: true });
  window.addEventListener("hashchange", () => {
    $("#notice").hidden = true;
    route();
  });
  loadIdentity().finally(route);
});
