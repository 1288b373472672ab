// ansim support page: plain JavaScript against the JSON API, no build step.
// Every value from the server is inserted with textContent, never as HTML.
// Every word on the page comes from the message catalogue of the chosen
// language (/assets/i18n/{ko,en}.json); this file holds none.
"use strict";

const TOKEN_KEY = "ansim.token";
const LANG_KEY = "ansim.lang";
const TZ_KEY = "ansim.tz";
const COOKIE = "ansim_token";
const LANGS = ["ko", "en"];
const DEFAULT_TZ = "Asia/Seoul";
const SPEEDS = [1, 1.25, 1.5, 2];
const SKIP_S = 5;
const BUCKET_MS = 50;

let me = null;        // { id, name, role }
let current = null;   // id of the dispute on screen
let lang = "ko";
let zone = DEFAULT_TZ;
let messages = {};
let players = [];     // the recordings' players on screen
let active = null;    // the player the shortcuts drive

const $ = (id) => document.getElementById(id);

// ---- messages, dates, numbers ------------------------------------------

function t(key, vars) {
  const text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (vars && name in vars ? String(vars[name]) : m));
}

// A server value (direction, result, state) in words, or as it came.
function term(prefix, value) {
  const key = `${prefix}.${value}`;
  return value == null ? "" : (key in messages ? messages[key] : String(value));
}

function plural(prefix, count) {
  return t(`${prefix}.${new Intl.PluralRules(lang).select(count) === "one" ? "one" : "other"}`, { count });
}

function when(ms) {
  if (ms == null) return "";
  return new Intl.DateTimeFormat(lang, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZone: zone, timeZoneName: "short",
  }).format(new Date(ms));
}

function seconds(ms) {
  if (ms == null) return "";
  const value = new Intl.NumberFormat(lang, { minimumFractionDigits: 1, maximumFractionDigits: 1 })
    .format(ms / 1000);
  return t("unit.seconds", { value });
}

// A position in the recording, m:ss.s (language-neutral digits).
function clock(s) {
  const v = Math.max(0, s || 0);
  const m = Math.floor(v / 60);
  return `${m}:${(v - m * 60).toFixed(1).padStart(4, "0")}`;
}

function pickLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language]) {
    const base = String(l).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  // The server's choice from Accept-Language.
  const served = document.documentElement.lang;
  return LANGS.includes(served) ? served : "ko";
}

async function loadMessages(l) {
  const r = await fetch(`/assets/i18n/${l}.json`);
  if (!r.ok) throw new Error(`${r.status}`);
  messages = await r.json();
  lang = l;
  document.documentElement.lang = l;
}

// Fills every element that names a message.
function translatePage() {
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-placeholder]")) {
    e.placeholder = t(e.dataset.i18nPlaceholder);
  }
  document.title = t("app.title");
  $("lang").value = lang;
  fillZones();
}

function fillZones() {
  const device = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = [[DEFAULT_TZ, DEFAULT_TZ]];
  if (device !== DEFAULT_TZ) zones.push([device, t("tz.device", { zone: device })]);
  if (!zones.some(([z]) => z === "UTC")) zones.push(["UTC", "UTC"]);
  const sel = $("tz");
  sel.replaceChildren(...zones.map(([value, label]) => {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }));
  if (!zones.some(([z]) => z === zone)) zone = DEFAULT_TZ;
  sel.value = zone;
}

// Redraws what holds words or dates after a language or zone change.
async function rerender() {
  translatePage();
  if (me) {
    showMe();
    await loadDisputes();
    if (current) await showDispute(current);
  }
}

// ---- the API -----------------------------------------------------------

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

function announce(msg) {
  $("status").textContent = msg;
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
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Error(t("error.network"));
  }
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) {
    const detail = data && data.detail ? data.detail : r.statusText;
    const err = new Error(t("error.prefix", { status: r.status, detail }));
    err.status = r.status;
    throw err;
  }
  return data;
}

