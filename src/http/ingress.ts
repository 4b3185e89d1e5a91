/**
 * The ingress admin UI and API, a Fastify plugin for the ingress instance.
 *
 * Home Assistant's Supervisor proxies `/api/hassio_ingress/<token>/…` to this instance with the
 * prefix stripped and passed as `X-Ingress-Path`. Every URL in the UI is relative, so the same
 * files work under any prefix; pages also get a `<base href>` from `X-Ingress-Path` so they work
 * when opened without a trailing slash.
 *
 * API (JSON; errors are `{error:{code,message}}` from the registry in `src/errors.ts`):
 * - `GET  /api/status`          upstream (with `hint`: what to check when it has an error), sessions,
 *                                satellites, servers, pending approvals, Wyoming
 * - `GET  /api/servers`         `{servers: ServerStatus[]}`
 * - `POST /api/servers/:name`   `{enabled: boolean}` → `{server}`; applied live, persisted
 * - `GET  /api/approvals`       `{now, approvals: [...], settled: [...]}` pending, oldest first, and the
 *                                decisions of the last minutes, newest first (`{id, server, tool,
 *                                approve, source, reason?, settledAt}`: how a row that left was decided)
 * - `POST /api/approvals/:id`   `{approve: boolean}` → `{id, approve}`; answered with source `ingress`;
 *                                one already decided is `unknown_approval` with how it was decided
 * - `POST /api/firmware/allow`  `{address}` → `{address, id}`; a device refused on the firmware port
 *                                may connect from now on (persisted)
 * - `GET  /api/esphome`         `{devices: [...]}` ESPHome voice devices (keys never shown)
 * - `POST /api/esphome/:name`   `{take_over: boolean}` → `{device}`; kept in /data
 * - `POST /api/esphome/:name/announce` `{text}` → `{ok: true}` once the device played it
 * - `GET  /api/satellite`       `{protocol, path, token, talkToken, port?}`: the shared satellite token
 *                                (null with per-device tokens only), the talk page's token and the
 *                                satellite port (for the URL shown beside the token)
 *
 * Bodies must be `application/json`, so a cross-site form cannot post here (a JSON post from another
 * origin needs a CORS preflight, which this plugin never grants).
 */
