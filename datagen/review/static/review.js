// The review page: show the leased item, send single-key decisions, keep progress and history fresh.
// All text from the server goes through textContent (never innerHTML), so it is always escaped.
"use strict";

const $ = (id) => document.getElementById(id);
const HEARTBEAT_MS = 60_000;  // re-ask /api/next to renew the lease while the reviewer looks
const state = {
  item: null, busy: false, csrf: "", reasons: {}, struck: new Set(), picking: false,
  outline: localStorage.getItem("review.outline") !== "off",
  fill: localStorage.getItem("review.fill") === "on",
};

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
  if (item && (!state.item || state.item.id !== item.id)) window.scrollTo(0, 0);  // a new item starts at the top
  state.item = item;
  state.struck = new Set();
  closeReasons();
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
  renderParaphrases();
  paintFill();
}

function renderParaphrases() {
  const list = $("paraphrases");
  const phrases = state.item.paraphrases || [];
  list.replaceChildren(...phrases.map((text, index) => {
    const li = document.createElement("li");
    li.dataset.index = index;
    li.className = state.struck.has(index) ? "struck" : "";
    li.title = state.struck.has(index) ? "struck: will not be published (click to keep)" : "click to strike";
    const key = document.createElement("kbd");
    key.textContent = String(index + 1);
    const span = document.createElement("span");
    span.textContent = text;
    li.append(key, span);
    li.addEventListener("click", () => toggleStrike(index));
    return li;
  }));
  $("para-none").hidden = phrases.length > 0;
}

function toggleStrike(index) {
  if (!state.item || index >= (state.item.paraphrases || []).length) return;
  if (state.struck.has(index)) state.struck.delete(index);
  else state.struck.add(index);
  renderParaphrases();
}

// The filled mask: the mask PNG (255 = edit region) turned into a translucent tint on a canvas.
// Drawn on the page because the CSP allows only images from this site (no blob: or data: URLs).
async function paintFill() {
  document.body.classList.toggle("fill-on", state.fill);
  if (!state.fill || !state.item) return;
  const name = state.item.images.mask;
  if ($("fill-src").dataset.mask === name) return;
  const image = new Image();
  image.src = blobUrl(name);
  await image.decode();
  for (const canvas of [$("fill-src"), $("fill-tgt")]) {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const inside = d[i] > 127;
      d[i] = 255; d[i + 1] = 70; d[i + 2] = 200; d[i + 3] = inside ? 120 : 0;
    }
    ctx.putImageData(pixels, 0, 0);
    canvas.dataset.mask = name;
  }
}

function applyToggles() {
  document.body.classList.toggle("outline-off", !state.outline);
  document.querySelector('[data-action="outline"]').setAttribute("aria-pressed", String(state.outline));
  document.querySelector('[data-action="fill"]').setAttribute("aria-pressed", String(state.fill));
  paintFill();
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
    li.className = "verdict-" + entry.verdict + (entry.undone ? " undone" : " reopenable");
    li.dataset.decisionId = entry.decision_id;
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
    if (entry.reason) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = state.reasons[entry.reason] || entry.reason;
      text.prepend(reason);
    }
    li.append(mark, thumb, text);
    if (!entry.undone) {
      li.tabIndex = 0;
      li.title = "Reopen this decision";
      li.addEventListener("click", () => undo(entry.decision_id));
    }
    return li;
  }));
  $("history-empty").hidden = entries.length > 0;
}

async function act(action, extra = {}) {
  if (state.busy || !state.item) return;
  setBusy(true);
  flash(action);
  const payload = action === "skip" ? {} : {struck: [...state.struck], ...extra};
  try {
    const {ok, body} = await api("POST", `/api/items/${state.item.id}/${action}`, payload);
    if (!ok) toast(body.detail || "That did not work; moving on.", "warn");
    await loadNext();
  } finally {
    setBusy(false);
  }
  refreshSide();
}