// The rows of a list answer: `{"items": […]}` (paginated lists) or the
// older `{"<name>": […]}`. The one place that knows a list's shape.
function listItems(data, name) {
  if (data && Array.isArray(data.items)) return data.items;
  return data && Array.isArray(data[name]) ? data[name] : [];
}

// ---- small DOM helpers ---------------------------------------------------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e && !k.includes("-")) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function row(cells) {
  return el("tr", {}, ...cells.map((c) => el("td", {}, c)));
}

function button(text, onClick, cls) {
  const b = el("button", { type: "button", className: cls || "" }, text);
  b.addEventListener("click", onClick);
  return b;
}

// ---- signing in ----------------------------------------------------------

function showMe() {
  $("me-text").textContent = t("me.signed_in", { name: me.name, role: term("role", me.role) });
  $("me-role").textContent = me.role;
}

async function signIn(tok) {
  sessionStorage.setItem(TOKEN_KEY, tok);
  try {
    me = await api("GET", "/v1/me");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  setAudioCookie(tok);
  showMe();
  $("whoami").hidden = false;
  $("signin-panel").hidden = true;
  $("disputes-panel").hidden = false;
  $("open-dispute").hidden = me.role !== "support";
  await loadDisputes();
}

function stopPlayers() {
  for (const p of players) p.audio.pause();
  players = [];
  active = null;
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  setAudioCookie(null);
  me = null;
  current = null;
  stopPlayers();
  $("whoami").hidden = true;
  $("signin-panel").hidden = false;
  $("disputes-panel").hidden = true;
  $("dispute-panel").hidden = true;
  $("token").value = "";
  showError("");
}

// ---- disputes: search, list, open --------------------------------------

async function loadDisputes() {
  const q = new URLSearchParams({ state: $("search-state").value });
  const ticket = $("search-ticket").value.trim();
  if (ticket) q.set("ticket", ticket);
  const data = await api("GET", `/v1/disputes?${q}`);
  const found = listItems(data, "disputes");
  const body = $("disputes").querySelector("tbody");
  body.replaceChildren(...found.map((d) => {
    const open = button(d.ticket, () => run(() => showDispute(d.id)), "link");
    open.setAttribute("aria-label", t("dispute.open_link", { ticket: d.ticket }));
    const state = d.resolved_at ? "resolved" : "open";
    const tr = row([open, d.reason, d.call_ids.length, when(d.opened_at),
                    el("span", { className: `badge ${state}` }, t(`state.${state}`))]);
    tr.dataset.dispute = d.id;
    tr.dataset.ticket = d.ticket;
    return tr;
  }));
  const count = found.length ? t("search.found", { count: found.length }) : t("search.none");
  $("search-count").textContent = count;
  announce(count);
}

async function listSessionCalls() {
  const session = $("open-session").value.trim();
  const data = await api("GET", `/v1/calls?session=${encodeURIComponent(session)}`);
  const calls = listItems(data, "calls");
  const body = $("session-calls").querySelector("tbody");
  body.replaceChildren(...calls.map((c) => {
    const box = el("input", { type: "checkbox", value: c.id, className: "pick" });
    box.setAttribute("aria-label", t("open.pick_call", { time: when(c.invite_at) }));
    const tr = row([box, when(c.invite_at), term("direction", c.direction),
                    seconds(c.duration_ms), term("result", c.result)]);
    tr.dataset.call = c.id;
    return tr;
  }));
  if (calls.length === 0) body.append(el("tr", {}, el("td", { colSpan: 5 }, t("open.no_calls"))));
  $("open-form").hidden = false;
}

async function openDispute() {
  const picked = [...$("session-calls").querySelectorAll("input.pick:checked")].map((b) => b.value);
  if (picked.length === 0) throw new Error(t("open.pick_one"));
  const body = { call_ids: picked, ticket: $("open-ticket").value.trim(), reason: $("open-reason").value.trim() };
  const r = await api("POST", "/v1/disputes", body);
  $("open-form").reset();
  $("open-dispute").open = false;
  await loadDisputes();
  await showDispute(r.id);
}

// ---- one dispute ---------------------------------------------------------

function grantRow(g) {
  const action = el("span");
  const canApprove = me.role === "supervisor" && g.status === "pending" &&
    g.requested_by !== me.id;
  if (canApprove) {
    action.append(button(t("grant.approve"), () => run(async () => {
      await api("POST", `/v1/grants/${encodeURIComponent(g.id)}/approve`);
      await showDispute(current);
    }), "approve"));
  }
  const tr = row([g.requested_by_name || g.requested_by, when(g.requested_at),
                  el("span", { className: `badge ${g.status}` }, term("grant", g.status)),
                  g.approved_by_name || "", when(g.expires_at), action]);
  tr.dataset.grant = g.id;
  tr.dataset.status = g.status;
  return tr;
}

function listeners(r) {
  const ul = el("ul", { className: "listeners" });
  for (const l of r.listened) {
    ul.append(el("li", {}, `${t("rec.listener", {
      name: l.name || l.staff_id, from: when(l.first_at), to: when(l.last_at),
    })} ${plural("rec.requests", l.requests)}`));
  }
  if (r.listened.length === 0) ul.append(el("li", { className: "muted" }, t("rec.nobody")));
  return ul;
}

function recordingBlock(r, canPlay) {
  const title = `${t("rec.title", { call: r.call_id })}: ${term("rec.state", r.state)}` +
    (r.duration_ms != null ? `, ${seconds(r.duration_ms)}` : "");
  const div = el("article", { className: "recording", dataset: { recording: r.id } },
                 el("h4", {}, title));
  if (r.state === "erased") {
    div.append(el("p", { className: "muted" }, t("rec.erased", { time: when(r.erased_at) })));
  } else if (canPlay) {
    const p = new Player(r);
    players.push(p);
    if (!active) active = p;
    div.append(p.root);
  } else {
    div.append(el("p", { className: "muted" }, ["support", "supervisor"].includes(me.role)
      ? t("rec.need_grant") : t("rec.staff_only")));
  }
  div.append(el("h5", {}, t("rec.listened")), listeners(r));
  return div;
}

async function showDispute(id) {
  const data = await api("GET", `/v1/disputes/${encodeURIComponent(id)}`);
  current = id;
  const d = data;
  $("dispute-panel").hidden = false;
  $("d-title").textContent = t("dispute.title", { ticket: d.ticket });
  $("d-reason").textContent = d.reason;
  $("d-state").textContent = d.resolved_at ? t("dispute.resolved_at", { time: when(d.resolved_at) })
    : t("state.open");
  const open = !d.resolved_at;
  $("request-grant").hidden = !open || !["support", "supervisor"].includes(me.role);
  $("resolve").hidden = !open;

  $("calls").querySelector("tbody").replaceChildren(...data.calls.map((c) =>
    row([c.id, term("direction", c.direction), when(c.invite_at), when(c.answer_at),
         seconds(c.duration_ms), term("result", c.result)])));
  $("grants").querySelector("tbody").replaceChildren(...data.grants.map(grantRow));

  const mine = data.grants.some((g) => g.status === "approved" && g.requested_by === me.id);
  stopPlayers();
  $("recordings").replaceChildren(...data.recordings.map((r) => recordingBlock(r, open && mine)));
}

// ---- the player: waveform, channels, speed --------------------------------

class Player {
  constructor(rec) {
    this.rec = rec;
    this.wave = null;
    this.resume = null;   // where a channel switch resumes, while it loads
    this.channels = "both";
    this.audio = el("audio", { controls: true, preload: "metadata", className: "audio" });
    this.audio.setAttribute("aria-label", t("player.audio"));
    this.audio.src = this.src();
    this.canvas = el("canvas", { className: "wave", tabIndex: 0, height: 160, role: "img" });
    this.canvas.setAttribute("aria-label", t("wave.label"));
    this.canvas.setAttribute("aria-describedby", `speech-${rec.id}`);
    this.status = el("p", { className: "hint" }, t("wave.loading"));
    this.position = el("output", { className: "position" }, `${clock(0)} / ${clock(0)}`);
    this.position.setAttribute("aria-label", t("player.position"));
    this.speech = el("div", { className: "speech", id: `speech-${rec.id}` });
    this.root = el("div", { className: "player" },
      el("div", { className: "wave-box" }, this.canvas),
      el("p", { className: "hint legend" }, t("wave.legend")), this.status,
      this.controls(), this.audio, this.speech);
    this.audio.addEventListener("timeupdate", () => this.tick());
    this.audio.addEventListener("loadedmetadata", () => this.tick());
    this.audio.addEventListener("play", () => { this.sync(); this.animate(); });
    this.audio.addEventListener("pause", () => this.sync());
    this.canvas.addEventListener("click", (ev) => this.seekAt(ev));
    this.canvas.addEventListener("focus", () => { active = this; });
    this.root.addEventListener("pointerdown", () => { active = this; });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    this.load();
  }

  src() {
    const base = `/v1/recordings/${encodeURIComponent(this.rec.id)}/audio`;
    return this.channels === "both" ? base : `${base}?channels=${this.channels}`;
  }

  controls() {
    this.play = button(t("player.play"), () => this.toggle(), "play");
    const back = button(t("player.back"), () => this.skip(-SKIP_S), "back");
    const fwd = button(t("player.forward"), () => this.skip(SKIP_S), "forward");
    const group = el("fieldset", { className: "channels" }, el("legend", {}, t("player.channels")));
    this.radios = {};
    for (const [value, key] of [["caller", "1"], ["callee", "2"], ["both", "3"]]) {
      const id = `ch-${this.rec.id}-${value}`;
      const radio = el("input", { type: "radio", name: `ch-${this.rec.id}`, value, id, checked: value === "both" });
      radio.setAttribute("aria-keyshortcuts", key);
      radio.addEventListener("change", () => this.setChannels(value));
      this.radios[value] = radio;
      group.append(el("span", { className: "choice" }, radio, el("label", { htmlFor: id }, t(`player.${value}`))));
    }
    const speedId = `speed-${this.rec.id}`;
    this.speed = el("select", { id: speedId, className: "speed" },
      ...SPEEDS.map((s) => el("option", { value: String(s) },
        t("speed.x", { value: new Intl.NumberFormat(lang).format(s) }))));
    this.speed.addEventListener("change", () => this.setSpeed(Number(this.speed.value)));
    return el("div", { className: "controls" }, this.play, back, fwd, group,
      el("span", { className: "field" }, el("label", { htmlFor: speedId }, t("player.speed")), this.speed),
      this.position);
  }

  async load() {
    try {
      const path = `/v1/recordings/${encodeURIComponent(this.rec.id)}/waveform?bucket_ms=${BUCKET_MS}`;
      this.wave = await api("GET", path);
      this.status.remove();
      this.speechList();
      this.draw();
      this.canvas.dataset.drawn = "true";
    } catch (e) {
      this.status.textContent = t("wave.failed", { why: e.message });
    }
  }

  duration() {
    const d = this.audio.duration;
    return Number.isFinite(d) && d > 0 ? d : (this.wave ? this.wave.duration_ms / 1000 : 0);
  }

  // The stretches of speech as a list of buttons that seek: the canvas's
  // text alternative, and a quick way to the next sentence.
  speechList() {
    this.speech.replaceChildren(el("h5", {}, t("speech.title")));
    for (const side of ["caller", "callee"]) {
      const stretches = this.wave[side].speech;
      const ul = el("ul", { className: `stretches ${side}` });
      for (const [from, to] of stretches) {
        const b = button(t("speech.seek", { from: clock(from / 1000), to: clock(to / 1000) }),
          () => this.seek(from / 1000), "stretch");
        ul.append(el("li", {}, b));
      }
      if (stretches.length === 0) ul.append(el("li", { className: "muted" }, t("speech.none")));
      this.speech.append(el("div", { className: "side" }, el("h6", {}, t(`speech.${side}`)), ul));
    }
  }

  draw() {
    const c = this.canvas;
    const width = Math.max(1, Math.round(c.clientWidth || 600));
    if (c.width !== width) c.width = width;
    const g = c.getContext("2d");
    const h = c.height;
    g.fillStyle = "#ffffff";
    g.fillRect(0, 0, width, h);
    if (!this.wave) return;
    const half = h / 2;
    this.drawChannel(g, this.wave.caller, 0, half, t("wave.caller"));
    this.drawChannel(g, this.wave.callee, half, half, t("wave.callee"));
    g.fillStyle = "#5b6570";
    g.fillRect(0, half, width, 1);
    const dur = this.duration();
    if (dur > 0) {
      const x = Math.min(width - 2, Math.round((this.audio.currentTime / dur) * width));
      g.fillStyle = "#b3261e";
      g.fillRect(x, 0, 2, h);
      g.beginPath();
      g.moveTo(x - 5, 0); g.lineTo(x + 7, 0); g.lineTo(x + 1, 8);
      g.fill();
    }
  }

  // One channel in a band `top`..`top+band`: the peaks above a strip
  // where hatching marks speech (a pattern, not a colour alone).
  drawChannel(g, ch, top, band, label) {
    const width = this.canvas.width;
    const strip = 10;
    const mid = top + (band - strip) / 2;
    const scale = (band - strip - 4) / 2 / 32768;
    const n = ch.min.length;
    g.fillStyle = "#1f3a5f";
    for (let x = 0; x < width && n > 0; x++) {
      const a = Math.floor((x * n) / width);
      const b = Math.max(a + 1, Math.floor(((x + 1) * n) / width));
      let lo = 0, hi = 0;
      for (let i = a; i < b && i < n; i++) { lo = Math.min(lo, ch.min[i]); hi = Math.max(hi, ch.max[i]); }
      const y0 = Math.round(mid - hi * scale);
      const y1 = Math.round(mid - lo * scale);
      g.fillRect(x, y0, 1, Math.max(1, y1 - y0));
    }
    const total = this.wave.duration_ms || 1;
    const y = top + band - strip;
    for (const [from, to] of ch.speech) {
      const x0 = Math.floor((from / total) * width);
      const x1 = Math.max(x0 + 2, Math.ceil((to / total) * width));
      g.fillStyle = "#0b6e4f";
      g.fillRect(x0, y + 1, x1 - x0, strip - 2);
      g.fillStyle = "#ffffff";
      for (let x = x0 - strip; x < x1; x += 5) {
        for (let k = 0; k < strip - 2; k++) {
          const px = x + k;
          if (px >= x0 && px < x1) g.fillRect(px, y + 1 + k, 1, 1);
        }
      }
    }
    g.fillStyle = "#1d232b";
    g.font = "12px system-ui, sans-serif";
    g.fillText(label, 4, top + 13);
  }

  tick() {
    this.position.textContent = `${clock(this.audio.currentTime)} / ${clock(this.duration())}`;
    this.draw();
  }

  animate() {
    const step = () => {
      this.tick();
      if (!this.audio.paused) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  sync() {
    this.play.textContent = this.audio.paused ? t("player.play") : t("player.pause");
    this.play.setAttribute("aria-pressed", String(!this.audio.paused));
  }

  toggle() {
    active = this;
    if (this.audio.paused) this.audio.play().catch((e) => showError(String(e)));
    else this.audio.pause();
  }

  seek(s) {
    active = this;
    const d = this.duration();
    this.audio.currentTime = Math.max(0, d > 0 ? Math.min(d, s) : s);
    this.tick();
  }

  skip(ds) {
    this.seek(this.audio.currentTime + ds);
  }

  seekAt(ev) {
    const box = this.canvas.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (ev.clientX - box.left) / box.width));
    this.seek(frac * this.duration());
  }

  // Another side (or both): the same position, speed and play state.
  setChannels(value) {
    active = this;
    if (value === this.channels) return;
    this.channels = value;
    this.radios[value].checked = true;
    // A switch still loading keeps the place it was going back to.
    const resume = this.resume || {
      at: this.audio.currentTime, playing: !this.audio.paused, rate: this.audio.playbackRate,
    };
    this.resume = resume;
    this.audio.src = this.src();
    this.audio.addEventListener("loadedmetadata", () => {
      if (this.resume !== resume) return;
      this.resume = null;
      this.audio.currentTime = resume.at;
      this.audio.playbackRate = resume.rate;
      if (resume.playing) this.audio.play().catch((e) => showError(String(e)));
    }, { once: true });
    announce(t(`player.${value}`));
  }

  setSpeed(rate) {
    this.audio.preservesPitch = true;
    this.audio.defaultPlaybackRate = rate;
    this.audio.playbackRate = rate;
    this.speed.value = String(rate);
  }
}

// ---- shortcuts -----------------------------------------------------------

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || $("help").open) return;
  if (ev.key === "?") {
    if (typing(ev.target)) return;
    ev.preventDefault();
    openHelp();
    return;
  }
  const p = active;
  if (!p || typing(ev.target)) return;
  const onButton = ev.target instanceof HTMLElement &&
    ["BUTTON", "SUMMARY", "A", "AUDIO"].includes(ev.target.tagName);
  const action = {
    " ": () => p.toggle(),
    ArrowLeft: () => p.skip(-SKIP_S),
    ArrowRight: () => p.skip(SKIP_S),
    1: () => p.setChannels("caller"),
    2: () => p.setChannels("callee"),
    3: () => p.setChannels("both"),
  }[ev.key];
  if (!action || (onButton && [" ", "ArrowLeft", "ArrowRight"].includes(ev.key))) return;
  ev.preventDefault();
  action();
}

