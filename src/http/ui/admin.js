// Status, servers, approvals and the satellite token. Polls the admin API; rows are keyed and
// updated in place so a click never lands on a row that was just replaced.
import { api, badgeRow, el, switchRow, syncRows, toast, copyText } from "./common.js";
import { renderEsphome } from "./esphome.js";

const POLL_MS = 1500;
/** How long a row that left the queue stays, saying how it was decided (e.g. cancelled, and why). */
const SETTLED_SHOWN_MS = 20_000;
/** Server clock minus ours, from the last API answer: countdowns follow the server's deadline. */
let clockSkewMs = 0;
const serverRows = new Map();
const approvalRows = new Map();
let token = "";

function byId(id) {
  return document.getElementById(id);
}

function renderStatus(s) {
  const up = byId("upstream-state");
  up.textContent = s.upstream.state;
  up.className = `badge ${s.upstream.state}`;
  byId("upstream-error").textContent = s.upstream.lastError ? `${s.upstream.lastError}.` : "";
  byId("upstream-hint").textContent = s.upstream.hint ?? "";
  byId("upstream-problem").hidden = !s.upstream.lastError;
  const sessions = Object.entries(s.sessions);
  byId("sessions").textContent = sessions.length ? sessions.map(([k, v]) => `${v} ${k}`).join(", ") : "none";
  const sat = s.satellites;
  const names = (sat.list ?? [])
    .map((d) => (d.dialect && d.dialect !== "v1" ? `${d.name ?? d.id} · ${d.dialect}` : (d.name ?? d.id)))
    .join(", ");
  byId("satellites").textContent =
    `${sat.connected} connected` +
    (sat.conversations !== undefined ? `, ${sat.conversations} in conversation` : "") +
    (names ? ` (${names})` : "");
  byId("pending-count").textContent = String(s.approvals.pending);
}

const PROGRAM_LABEL = { asr: "speech-to-text", handle: "conversation", tts: "text-to-speech" };
const STAGE_LABEL = {
  transcript: "end of speech → transcript",
  handled: "handle → handled",
  first_audio: "synthesize → first audio",
};

function renderWyoming(w) {
  const state = byId("wyoming-state");
  if (!w) {
    state.textContent = "unknown";
    return;
  }
  const label = !w.enabled ? "disabled" : w.listening ? `listening on ${w.port}` : "not listening";
  state.textContent = label;
  state.className = `badge ${w.listening ? "connected" : w.enabled ? "error" : "disconnected"}`;
  byId("wyoming-connections").textContent = String(w.connections);
  const box = byId("wyoming-turns");
  if (w.turns.length === 0) {
    box.replaceChildren(el("div", { class: "empty" }, "No Wyoming calls yet."));
    return;
  }
  box.replaceChildren(
    ...w.turns.map((t) => {
      const stages = Object.entries(t.stages).map(([k, ms]) => `${STAGE_LABEL[k] ?? k}: ${ms} ms`);
      const when = new Date(t.startedAt).toLocaleTimeString();
      const outcome = t.outcome ?? "running";
      return badgeRow(
        { class: "row wyoming-turn" },
        PROGRAM_LABEL[t.program] ?? t.program,
        outcome,
        [when, ...stages, t.durationMs !== undefined ? `total ${t.durationMs} ms` : ""]
          .filter(Boolean)
          .join(" · "),
      );
    }),
  );
}

const refusedRows = new Map();

/** Devices refused on the firmware port, each with an Allow button that lets it in (persisted). */
function renderFirmware(fw) {
  const card = byId("firmware-card");
  card.hidden = !fw;
  if (!fw) return;
  byId("firmware-port").textContent = `Port ${fw.port}: ${fw.dialects.join(", ")}.`;
  const box = byId("firmware-refused");
  const seen = new Set();
  for (const r of fw.refused) {
    seen.add(r.address);
    let entry = refusedRows.get(r.address);
    if (!entry) {
      entry = refusedRow(r);
      refusedRows.set(r.address, entry);
      box.append(entry.row);
    }
    entry.text.textContent = `A device at ${r.address} tried to connect with the ${r.dialect} firmware`;
    entry.secondary.textContent = `${r.attempts} attempt${r.attempts === 1 ? "" : "s"}, last ${new Date(r.lastSeen).toLocaleTimeString()}`;
  }
  for (const [address, entry] of refusedRows)
    if (!seen.has(address)) {
      entry.row.remove();
      refusedRows.delete(address);
    }
  box.querySelector(".empty")?.remove();
  if (refusedRows.size === 0) box.append(el("div", { class: "empty" }, "No device has been refused."));
}

