// The review page: show the leased item, send single-key decisions, keep progress and history fresh.
// All text from the server goes through textContent (never innerHTML), so it is always escaped.
"use strict";

const $ = (id) => document.getElementById(id);
const HEARTBEAT_MS = 60_000;  // re-ask /api/next to renew the lease while the reviewer looks
const state = {item: null, busy: false, csrf: "", outline: localStorage.getItem("review.outline") !== "off"};

// Every change is a JSON POST carrying the session's CSRF token (the server refuses anything else).
async function api(method, path, payload) {
  const headers = {Accept: "application/json"};
  const options = {method, headers, credentials: "same-origin"};
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = state.csrf;
    options.body = JSON.stringify(payload || {});
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    location.replace("/login");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  return {ok: response.ok, status: response.status, body};
}

function blobUrl(name) {
  return "/blobs/" + encodeURIComponent(name);
}

function toast(message, kind = "info") {
  const el = $("toast");
  el.textContent = message;
  el.className = "toast " + kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2600);
}

function render(item) {
  state.item = item;
  $("card").hidden = !item;
  $("empty").hidden = !!item;
  if (!item) return;
  $("instruction").textContent = item.instruction;
  $("m-op").textContent = item.op;
  $("m-op").dataset.op = item.op;
  $("m-category").textContent = item.category ? "target: " + item.category : "";
  $("m-case").textContent = item.case_size > 1 ? `candidate ${item.case_index} of ${item.case_size}` : "";
  $("m-reviews").textContent = item.required > 1 ? `review ${item.reviews_done + 1} of ${item.required}` : "";
  $("card").dataset.itemId = item.id;
  if (item.size) {
    for (const frame of document.querySelectorAll(".frame")) frame.style.setProperty("--ar", `${item.size[0]} / ${item.size[1]}`);
  }
  $("img-src").src = blobUrl(item.images.src);
  $("img-tgt").src = blobUrl(item.images.tgt);
  $("ol-src").src = blobUrl(item.images.outline);
  $("ol-tgt").src = blobUrl(item.images.outline);
}

function applyOutline() {
  document.body.classList.toggle("outline-off", !state.outline);
  document.querySelector('[data-action="outline"]').setAttribute("aria-pressed", String(state.outline));
}

async function loadNext() {
  const {body} = await api("GET", "/api/next");
  render(body.item || null);
  if (!body.item) await showEmpty();
}

async function showEmpty() {
  const {body} = await api("GET", "/api/progress");
  const skipped = body.skipped || 0;
  $("empty-detail").textContent = body.left
    ? `${body.left} item(s) are still pending: held by other reviewers, waiting for a second opinion, or skipped by you.`
    : "The whole queue is decided. Thank you!";
  $("revisit").hidden = skipped === 0;
  $("revisit").textContent = `Revisit ${skipped} skipped item${skipped === 1 ? "" : "s"}`;
}

async function refreshSide() {
  const [progress, history] = await Promise.all([api("GET", "/api/progress"), api("GET", "/api/history?limit=12")]);
  const p = progress.body;
  $("p-done").textContent = p.done;
  $("p-left").textContent = p.left;
  $("p-mine").textContent = p.mine;
  $("progress-fill").style.width = p.total ? (100 * p.done / p.total).toFixed(1) + "%" : "0%";
  renderHistory(history.body.history || []);
}

function renderHistory(entries) {
  const list = $("history");
  list.replaceChildren(...entries.map((entry) => {
    const li = document.createElement("li");
    li.className = "verdict-" + entry.verdict + (entry.undone ? " undone" : "");
    const thumb = document.createElement("img");
    thumb.src = blobUrl(entry.thumb);
    thumb.alt = "";
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = entry.verdict === "approve" ? "✓" : "✗";
    mark.title = entry.undone ? "undone" : entry.verdict;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = entry.instruction;
    li.append(mark, thumb, text);
    return li;
  }));
  $("history-empty").hidden = entries.length > 0;
}

async function act(action) {
  if (state.busy || !state.item) return;
  state.busy = true;
  flash(action);
  try {
    const {ok, body} = await api("POST", `/api/items/${state.item.id}/${action}`);
    if (!ok) toast(body.detail || "That did not work; moving on.", "warn");
    await loadNext();
  } finally {
    state.busy = false;
  }
  refreshSide();
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  flash("undo");
  try {
    const {ok, body} = await api("POST", "/api/undo");
    if (!ok) toast(body.detail || "Could not undo.", "warn");
    else if (!body.undone) toast("Nothing recent to undo.");
    else if (!body.undone.returned_to_you) toast("Undone. Another reviewer holds that item now.");
    else toast(`Undone: ${body.undone.undone}. Decide again.`);
    await loadNext();
  } finally {
    state.busy = false;
  }
  refreshSide();
}

function flash(action) {
  const button = document.querySelector(`[data-action="${action}"]`);
  if (!button) return;
  button.classList.add("pressed");
  setTimeout(() => button.classList.remove("pressed"), 160);
}

function toggleOutline() {
  state.outline = !state.outline;
  localStorage.setItem("review.outline", state.outline ? "on" : "off");
  applyOutline();
  flash("outline");
}

const KEYS = {a: () => act("approve"), x: () => act("reject"), " ": () => act("skip"),
              Backspace: undo, m: toggleOutline};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target.closest("input, textarea, select")) return;
  const handler = KEYS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!handler) return;
  event.preventDefault();  // space would scroll, backspace might navigate back
  handler();
});

document.querySelectorAll("[data-action]").forEach((button) => {
  button.addEventListener("click", (event) => {
    const action = button.dataset.action;
    event.currentTarget.blur();  // keep keyboard shortcuts on the page, not the button
    if (action === "undo") undo();
    else if (action === "outline") toggleOutline();
    else act(action);
  });
});

$("revisit").addEventListener("click", async () => {
  await api("POST", "/api/skips/clear");
  await loadNext();
  refreshSide();
});

$("signout").addEventListener("click", async () => {
  await api("POST", "/api/logout");
  location.replace("/login");
});

setInterval(async () => {
  if (!state.item || state.busy) return;
  const {body} = await api("GET", "/api/next");
  if (!body.item || body.item.id !== state.item.id) {
    toast("Your hold on that item ran out; here is the next one.", "warn");
    render(body.item || null);
  }
}, HEARTBEAT_MS);

(async function start() {
  applyOutline();
  const {body} = await api("GET", "/api/me");
  $("who").textContent = body.name + (body.admin ? " (admin)" : "");
  state.csrf = body.csrf || "";
  await loadNext();
  await refreshSide();
  document.body.dataset.ready = "1";
})();
