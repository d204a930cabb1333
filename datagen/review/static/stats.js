// Queue statistics page. Data goes into the page only through textContent.
"use strict";

const $ = (id) => document.getElementById(id);

let csrf = null;  // the session's CSRF token (from /api/me), sent with every change

async function getJson(path, method = "GET") {
  const options = {method, credentials: "same-origin"};
  if (method !== "GET") {
    if (csrf === null) csrf = (await getJson("/api/me")).csrf || "";
    options.headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf};
    options.body = "{}";
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    location.replace("/login");
    throw new Error("signed out");
  }
  return response.json();
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function row(values) {
  const tr = document.createElement("tr");
  tr.append(...values.map(cell));
  return tr;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");

function tile(label, value, kind) {
  const div = document.createElement("div");
  div.className = "tile " + (kind || "");
  const v = document.createElement("div");
  v.className = "value";
  v.textContent = value;
  const l = document.createElement("div");
  l.className = "label";
  l.textContent = label;
  div.append(v, l);
  return div;
}

function resolveButtons(item) {
  const td = document.createElement("td");
  for (const verdict of ["approve", "reject"]) {
    const button = document.createElement("button");
    button.textContent = verdict === "approve" ? "Approve" : "Reject";
    button.addEventListener("click", async () => {
      await getJson(`/api/items/${item.id}/resolve/${verdict}`, "POST");
      load();
    });
    td.append(button, " ");
  }
  return td;
}

function showRouting(r) {
  $("routing-table").hidden = !r;
  if (!r) return;
  const routed = r.routes.map((x) => `${x.n} ${x.route}${x.predicted ? " " + x.predicted : ""}`).join(", ");
  $("routing").textContent = `Rule ${r.version} (auto-approve at ≥ ${pct(r.targets.approve_precision)} precision, ` +
    `audit ${pct(r.audit_rate)} of its calls): ${routed || "nothing routed yet"}.`;
  $("routing-audit").replaceChildren(...Object.entries(r.audit).map(([call, a]) =>
    row([call, a.decided, a.agreed, a.precision === null ? "–" : pct(a.precision)])));
}

async function load() {
  const [me, s] = await Promise.all([getJson("/api/me"), getJson("/api/stats")]);
  $("who").textContent = me.name + (me.admin ? " (admin)" : "");
  const b = s.by_status;
  $("tiles").replaceChildren(
    tile("items", s.total), tile("pending", b.pending), tile("approved", b.approved, "approved"),
    tile("rejected", b.rejected, "rejected"), tile("conflicted", b.conflicted, "conflicted"),
    tile("held right now", s.leased_now), tile("decisions, last hour", s.decisions_last_hour));
  const a = s.agreement;
  $("agreement").textContent = a.items
    ? `${a.items} items have two or more reviews: ${pct(a.unanimous)} unanimous, pairwise agreement ` +
      `${pct(a.pairwise)}, Fleiss' kappa ${a.kappa ?? "–"}. Rule: ${s.settings.agreement}, ` +
      `${s.settings.reviews_per_item} review(s) per item.`
    : `No item has two reviews yet. Rule: ${s.settings.agreement}, ${s.settings.reviews_per_item} review(s) per item.`;
  $("reviewers").replaceChildren(...s.reviewers.map((r) =>
    row([r.reviewer, r.decisions, pct(r.approve_rate), pct(r.agreement), r.skips, r.undos])));
  showRouting(s.routing);
  $("ops").replaceChildren(...Object.entries(s.by_op).map(([op, c]) =>
    row([op, c.pending, c.approved, c.rejected, c.conflicted])));
  $("resolve-head").hidden = !me.admin;
  $("no-conflicts").hidden = s.conflicted.length > 0;
  $("conflicted-table").hidden = s.conflicted.length === 0;
  $("conflicted").replaceChildren(...s.conflicted.map((item) => {
    const tr = row([item.id, item.instruction, item.votes.map((v) => `${v.reviewer}: ${v.verdict}`).join(", ")]);
    if (me.admin) tr.append(resolveButtons(item));
    return tr;
  }));
}

load();