import { existsSync } from "node:fs";
import type { CostMeter } from "../cost/meter.js";
import { registerCostApi } from "./cost-api.js";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { z } from "zod";
import type { ApprovalQueue, PendingApproval, SettledApproval } from "../approvals/queue.js";
import type { EsphomeAdmin } from "../esphome/admin.js";
import { ApiError, apiErrorBody, type ApiErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { ServerStatus } from "../mcp/types.js";
import type { ServerAdmin } from "../state/server-admin.js";
import type { WyomingActivitySnapshot } from "../wyoming/activity.js";
import { normalizeAddress } from "../net/address.js";

export type { ServerAdmin } from "../state/server-admin.js";

/** What the status page shows besides the servers; the composition root fills it from the engine. */
export interface StatusSnapshot {
  readonly upstream: {
    /** e.g. `connected` | `connecting` | `disconnected` | `error`. */
    readonly state: string;
    readonly url?: string;
    readonly lastError?: string;
    /** What to check about `lastError` (e.g. "check openai.api_key"). */
    readonly hint?: string;
  };
  /** Realtime sessions by state (e.g. `{warm: 1, active: 2}`). */
  readonly sessions: Readonly<Record<string, number>>;
  readonly satellites: {
    readonly connected: number;
    readonly conversations?: number;
    /** Connected satellites, when known (`id`, optional `name`, the wire `dialect`). */
    readonly list?: readonly { readonly id: string; readonly name?: string; readonly dialect?: string }[];
  };
  /** The firmware port, when a dialect is enabled: devices refused there, for the Allow button. */
  readonly firmware?: {
    readonly port: number;
    readonly dialects: readonly string[];
    readonly refused: readonly FirmwareRefusal[];
  };
  readonly version?: string;
  /** The Wyoming service: listening, connections, last turns with their stage timings. */
  readonly wyoming?: WyomingActivitySnapshot;
}

/** A device refused on the firmware port (`a device at <address> tried to connect with <dialect>`). */
export interface FirmwareRefusal {
  readonly address: string;
  readonly dialect: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly attempts: number;
}

export interface IngressOptions {
  readonly servers: ServerAdmin;
  readonly approvals: ApprovalQueue;
  readonly status: () => StatusSnapshot;
  /**
   * The shared satellite token shown in the UI for setting up devices; undefined when only
   * per-device tokens are configured.
   */
  readonly satelliteToken: () => string | undefined;
  /**
   * The token the talk page puts in its `hello` to the satellite route mounted on the ingress
   * instance. Default: `satelliteToken()`. See DOCS.md (ingress) for why an ingress-only token is enough.
   */
  readonly talkToken?: () => string;
  /** Spend and budgets (`/api/cost`). */
  readonly cost?: CostMeter;
  readonly logger: Logger;
  /**
   * When set, requests from any other address get 403 `forbidden` (as an add-on: `["172.30.32.2"]`).
   * The ingress server may enforce this itself for the whole instance; this covers the plugin's routes.
   */
  readonly allowedAddresses?: readonly string[];
  /**
   * Allows a device refused on the firmware port, from now on and after restarts; resolves with the
   * device id, or null when that address was not refused. Unset: no firmware port.
   */
  readonly allowFirmwareDevice?: (address: string) => Promise<{ id: string } | null>;
  /** Directory of the UI files; defaults to `src/http/ui` of this package. */
  readonly uiDir?: string;
  /** The satellite port, shown as part of the satellite URL beside the token. */
  readonly satellitePort?: () => number | undefined;
  /** The ESPHome devices, once that part has loaded (null before, and when `esphome.enabled` is false). */
  readonly esphome?: () => EsphomeAdmin | null;
}

const NameParams = z.object({ name: z.string().min(1).max(200) });
const IdParams = z.object({ id: z.string().min(1).max(200) });
const ToggleBody = z.object({ enabled: z.boolean() }).strict();
const AnswerBody = z.object({ approve: z.boolean() }).strict();
const AllowBody = z.object({ address: z.string().min(1).max(64) }).strict();
const TakeOverBody = z.object({ take_over: z.boolean() }).strict();
const AnnounceBody = z.object({ text: z.string().trim().min(1).max(2000) }).strict();

/** `X-Ingress-Path` values we put into a page: a plain absolute path, nothing that could break out. */
const INGRESS_PATH_RE = /^\/[A-Za-z0-9._~/-]{0,200}$/;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Files served from the UI directory, by URL path. `/` and `/talk` are the two pages. */
const UI_ROUTES: Readonly<Record<string, string>> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/talk": "talk.html",
  "/talk.html": "talk.html",
  "/style.css": "style.css",
  "/common.js": "common.js",
  "/admin.js": "admin.js",
  "/esphome.js": "esphome.js",
  "/talk.js": "talk.js",
  "/cost.js": "cost.js",
  "/mic-worklet.js": "mic-worklet.js",
  "/icon.svg": "icon.svg",
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "media-src 'self' blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
} as const;

/** An `onRequest` hook that answers 403 `forbidden` to every peer not in `allowed`. */
export function restrictToAddresses(allowed: readonly string[]): onRequestHookHandler {
  const set = new Set(allowed.map(normalizeAddress));
  return (request, reply, done) => {
    if (set.has(normalizeAddress(request.socket.remoteAddress))) {
      done();
      return;
    }
    void reply.code(403).send(apiErrorBody("forbidden"));
  };
}

/** `ui/` beside this module: src/http/ui from source, dist/ui in the build (build.ts copies it). */
function defaultUiDir(): string {
  const dir = fileURLToPath(new URL("./ui/", import.meta.url));
  if (existsSync(`${dir}index.html`)) return dir;
  throw new Error(`ingress UI files not found in ${dir}`);
}

async function loadUi(dir: string): Promise<Map<string, { body: Buffer; type: string }>> {
  const files = new Map<string, { body: Buffer; type: string }>();
  const base = dir.endsWith("/") ? dir : `${dir}/`;
  for (const file of new Set(Object.values(UI_ROUTES))) {
    const ext = file.slice(file.lastIndexOf("."));
    files.set(file, {
      body: await readFile(`${base}${file}`),
      type: CONTENT_TYPES[ext] ?? "application/octet-stream",
    });
  }
  return files;
}