function openReasons() {
  if (!state.item) return;
  state.picking = true;
  $("reasons").hidden = false;
  flash("reject");
}

function closeReasons() {
  state.picking = false;
  $("reasons").hidden = true;
  $("note").value = "";
  if (document.activeElement === $("note")) $("note").blur();
}

function reject(reason) {
  const note = $("note").value.trim();
  closeReasons();
  act("reject", {...(reason ? {reason} : {}), ...(note ? {note} : {})});
}

async function undo(decisionId) {
  if (state.busy) return;
  setBusy(true);
  flash("undo");
  try {
    const {ok, body} = await api("POST", "/api/undo", decisionId ? {decision_id: decisionId} : {});
    if (!ok) toast(body.detail || "Could not undo.", "warn");
    else if (!body.undone) toast("Nothing recent to undo.");
    else if (!body.undone.returned_to_you) toast("Undone. Another reviewer holds that item now.");
    else toast(`Reopened (was ${body.undone.undone}). Decide again.`);
    await loadNext();
  } finally {
    setBusy(false);
  }
  refreshSide();
}

// Keys pressed while a request is in flight are dropped; body[data-busy] lets tests wait it out.
function setBusy(busy) {
  state.busy = busy;
  document.body.dataset.busy = busy ? "1" : "0";
}

function flash(action) {
  const button = document.querySelector(`[data-action="${action}"]`);
  if (!button) return;
  button.classList.add("pressed");
  setTimeout(() => button.classList.remove("pressed"), 160);
}

function toggle(name) {
  state[name] = !state[name];
  localStorage.setItem("review." + name, state[name] ? "on" : "off");
  applyToggles();
  flash(name);
}

const KEYS = {a: () => act("approve"), x: () => (state.picking ? reject(null) : openReasons()),
              " ": () => act("skip"), Backspace: () => undo(), m: () => toggle("outline"),
              f: () => toggle("fill"), Escape: closeReasons};

function reasonKey(digit) {
  const keys = Object.keys(state.reasons);
  return keys[digit - 1];
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target === $("note")) {
    if (event.key === "Enter") { event.preventDefault(); reject(null); }
    else if (event.key === "Escape") { event.preventDefault(); closeReasons(); }
    return;
  }
  if (event.target.closest("input, textarea, select")) return;
  if (/^[1-9]$/.test(event.key)) {
    event.preventDefault();
    const digit = Number(event.key);
    if (state.picking) { if (reasonKey(digit)) reject(reasonKey(digit)); }
    else toggleStrike(digit - 1);
    return;
  }
  const handler = KEYS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!handler) return;
  event.preventDefault();  // space would scroll, backspace might navigate back
  if (state.picking && event.key.toLowerCase() !== "x" && event.key !== "Escape") closeReasons();
  handler();
});

document.querySelectorAll("[data-action]").forEach((button) => {
  button.addEventListener("click", (event) => {
    const action = button.dataset.action;
    event.currentTarget.blur();  // keep keyboard shortcuts on the page, not the button
    if (action === "undo") undo();
    else if (action === "outline" || action === "fill") toggle(action);
    else if (action === "reject") (state.picking ? reject(null) : openReasons());
    else act(action);
  });
});

function renderReasonButtons() {
  $("reason-buttons").replaceChildren(...Object.entries(state.reasons).map(([key, label], index) => {
    const button = document.createElement("button");
    button.className = "key reason";
    button.dataset.reason = key;
    const kbd = document.createElement("kbd");
    kbd.textContent = String(index + 1);
    button.append(kbd, " " + label);
    button.addEventListener("click", () => reject(key));
    return button;
  }));
}

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
  applyToggles();
  const {body} = await api("GET", "/api/me");
  $("who").textContent = body.name + (body.admin ? " (admin)" : "");
  state.csrf = body.csrf || "";
  state.reasons = body.reject_reasons || {};
  renderReasonButtons();
  await loadNext();
  await refreshSide();
  document.body.dataset.ready = "1";
})();
