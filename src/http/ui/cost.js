// What the voice costs: the status page's cost card (today's spend against the budget, per device, allow
// more today) and the talk page's cost of each transcript line. Amounts come from the admin API.
import { api, badgeRow, el, toast } from "./common.js";

const POLL_MS = 3000;

/** Dollars as people read them: cents, or four decimals below a cent. */
export function dollars(v) {
  return v !== 0 && Math.abs(v) < 0.01 ? `$${v.toFixed(4)}` : `$${v.toFixed(2)}`;
}

const ROUTE_LABEL = {
  v1: "satellite",
  dialect: "firmware",
  wyoming: "Wyoming",
  esphome: "ESPHome",
  talk: "talk page",
};

function renderCost(c) {
  const byId = (id) => document.getElementById(id);
  const budget = c.budget_usd;
  byId("cost-spent").textContent =
    budget === null ? `${dollars(c.spent_usd)} today` : `${dollars(c.spent_usd)} of ${dollars(budget)} today`;
  const bar = byId("cost-bar");
  bar.hidden = budget === null;
  if (budget !== null) {
    bar.value = Math.min(c.spent_usd, budget);
    bar.max = budget;
  }
  byId("cost-warn").hidden = !c.warn || c.blocked;
  byId("cost-warn").textContent =
    `${Math.round((c.spent_usd / (budget || 1)) * 100)}% of today's budget is spent (warning at ${c.warn_percent}%).`;
  byId("cost-blocked").hidden = !c.blocked;
  byId("cost-unpriced").hidden = c.unpriced_models.length === 0;
  byId("cost-unpriced").textContent =
    `No price known for ${c.unpriced_models.join(", ")}: set cost.prices. Its use is not in these amounts.`;
  byId("cost-allow").hidden = budget === null && c.device_budget_usd === null;
  const box = byId("cost-devices");
  if (c.devices.length === 0) {
    box.replaceChildren(el("div", { class: "empty" }, "Nothing spent today."));
    return;
  }
  box.replaceChildren(
    ...c.devices.map((d) =>
      badgeRow(
        { class: "row cost-device", "data-device": d.device },
        d.device,
        ROUTE_LABEL[d.route] ?? d.route,
        (d.budget_usd === null
          ? dollars(d.spent_usd)
          : `${dollars(d.spent_usd)} of ${dollars(d.budget_usd)}`) +
          (d.blocked ? " · used up" : d.warn ? " · near its budget" : ""),
        c.device_budget_usd !== null && d.blocked && !c.blocked
          ? el("button", { type: "button", onclick: () => allow(d) }, "Allow more")
          : null,
      ),
    ),
  );
}

async function allow(device) {
  const input = document.getElementById("cost-allow-usd");
  const usd = Number(input.value);
  if (!(usd > 0)) return toast("Enter an amount in dollars.");
  try {
    const body = device ? { usd, device: device.device, route: device.route } : { usd };
    renderCost(await api("api/cost/allow", { method: "POST", body }));
    toast(`${dollars(usd)} more allowed today${device ? ` for ${device.device}` : ""}.`);
  } catch (err) {
    toast(err.message);
  }
}

async function poll() {
  try {
    renderCost(await api("api/cost"));
  } catch {
    // The status card shows API failures; the next poll tries again.
  }
  setTimeout(poll, POLL_MS);
}

if (document.getElementById("cost-card")) {
  document.getElementById("cost-allow-button").addEventListener("click", () => allow(null));
  void poll();
}

/**
 * The talk page's line costs: after an answer or a transcript, the items this device was billed since
 * the last call are summed onto the newest line of their kind (answers on the assistant's line, input
 * transcription on yours).
 */
export function lineCosts(device, route) {
  const url = `api/cost/recent?device=${encodeURIComponent(device)}&route=${route}`;
  const key = (i) => `${i.conversation} ${i.at} ${i.kind}`;
  // Items billed before this page opened are not its lines.
  const seen = api(url).then(
    ({ items }) => new Set(items.map(key)),
    () => new Set(),
  );
  return async function annotate(lines) {
    let items;
    try {
      ({ items } = await api(url));
    } catch {
      return;
    }
    const known = await seen;
    const fresh = items.filter((i) => !known.has(key(i)));
    for (const i of fresh) known.add(key(i));
    for (const [kind, node] of [
      ["response", lines.assistant],
      ["transcription", lines.user],
    ]) {
      const mine = fresh.filter((i) => i.kind === kind);
      if (mine.length === 0 || !node) continue;
      const tag = node.querySelector(".cost") ?? node.appendChild(el("span", { class: "cost" }));
      const usd = mine.reduce((a, i) => a + (i.usd ?? 0), Number(tag.dataset.usd ?? 0));
      tag.dataset.usd = String(usd);
      if (mine.some((i) => i.usd === null)) tag.dataset.unpriced = "1";
      tag.textContent = tag.dataset.unpriced ? `${dollars(usd)} + no price known` : dollars(usd);
    }
  };
}