function withBase(html: Buffer, ingressPath: string | undefined): Buffer {
  if (ingressPath === undefined || !INGRESS_PATH_RE.test(ingressPath)) return html;
  const href = ingressPath.endsWith("/") ? ingressPath : `${ingressPath}/`;
  // Inside Home Assistant's panel (which has its own title bar) the pages drop their app bar.
  const page = html
    .toString("utf8")
    .replace('<html lang="en">', '<html lang="en" class="ingress">')
    .replace("<head>", `<head>\n    <base href="${href}" />`);
  return Buffer.from(page, "utf8");
}

/**
 * What to check when the Realtime upstream fails, from its last error (the messages of
 * `src/realtime/ws-transport.ts` and Node's network errors). Undefined when there is no error.
 */
export function upstreamHint(lastError: string | undefined): string | undefined {
  if (lastError === undefined || lastError === "") return undefined;
  const status = /\bHTTP (\d{3})\b/.exec(lastError)?.[1];
  if (status === "401")
    return "OpenAI did not accept the API key: check openai.api_key in the add-on's Configuration.";
  if (status === "403")
    return "The API key may not use this model: check openai.model and the key's project permissions.";
  if (status === "404") return "No Realtime endpoint there: check openai.base_url and openai.model.";
  if (status === "429")
    return "Rate limit or quota reached: check the usage limits and billing of the OpenAI account.";
  if (status !== undefined && status.startsWith("5"))
    return "OpenAI answered with a server error; the add-on keeps retrying.";
  if (/ENOTFOUND|EAI_AGAIN/.test(lastError))
    return "The host name does not resolve: check the DNS and network of Home Assistant, and openai.base_url.";
  if (/certificate|SSL|TLS/i.test(lastError))
    return "The TLS connection failed: check the system clock and any proxy between Home Assistant and OpenAI.";
  if (/ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|no connection within/.test(lastError))
    return "OpenAI cannot be reached: check that Home Assistant has internet access (firewall, proxy) and openai.base_url.";
  return "Check openai.api_key, openai.base_url and the network; the add-on's log has the details.";
}

function approvalView(p: PendingApproval, now: number) {
  return {
    id: p.id,
    server: p.server,
    tool: p.tool,
    arguments: p.arguments,
    mode: p.mode,
    ...(p.satelliteId === undefined ? {} : { satelliteId: p.satelliteId }),
    createdAt: p.createdAt,
    expiresAt: p.expiresAt,
    remainingS: Math.max(0, Math.ceil((p.expiresAt - now) / 1000)),
  };
}

/** How an approval was decided, in words: "cancelled: <reason>", "approved on the device", … */
function settledWords(s: SettledApproval): string {
  const verdict = s.approve ? "approved" : "denied";
  switch (s.source) {
    case "cancelled":
      return `cancelled: ${s.reason ?? "the conversation ended"}`;
    case "timeout":
      return `denied: ${s.reason ?? "nobody answered in time"}`;
    case "satellite":
      return `${verdict} on the device`;
    case "policy":
      return `${verdict} by the approval policy`;
    case "ingress":
      return `${verdict} in the web UI`;
  }
}

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const detail = r.error.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message));
  throw new ApiError("bad_request", `${what}: ${detail.join("; ")}`);
}

/** Maps whatever a handler threw to a registry error body. */
function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply, log: Logger): FastifyReply {
  if (err instanceof ApiError) return reply.code(err.status).send(apiErrorBody(err.code, err.message));
  const fst = err as { statusCode?: number; code?: string; message?: string };
  if (typeof fst.statusCode === "number" && fst.statusCode >= 400 && fst.statusCode < 500) {
    const code: ApiErrorCode = fst.statusCode === 404 ? "not_found" : "bad_request";
    return reply.code(code === "not_found" ? 404 : 400).send(apiErrorBody(code, fst.message));
  }
  log.error({ err, url: request.url }, "admin API request failed");
  return reply.code(500).send(apiErrorBody("internal"));
}

/**
 * Registers the admin API and the UI. Register it on the ingress instance (no prefix: the
 * Supervisor strips the ingress path before forwarding).
 */