function refusedRow(r) {
  const text = el("div", { class: "name" });
  const secondary = el("div", { class: "secondary" });
  const allow = el("button", { type: "button", class: "raised allow" }, "Allow");
  const row = el(
    "div",
    { class: "row refused", "data-address": r.address },
    el("div", { class: "main" }, text, secondary),
    allow,
  );
  allow.addEventListener("click", async () => {
    allow.disabled = true;
    try {
      const { id } = await api("./api/firmware/allow", { method: "POST", body: { address: r.address } });
      toast(`${r.address} allowed as ${id}`);
      row.remove();
      refusedRows.delete(r.address);
    } catch (err) {
      toast(`Could not allow ${r.address}: ${err.message}`);
      allow.disabled = false;
    }
  });
  return { row, text, secondary };
}

function serverRow(name) {
  const secondary = el("div", { class: "secondary" });
  const error = el("div", { class: "error" });
  const entry = switchRow({
    attrs: { class: "row server", "data-server": name },
    name,
    label: `Enable ${name}`,
    lines: [secondary, error],
    change: async (enabled) => {
      const { server } = await api(`./api/servers/${encodeURIComponent(name)}`, {
        method: "POST",
        body: { enabled },
      });
      updateServer(entry, server, true);
      return `${name} ${enabled ? "enabled" : "disabled"}`;
    },
  });
  return Object.assign(entry, { state: entry.badge, secondary, error });
}

function updateServer(entry, s, force = false) {
  if (entry.busy && !force) return;
  entry.input.checked = s.enabled;
  entry.row.dataset.enabled = String(s.enabled);
  entry.row.dataset.state = s.state;
  entry.dot.className = `dot ${s.state}`;
  entry.state.textContent = s.state;
  entry.state.className = `badge ${s.state}`;
  const parts = [
    s.mode + (s.transport ? ` · ${s.transport}` : ""),
    s.mode === "native" && s.toolCount === 0
      ? "tools listed by OpenAI"
      : `${s.toolCount} tool${s.toolCount === 1 ? "" : "s"}`,
  ];
  if (s.restarts) parts.push(`${s.restarts} restart${s.restarts === 1 ? "" : "s"}`);
  entry.secondary.textContent = parts.join(" · ");
  entry.error.textContent = s.lastError ? `Last error: ${s.lastError}` : "";
}

function renderServers(list) {
  const box = byId("servers");
  // Keeps the API's order (sorted by name).
  syncRows(box, serverRows, list, serverRow, updateServer);
  box.querySelector(".empty")?.remove();
  if (list.length === 0) box.append(el("div", { class: "empty" }, "No MCP servers are configured."));
}

