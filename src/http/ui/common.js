// Shared by the UI pages. Every URL is relative to the page so the UI works under any ingress prefix.

/** Calls the admin API; resolves with the JSON body, rejects with an Error carrying the API error code. */
export async function api(path, init = {}) {
  const headers = { accept: "application/json" };
  const opts = { ...init, headers };
  if (init.body !== undefined) {
    headers["content-type"] = "application/json";
    opts.body = JSON.stringify(init.body);
  }
  const res = await fetch(new URL(path, document.baseURI), opts);
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const err = new Error(body?.error?.message ?? `${res.status} ${res.statusText}`);
    err.code = body?.error?.code ?? "http_" + res.status;
    throw err;
  }
  return body;
}

/** Creates an element: el("div", {class: "x"}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  return node;
}

/** A list row: a name with a badge, a secondary line under it, and optional trailing controls. */
export function badgeRow(attrs, name, badge, secondary, ...controls) {
  return el(
    "div",
    attrs,
    el(
      "div",
      { class: "main" },
      el("div", { class: "name" }, `${name} `, el("span", { class: "badge" }, badge)),
      el("div", { class: "secondary" }, secondary),
    ),
    ...controls,
  );
}

/**
 * A list row with a status dot, a name and badge, lines under it and an on/off switch. Flipping the
 * switch calls `change(on)`, which returns the toast's words; while it runs the switch is disabled and
 * `entry.busy` is true (so polling leaves the row alone); on failure the switch flips back.
 */
export function switchRow({ attrs, name, label, title, lines, change }) {
  const input = el("input", { type: "checkbox", role: "switch", "aria-label": label });
  const sw = el(
    "label",
    { class: "switch", ...(title ? { title } : {}) },
    input,
    el("span", { class: "track" }),
    el("span", { class: "thumb" }),
  );
  const dot = el("span", { class: "dot" });
  const badge = el("span", { class: "badge" });
  const row = el(
    "div",
    attrs,
    dot,
    el("div", { class: "main" }, el("div", { class: "name" }, name, " ", badge), ...lines),
    sw,
  );
  const entry = { row, input, dot, badge, busy: false };
  input.addEventListener("change", async () => {
    const on = input.checked;
    entry.busy = true;
    input.disabled = true;
    try {
      toast(await change(on, entry));
    } catch (err) {
      input.checked = !on;
      toast(`Could not change ${name}: ${err.message}`);
    } finally {
      entry.busy = false;
      input.disabled = false;
    }
  });
  return entry;
}

/**
 * Shows `items` in `box` as rows kept in `rows` (a Map by `item.name`): a new name gets `create(name)`,
 * every row is refreshed with `update(entry, item)` and appended in the items' order (moving an attached
 * node is cheap), and rows whose name is gone are removed.
 */
export function syncRows(box, rows, items, create, update) {
  const seen = new Set();
  for (const item of items) {
    seen.add(item.name);
    let entry = rows.get(item.name);
    if (!entry) {
      entry = create(item.name);
      rows.set(item.name, entry);
    }
    update(entry, item);
    box.append(entry.row);
  }
  for (const [name, entry] of rows)
    if (!seen.has(name)) {
      entry.row.remove();
      rows.delete(name);
    }
}

let toastTimer;
/** A short message at the bottom of the page. */
export function toast(text) {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 2500);
}

/** Copies text to the clipboard, falling back to a selection when the Clipboard API is unavailable. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { style: "position:fixed;opacity:0" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