export async function ingressPlugin(app: FastifyInstance, opts: IngressOptions): Promise<void> {
  const log = opts.logger;
  const ui = await loadUi(opts.uiDir ?? defaultUiDir());

  if (opts.allowedAddresses) app.addHook("onRequest", restrictToAddresses(opts.allowedAddresses));
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply, log));

  for (const [path, file] of Object.entries(UI_ROUTES)) {
    app.get(path, (request, reply) => {
      const f = ui.get(file);
      if (!f) throw new ApiError("not_found");
      const header = request.headers["x-ingress-path"];
      const body = f.type.startsWith("text/html")
        ? withBase(f.body, typeof header === "string" ? header : undefined)
        : f.body;
      return reply.headers(SECURITY_HEADERS).type(f.type).send(body);
    });
  }

  const servers = (): readonly ServerStatus[] => opts.servers.list();

  app.get("/api/status", () => {
    const snap = opts.status();
    // The engine's own hint (it knows the failure's kind) wins over one read from the error text.
    const hint = snap.upstream.hint ?? upstreamHint(snap.upstream.lastError);
    return {
      ...snap,
      ...(hint === undefined ? {} : { upstream: { ...snap.upstream, hint } }),
      servers: servers(),
      approvals: { pending: opts.approvals.size, timeoutS: opts.approvals.timeoutS },
      now: Date.now(),
    };
  });

  app.get("/api/servers", () => ({ servers: servers() }));

  app.post("/api/servers/:name", async (request) => {
    const { name } = parseOr400(NameParams, request.params, "path");
    const { enabled } = parseOr400(ToggleBody, request.body, "body");
    const server = await opts.servers.setEnabled(name, enabled);
    return { server };
  });

  app.get("/api/approvals", () => {
    const now = Date.now();
    return {
      now,
      approvals: opts.approvals.list().map((p) => approvalView(p, now)),
      settled: opts.approvals.recent(),
    };
  });

  app.post("/api/approvals/:id", (request) => {
    const { id } = parseOr400(IdParams, request.params, "path");
    const { approve } = parseOr400(AnswerBody, request.body, "body");
    const pending = opts.approvals.get(id);
    if (!pending || !opts.approvals.answer(id, approve, "ingress")) {
      const settled = opts.approvals.settled(id);
      throw new ApiError(
        "unknown_approval",
        settled
          ? `${settled.tool} was already ${settledWords(settled)}`
          : `no pending approval with id "${id}" (answered or expired?)`,
      );
    }
    log.info(
      { approval: id, server: pending.server, tool: pending.tool, approve },
      "approval answered in the UI",
    );
    return { id, approve };
  });

  app.post("/api/firmware/allow", async (request) => {
    const { address } = parseOr400(AllowBody, request.body, "body");
    const device = opts.allowFirmwareDevice ? await opts.allowFirmwareDevice(address) : null;
    if (device === null) throw new ApiError("not_found", `no refused device at ${address}`);
    log.info({ address, device: device.id }, "firmware device allowed in the UI");
    return { address, id: device.id };
  });

  if (opts.cost) registerCostApi(app, opts.cost, log);
  const esphome = (name: string): EsphomeAdmin => {
    const admin = opts.esphome?.() ?? null;
    if (admin === null) throw new ApiError("unknown_device", `no ESPHome voice device named "${name}"`);
    return admin;
  };

  app.get("/api/esphome", () => ({ devices: opts.esphome?.()?.list() ?? [] }));

  app.post("/api/esphome/:name", async (request) => {
    const { name } = parseOr400(NameParams, request.params, "path");
    const { take_over } = parseOr400(TakeOverBody, request.body, "body");
    const device = await esphome(name).setTakeOver(name, take_over);
    if (device === null) throw new ApiError("unknown_device", `no ESPHome voice device named "${name}"`);
    log.info({ device: name, take_over }, "ESPHome take-over changed in the UI");
    return { device };
  });

  app.post("/api/esphome/:name/announce", async (request) => {
    const { name } = parseOr400(NameParams, request.params, "path");
    const { text } = parseOr400(AnnounceBody, request.body, "body");
    const outcome = await esphome(name).announce(name, text);
    if (!outcome.ok) throw new ApiError(outcome.code, outcome.message);
    return { ok: true };
  });

  app.get("/api/satellite", () => {
    const token = opts.satelliteToken() ?? null;
    const talkToken = opts.talkToken?.() ?? token;
    const port = opts.satellitePort?.();
    return {
      protocol: 1,
      path: "api/v1/satellite",
      token,
      talkToken,
      ...(port === undefined ? {} : { port }),
    };
  });
}