function openHelp() {
  const d = $("help");
  if (!d.open) d.showModal();
  $("help-close").focus();
}

// ---- start ---------------------------------------------------------------

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

function submit(id, action) {
  $(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(action);
  });
}

document.addEventListener("DOMContentLoaded", () => run(async () => {
  zone = localStorage.getItem(TZ_KEY) || DEFAULT_TZ;
  await loadMessages(pickLang());
  translatePage();
  document.body.dataset.ready = "true";
  submit("signin-form", () => signIn($("token").value.trim()));
  submit("search-form", loadDisputes);
  submit("session-form", listSessionCalls);
  submit("open-form", openDispute);
  $("signout").addEventListener("click", signOut);
  $("search-state").addEventListener("change", () => run(loadDisputes));
  $("lang").addEventListener("change", () => run(async () => {
    localStorage.setItem(LANG_KEY, $("lang").value);
    await loadMessages($("lang").value);
    await rerender();
  }));
  $("tz").addEventListener("change", () => run(async () => {
    zone = $("tz").value;
    localStorage.setItem(TZ_KEY, zone);
    await rerender();
  }));
  $("help-open").addEventListener("click", openHelp);
  $("help-close").addEventListener("click", () => $("help").close());
  $("request-grant").addEventListener("click", () => run(async () => {
    await api("POST", `/v1/disputes/${encodeURIComponent(current)}/grants`);
    await showDispute(current);
  }));
  $("resolve").addEventListener("click", () => run(async () => {
    await api("POST", `/v1/disputes/${encodeURIComponent(current)}/resolve`);
    await Promise.all([showDispute(current), loadDisputes()]);
  }));
  document.addEventListener("keydown", onKey);
  const saved = token();
  if (saved) await signIn(saved);
}));
