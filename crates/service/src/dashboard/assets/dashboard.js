// The overview's live parts: outcome counts from server-sent events, recent legs, the review queue and shadow
// agreement from the admin API. Text goes into the page as text (textContent), never as markup.
"use strict";

const OUTCOMES = ["applied", "agent_won", "agent_changed", "shadow", "no_rule", "no_acw", "expired", "review", "open"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function legHref(key) {
  return "/dashboard/legs/" + [key.connection, key.conversation, key.participant].map(encodeURIComponent).join("/");
}

function badge(outcome) {
  const name = outcome || "open";
  return el("span", { class: "badge badge-" + name.replace(/[^a-z_]/g, "") }, name);
}

function table(caption, head, rows) {
  const t = el("table", {}, el("caption", { class: "visually-hidden" }, caption));
  const tr = el("tr");
  for (const h of head) tr.append(el("th", { scope: "col", class: h.num ? "num" : "" }, ...[].concat(h.label)));
  t.append(el("thead", {}, tr));
  const body = el("tbody");
  for (const row of rows) body.append(row);
  t.append(body);
  return t;
}

function say(container, text, link) {
  container.replaceChildren(el("p", {}, text, ...(link ? [" ", el("a", { href: link.href }, link.label)] : [])));
}

// Fetches admin JSON; answers {status, body} (body null unless 200).
async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  return { status: response.status, body: response.ok ? await response.json() : null };
}

function explain(container, status) {
  if (status === 404) say(container, "Not available on this server.");
  else if (status === 401 || status === 403) say(container, "Sign in to see this.", { href: "/dashboard/login", label: "Sign in" });
  else say(container, "Could not load this (HTTP " + status + ").");
}

function renderOutcomes(container, data) {
  const conns = data.connections || [];
  const head = [{ label: "Outcome" }, ...conns.map((c) => ({ label: [c.name, el("span", { class: "platform" }, c.platform)], num: true }))];
  const rows = [];
  const total = el("tr", {}, el("th", { scope: "row" }, "legs"));
  for (const c of conns) total.append(el("td", { class: "num", "data-connection": c.name, "data-outcome": "legs" }, c.legs));
  rows.push(total);
  for (const outcome of OUTCOMES) {
    const tr = el("tr", {}, el("th", { scope: "row" }, badge(outcome)));
    for (const c of conns) {
      tr.append(el("td", { class: "num", "data-connection": c.name, "data-outcome": outcome }, (c.outcomes || {})[outcome] || 0));
    }
    rows.push(tr);
  }
  container.replaceChildren(table("Legs per outcome, per connection", head, rows));
}

async function loadRecent(container) {
  const { status, body } = await getJson("/api/v1/legs?limit=20");
  if (status !== 200) return explain(container, status);
  if (!body.length) return say(container, "No legs yet.");
  const head = [{ label: "Leg" }, { label: "Outcome" }, { label: "Decision" }, { label: "Code on the leg" }, { label: "Queue" }, { label: "Connection" }];
  const rows = body.map((leg) => {
    const d = leg.decision;
    const rule = d && d.source ? (d.source.kind === "rule" ? d.source.name : d.source.source || "") : "";
    const decision = d ? d.code_name + (rule ? " · " + rule : "") : "—";
    return el(
      "tr", {},
      el("td", {}, el("a", { href: legHref(leg.key), class: "mono" }, leg.key.participant.slice(0, 13))),
      el("td", {}, badge(leg.outcome)),
      el("td", {}, decision),
      el("td", { class: "mono" }, leg.observed_code || "—"),
      el("td", {}, (leg.facts && (leg.facts.queue_name || leg.facts.queue_id)) || "—"),
      el("td", {}, leg.key.connection),
    );
  });
  container.replaceChildren(table("The newest legs", head, rows));
}

async function loadReview(container) {
  const { status, body } = await getJson("/api/v1/review?include_expired=false");
  if (status !== 200) return explain(container, status);
  const items = body.items || [];
  if (!items.length) return say(container, "No leg waits for a person.");
  const list = el("ul");
  for (const item of items) {
    list.append(el("li", {}, el("a", { href: legHref(item.leg.key), class: "mono" }, item.leg.key.connection + " · " + item.leg.key.participant), " — ", item.reason || ""));
  }
  container.replaceChildren(list);
}

async function loadAgreement(container) {
  const { status, body } = await getJson("/api/v1/report?since=1d");
  if (status !== 200) return explain(container, status);
  const parts = [];
  for (const conn of body.connections || []) {
    const rules = conn.shadow_agreement || [];
    if (!rules.length) continue;
    const head = [{ label: "Rule" }, { label: "Legs", num: true }, { label: "Agreed", num: true }, { label: "Rate", num: true }];
    const rows = rules.map((r) =>
      el("tr", {}, el("th", { scope: "row" }, r.rule), el("td", { class: "num" }, r.legs), el("td", { class: "num" }, r.agreed),
        el("td", { class: "num" }, r.rate == null ? "—" : (r.rate * 100).toFixed(1) + " %")),
    );
    parts.push(el("h3", {}, conn.name), table("Shadow agreement on " + conn.name, head, rows));
  }
  if (!parts.length) return say(container, "No shadow rule decided a leg that an agent coded in the last day.");
  container.replaceChildren(...parts);
}

function startLive(container, status, onChange) {
  if (!window.EventSource) return say(container, "This browser cannot receive live updates.");
  let updates = 0;
  const source = new EventSource("/api/v1/events");
  source.addEventListener("outcomes", (event) => {
    updates += 1;
    container.dataset.updates = String(updates);
    renderOutcomes(container, JSON.parse(event.data));
    status.textContent = "Live · updated " + new Date().toLocaleTimeString();
    onChange();
  });
  source.addEventListener("error", () => {
    status.textContent = "Reconnecting…";
  });
}

function guard(container, promise) {
  promise.catch(() => say(container, "Could not reach the server."));
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live) return;
  const recent = document.getElementById("recent");
  const review = document.getElementById("review");
  const agreement = document.getElementById("agreement");
  // Outcome changes refresh the lists too, at most every few seconds.
  let lastRefresh = 0;
  const refresh = () => {
    if (Date.now() - lastRefresh < 4000) return;
    lastRefresh = Date.now();
    guard(recent, loadRecent(recent));
    guard(review, loadReview(review));
  };
  startLive(live, document.getElementById("live-status"), refresh);
  refresh();
  guard(agreement, loadAgreement(agreement));
  document.getElementById("recent-refresh").addEventListener("click", () => {
    lastRefresh = 0;
    refresh();
  });
});
