// The ESPHome voice devices card: each device's connection, who answers its voice assistant, what it
// is doing and its last run's timings, with the "Answer with OpenVoice" switch. Rows are keyed by name
// and updated in place.
import { api, el, switchRow, syncRows } from "./common.js";

const rows = new Map();

/** Words for who answers the device's voice assistant. */
function ownerText(d) {
  if (!d.connected) return "not connected";
  if (d.owner === "openvoice") return "answered by OpenVoice";
  if (d.owner === "other") return "answered by Home Assistant (or another client)";
  return d.take_over ? "OpenVoice is taking it over" : "left to Home Assistant";
}

function timings(t) {
  if (!t) return "";
  const parts = [`last run: ${t.outcome}`];
  if (t.firstAudioMs !== null) parts.push(`first reply audio ${t.firstAudioMs} ms after speech`);
  if (t.totalMs !== null) parts.push(`${(t.totalMs / 1000).toFixed(1)} s in all`);
  if (t.error) parts.push(t.error);
  return parts.join(" · ");
}

function deviceRow(name) {
  const secondary = el("div", { class: "secondary" });
  const last = el("div", { class: "secondary" });
  const error = el("div", { class: "error" });
  const entry = switchRow({
    attrs: { class: "row esphome-device", "data-device": name },
    name,
    label: `Answer ${name} with OpenVoice`,
    title: "Answer with OpenVoice",
    lines: [secondary, last, error],
    change: async (takeOver) => {
      const { device } = await api(`./api/esphome/${encodeURIComponent(name)}`, {
        method: "POST",
        body: { take_over: takeOver },
      });
      update(entry, device, true);
      return (
        device.error ?? `${name}: ${takeOver ? "answered by OpenVoice" : "given back to Home Assistant"}`
      );
    },
  });
  return Object.assign(entry, { phase: entry.badge, secondary, last, error });
}

function update(entry, d, force = false) {
  if (entry.busy && !force) return;
  entry.input.checked = d.take_over;
  const state = d.connected ? (d.owner === "openvoice" ? "up" : "connecting") : "down";
  entry.dot.className = `dot ${state}`;
  entry.phase.textContent = d.phase;
  entry.phase.className = `badge ${state}`;
  entry.secondary.textContent = `${d.host}:${d.port} · ${d.source === "options" ? "listed in the options" : "found in Home Assistant"} · ${ownerText(d)}`;
  entry.last.textContent = timings(d.last_turn);
  entry.error.textContent = d.error ?? "";
}

/** Renders `GET /api/esphome`'s devices; the card stays hidden while there are none. */
export function renderEsphome(devices) {
  const card = document.getElementById("esphome-card");
  card.hidden = devices.length === 0;
  syncRows(document.getElementById("esphome-devices"), rows, devices, deviceRow, update);
}