function prettyArgs(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function approvalRow(a) {
  const countdown = el("span", { class: "countdown" });
  const approve = el("button", { type: "button", class: "raised approve" }, "Approve");
  const deny = el("button", { type: "button", class: "danger deny" }, "Deny");
  const secondary = el(
    "div",
    { class: "secondary" },
    a.satelliteId ? `asked by ${a.satelliteId} · ` : "",
    countdown,
    " left",
  );
  const row = el(
    "div",
    { class: "row approval", "data-approval": a.id },
    el(
      "div",
      { class: "main" },
      el("div", { class: "name" }, `${a.server} → ${a.tool}`),
      secondary,
      el("pre", {}, prettyArgs(a.arguments)),
    ),
    deny,
    approve,
  );
  const entry = { row, countdown, secondary, expiresAt: a.expiresAt, settled: false };
  const answer = async (yes) => {
    approve.disabled = deny.disabled = true;
    try {
      await api(`./api/approvals/${encodeURIComponent(a.id)}`, { method: "POST", body: { approve: yes } });
      toast(`${yes ? "Approved" : "Denied"}: ${a.tool}`);
      row.remove();
      approvalRows.delete(a.id);
      showApprovalsEmpty();
    } catch (err) {
      // An approval decided meanwhile: the API says how ("get-sum was already cancelled: …").
      toast(err.code === "unknown_approval" ? err.message : `Failed: ${err.message}`);
      row.remove();
      approvalRows.delete(a.id);
      showApprovalsEmpty();
    }
  };
  approve.addEventListener("click", () => void answer(true));
  deny.addEventListener("click", () => void answer(false));
  return entry;
}

/** How a decision came about, in words for the row that showed it. */
function settledText(s) {
  const verdict = s.approve ? "Approved" : "Denied";
  switch (s.source) {
    case "cancelled":
      return `Cancelled: ${s.reason ?? "the conversation ended."}`;
    case "timeout":
      return `Not run: ${s.reason ?? "nobody answered in time."}`;
    case "satellite":
      return `${verdict} on the device.`;
    default:
      return `${verdict} elsewhere.`;
  }
}

/** Turns a pending row into a note of how it was decided, removed after a while. */
function settleRow(id, entry, s) {
  entry.settled = true;
  entry.row.dataset.settled = s.source;
  entry.row.classList.add("settled");
  for (const b of entry.row.querySelectorAll("button")) b.remove();
  entry.secondary.replaceChildren(settledText(s));
  setTimeout(() => {
    if (approvalRows.get(id) !== entry) return;
    entry.row.remove();
    approvalRows.delete(id);
    showApprovalsEmpty();
  }, SETTLED_SHOWN_MS);
}

function showApprovalsEmpty() {
  const box = byId("approvals");
  const empty = box.querySelector(".empty");
  if (approvalRows.size === 0 && !empty)
    box.append(el("div", { class: "empty" }, "Nothing is waiting for a decision."));
  if (approvalRows.size > 0 && empty) empty.remove();
}

function renderApprovals(body) {
  clockSkewMs = body.now - Date.now();
  const box = byId("approvals");
  const seen = new Set();
  for (const a of body.approvals) {
    seen.add(a.id);
    if (!approvalRows.has(a.id)) {
      const entry = approvalRow(a);
      approvalRows.set(a.id, entry);
      box.append(entry.row);
    }
  }
  for (const [id, entry] of approvalRows) {
    if (seen.has(id) || entry.settled) continue;
    const settled = (body.settled ?? []).find((s) => s.id === id);
    if (settled) {
      settleRow(id, entry, settled);
      continue;
    }
    entry.row.remove();
    approvalRows.delete(id);
  }
  showApprovalsEmpty();
  tickCountdowns();
}

function tickCountdowns() {
  const now = Date.now() + clockSkewMs;
  // At 0 the row stays until the next poll says how it ended ("Not run: nobody approved …").
  for (const entry of approvalRows.values()) {
    if (entry.settled) continue;
    const left = Math.max(0, Math.ceil((entry.expiresAt - now) / 1000));
    entry.countdown.textContent = `${left} s`;
  }
}

async function poll() {
  try {
    const [status, approvals, esphome] = await Promise.all([
      api("./api/status"),
      api("./api/approvals"),
      api("./api/esphome"),
    ]);
    renderStatus(status);
    renderWyoming(status.wyoming);
    renderFirmware(status.firmware);
    renderEsphome(esphome.devices);
    renderServers(status.servers);
    renderApprovals(approvals);
    byId("load-error").hidden = true;
  } catch (err) {
    const e = byId("load-error");
    e.textContent = `Cannot reach the add-on: ${err.message}`;
    e.hidden = false;
  }
}

async function setupToken() {
  const show = byId("token-show");
  const copy = byId("token-copy");
  try {
    const info = await api("./api/satellite");
    token = info.token;
    showSatelliteUrl(info);
  } catch (err) {
    byId("token").textContent = `unavailable (${err.message})`;
    show.disabled = copy.disabled = true;
    return;
  }
  if (token === null) {
    byId("token").textContent =
      "Per-device tokens are configured (satellites.devices); there is no shared token.";
    show.disabled = copy.disabled = true;
    return;
  }
  show.addEventListener("click", () => {
    const shown = show.textContent === "Hide";
    byId("token").textContent = shown ? "••••••••••••••••" : token;
    show.textContent = shown ? "Show" : "Hide";
  });
  copy.addEventListener("click", async () => {
    toast((await copyText(token)) ? "Token copied" : "Copy failed: select the token and copy it by hand");
  });
}

/** `ws://<the host this page came from>:<satellite port>/api/v1/satellite`, with a Copy button. */
function showSatelliteUrl(info) {
  const box = byId("satellite-url");
  if (info.port === undefined) {
    box.textContent = `ws://<Home Assistant host>:8765/${info.path}`;
    return;
  }
  const url = `ws://${location.hostname}:${info.port}/${info.path}`;
  box.textContent = url;
  byId("satellite-url-copy").addEventListener("click", async () => {
    toast((await copyText(url)) ? "URL copied" : "Copy failed: select the URL and copy it by hand");
  });
}

void setupToken();
void poll();
setInterval(() => void poll(), POLL_MS);
setInterval(tickCountdowns, 250);
