// ansim support page: plain JavaScript against the JSON API, no build step.
// Every value from the server is inserted with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "ansim.token";
const COOKIE = "ansim_token";
let me = null;        // { id, name, role }
let current = null;   // id of the dispute on screen

const $ = (id) => document.getElementById(id);

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// The audio player cannot send an Authorization header: the token also
// goes into a cookie the server accepts only for GET .../audio.
function setAudioCookie(value) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  const life = value ? "" : "; Max-Age=0";
  document.cookie = `${COOKIE}=${value || ""}; Path=/v1/recordings/; SameSite=Strict${secure}${life}`;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) {
    const why = data && data.detail ? data.detail : r.statusText;
    const err = new Error(`${r.status}: ${why}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

function when(ms) {
  return ms == null ? "" : new Date(ms).toLocaleString();
}

function seconds(ms) {
  return ms == null ? "" : `${(ms / 1000).toFixed(1)} s`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c ?? "";
    tr.appendChild(td);
  }
  return tr;
}

function button(text, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

async function signIn(t) {
  sessionStorage.setItem(TOKEN_KEY, t);
  try {
    me = await api("GET", "/v1/me");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  setAudioCookie(t);
  $("me-name").textContent = me.name;
  $("me-role").textContent = me.role;
  $("whoami").hidden = false;
  $("signin-panel").hidden = true;
  $("disputes-panel").hidden = false;
  $("open-dispute").hidden = me.role !== "support";
  await loadDisputes();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  setAudioCookie(null);
  me = null;
  current = null;
  for (const a of document.querySelectorAll("audio")) a.pause();
  $("whoami").hidden = true;
  $("signin-panel").hidden = false;
  $("disputes-panel").hidden = true;
  $("dispute-panel").hidden = true;
  $("token").value = "";
  showError("");
}

async function loadDisputes() {
  const all = $("show-resolved").checked;
  const data = await api("GET", `/v1/disputes?limit=500${all ? "&all=true" : ""}`);
  const body = $("disputes").querySelector("tbody");
  body.replaceChildren();
  for (const d of data.items) {
    const tr = row([d.ticket, d.reason, d.call_ids.length, when(d.opened_at),
                    d.resolved_at ? "resolved" : "open"]);
    tr.className = "link";
    tr.dataset.dispute = d.id;
    tr.addEventListener("click", () => run(() => showDispute(d.id)));
    body.appendChild(tr);
  }
}

function grantRow(g) {
  const action = document.createElement("span");
  const canApprove = me.role === "supervisor" && g.status === "pending" &&
    g.requested_by !== me.id;
  if (canApprove) {
    action.appendChild(button("Approve", () => run(async () => {
      await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/approve`);
      await showDispute(current);
    }), "approve"));
  }
  const tr = row([g.requested_by_name || g.requested_by, when(g.requested_at),
                  g.status, g.approved_by_name || "", when(g.expires_at), action]);
  tr.dataset.grant = g.id;
  return tr;
}

function recordingBlock(r, canPlay) {
  const div = document.createElement("div");
  div.className = "recording";
  div.dataset.recording = r.id;
  const title = document.createElement("div");
  title.textContent = `Recording of call ${r.call_id}: ${r.state}` +
    (r.duration_ms != null ? `, ${seconds(r.duration_ms)}` : "");
  div.appendChild(title);
  if (r.state === "erased") {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = `Erased ${when(r.erased_at)}.`;
    div.appendChild(p);
  } else if (canPlay) {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = `/v1/recordings/${encodeURIComponent(r.id)}/audio`;
    div.appendChild(audio);
  } else {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = ["support", "supervisor"].includes(me.role)
      ? "Playback needs an approved grant of yours on this open dispute."
      : "Playback is for support staff who hold an approved grant.";
    div.appendChild(p);
  }
  const h = document.createElement("h4");
  h.textContent = "Who has listened";
  div.appendChild(h);
  const ul = document.createElement("ul");
  ul.className = "listeners";
  for (const l of r.listened) {
    const li = document.createElement("li");
    li.textContent = `${l.name || l.staff_id}: ${when(l.first_at)} to ${when(l.last_at)} ` +
      `(${l.requests} request${l.requests === 1 ? "" : "s"})`;
    ul.appendChild(li);
  }
  if (r.listened.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "nobody yet";
    ul.appendChild(li);
  }
  div.appendChild(ul);
  return div;
}

async function showDispute(id) {
  const data = await api("GET", `/v1/disputes/${encodeURIComponent(id)}`);
  current = id;
  const d = data;
  $("dispute-panel").hidden = false;
  $("d-ticket").textContent = d.ticket;
  $("d-reason").textContent = d.reason;
  $("d-state").textContent = d.resolved_at ? `resolved ${when(d.resolved_at)}` : "open";
  const open = !d.resolved_at;
  $("request-grant").hidden = !open || !["support", "supervisor"].includes(me.role);
  $("resolve").hidden = !open;

  const calls = $("calls").querySelector("tbody");
  calls.replaceChildren();
  for (const c of data.calls) {
    calls.appendChild(row([c.id, c.direction, when(c.invite_at), when(c.answer_at),
                           seconds(c.duration_ms), c.result]));
  }
  const grants = $("grants").querySelector("tbody");
  grants.replaceChildren();
  for (const g of data.grants) grants.appendChild(grantRow(g));

  const mine = data.grants.some((g) => g.status === "approved" && g.requested_by === me.id);
  const canPlay = open && mine;
  const recs = $("recordings");
  for (const a of recs.querySelectorAll("audio")) a.pause();
  recs.replaceChildren(...data.recordings.map((r) => recordingBlock(r, canPlay)));
}

// Runs an action, showing its error instead of failing silently.
async function run(action) {
  showError("");
  try {
    await action();
  } catch (e) {
    if (e.status === 401) signOut();
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(() => signIn($("token").value.trim()));
  });
  $("signout").addEventListener("click", signOut);
  $("show-resolved").addEventListener("change", () => run(loadDisputes));
  $("request-grant").addEventListener("click", () => run(async () => {
    await api("POST", `/v1/disputes/${encodeURIComponent(current)}/grants`);
    await showDispute(current);
  }));
  $("resolve").addEventListener("click", () => run(async () => {
    await api("POST", `/v1/disputes/${encodeURIComponent(current)}/resolve`);
    await Promise.all([showDispute(current), loadDisputes()]);
  }));
  $("open-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(async () => {
      const body = {
        call_ids: $("open-calls").value.split(",").map((s) => s.trim()).filter(Boolean),
        ticket: $("open-ticket").value.trim(),
        reason: $("open-reason").value.trim(),
      };
      const r = await api("POST", "/v1/disputes", body);
      await loadDisputes();
      await showDispute(r.id);
    });
  });
  const saved = token();
  if (saved) run(() => signIn(saved));
});
