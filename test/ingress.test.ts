import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { ConfigSchema } from "../src/config/model.js";
import { API_ERRORS } from "../src/errors.js";
import { ingressPlugin, upstreamHint, type StatusSnapshot } from "../src/http/ingress.js";
import { createIngressServer, INGRESS_PROXY_ADDRESS } from "../src/http/server.js";
import type { ServerStatus } from "../src/mcp/types.js";
import { RuntimeState, applyServerOverrides, STATE_FILE } from "../src/state/runtime-state.js";
import {
  PersistentServerAdmin,
  mergeServerStatuses,
  type ServerToggleTarget,
} from "../src/state/server-admin.js";

const logger = pino({ level: "silent" });
const TOKEN = "satellite-token-0123456789";

/** A recording fake of a part that runs servers (the client manager or the engine's native list). */
class RecordingTarget implements ServerToggleTarget {
  readonly calls: [string, boolean][] = [];
  readonly #servers: Map<string, ServerStatus>;
  constructor(servers: ServerStatus[]) {
    this.#servers = new Map(servers.map((s) => [s.name, s]));
  }
  status(): readonly ServerStatus[] {
    return [...this.#servers.values()];
  }
  async setEnabled(name: string, enabled: boolean): Promise<void> {
    await Promise.resolve();
    this.calls.push([name, enabled]);
    const s = this.#servers.get(name)!;
    this.#servers.set(name, {
      ...s,
      enabled,
      state: enabled ? "up" : "disabled",
      toolCount: enabled ? 3 : 0,
    });
  }
}

const server = (
  name: string,
  mode: "native" | "client",
  extra: Partial<ServerStatus> = {},
): ServerStatus => ({
  name,
  mode,
  enabled: true,
  state: "up",
  toolCount: 3,
  restarts: 0,
  ...extra,
});

const snapshot: StatusSnapshot = {
  upstream: { state: "connected" },
  sessions: { warm: 1, active: 0 },
  satellites: { connected: 2, conversations: 1, list: [{ id: "kitchen" }, { id: "office", name: "Office" }] },
};

interface Harness {
  app: FastifyInstance;
  dataDir: string;
  state: RuntimeState;
  client: RecordingTarget;
  native: RecordingTarget;
  approvals: ApprovalQueue;
}

async function harness(
  opts: { allowedAddresses?: string[]; status?: () => StatusSnapshot } = {},
): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), "ingress-test-"));
  const state = await RuntimeState.load(dataDir, logger);
  const client = new RecordingTarget([
    server("home_assistant", "client", { transport: "http", toolCount: 12 }),
    server("files", "client", { transport: "stdio", state: "down", lastError: "spawn ENOENT", toolCount: 0 }),
  ]);
  const native = new RecordingTarget([server("search", "native")]);
  const approvals = new ApprovalQueue({ timeoutS: 30 });
  const app = Fastify({ logger: false });
  await app.register(ingressPlugin, {
    servers: new PersistentServerAdmin({ targets: [client, native], state, logger }),
    approvals,
    status: opts.status ?? (() => snapshot),
    satelliteToken: () => TOKEN,
    logger,
    ...(opts.allowedAddresses ? { allowedAddresses: opts.allowedAddresses } : {}),
  });
  await app.ready();
  return { app, dataDir, state, client, native, approvals };
}

describe("ingress admin API", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(async () => {
    h.approvals.cancel();
    await h.app.close();
    await rm(h.dataDir, { recursive: true, force: true });
  });

  it("GET /api/status: upstream, sessions, satellites, every server with tool count and last error", async () => {
    const res = await h.app.inject({ method: "GET", url: "/api/status" });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.upstream).toEqual({ state: "connected" });
    expect(body.sessions).toEqual({ warm: 1, active: 0 });
    expect(body.satellites.connected).toBe(2);
    expect(body.approvals).toEqual({ pending: 0, timeoutS: 30 });
    expect(body.servers.map((s: ServerStatus) => [s.name, s.mode, s.state, s.toolCount])).toEqual([
      ["files", "client", "down", 0],
      ["home_assistant", "client", "up", 12],
      ["search", "native", "up", 3],
    ]);
    expect(body.servers[0].lastError).toBe("spawn ENOENT");
    expect(typeof body.now).toBe("number");
  });

  it("GET /api/status: an upstream error comes with what to check (a 401 → openai.api_key)", async () => {
    await h.app.close();
    let lastError = "upstream refused the connection (HTTP 401)";
    h = await harness({ status: () => ({ ...snapshot, upstream: { state: "unreachable", lastError } }) });
    const first = (await h.app.inject({ url: "/api/status" })).json();
    expect(first.upstream.state).toBe("unreachable");
    expect(first.upstream.lastError).toBe(lastError);
    expect(first.upstream.hint).toMatch(/check openai\.api_key/);
    lastError = "connect ECONNREFUSED 127.0.0.1:443";
    const second = (await h.app.inject({ url: "/api/status" })).json();
    expect(second.upstream.hint).toMatch(/cannot be reached.*openai\.base_url/);
  });

  it("upstreamHint names what to check for each kind of upstream failure", () => {
    const cases: [string, RegExp][] = [
      ["upstream refused the connection (HTTP 401)", /openai\.api_key/],
      ["upstream refused the connection (HTTP 403)", /openai\.model/],
      ["upstream refused the connection (HTTP 404)", /openai\.base_url/],
      ["upstream refused the connection (HTTP 429)", /quota/],
      ["upstream refused the connection (HTTP 503)", /server error/],
      ["getaddrinfo ENOTFOUND api.openai.com", /DNS/],
      ["getaddrinfo EAI_AGAIN api.openai.com", /DNS/],
      ["unable to verify the first certificate", /TLS/],
      ["connect ETIMEDOUT 162.159.140.245:443", /internet access/],
      ["no connection within 10000 ms", /internet access/],
      ["something else entirely", /log has the details/],
    ];
    for (const [error, hint] of cases) expect(upstreamHint(error), error).toMatch(hint);
    expect(upstreamHint(undefined)).toBeUndefined();
    expect(upstreamHint("")).toBeUndefined();
  });

  it("GET /api/servers lists the servers of every part, sorted by name", async () => {
    const res = await h.app.inject({ method: "GET", url: "/api/servers" });
    expect(res.statusCode).toBe(200);
    expect(res.json().servers.map((s: ServerStatus) => s.name)).toEqual([
      "files",
      "home_assistant",
      "search",
    ]);
  });

  it("POST /api/servers/:name applies the toggle live to the owning part and persists it", async () => {
    const off = await h.app.inject({
      method: "POST",
      url: "/api/servers/search",
      payload: { enabled: false },
    });
    expect(off.statusCode).toBe(200);
    expect(off.json().server).toMatchObject({ name: "search", enabled: false, state: "disabled" });
    expect(h.native.calls).toEqual([["search", false]]);
    expect(h.client.calls).toEqual([]);

    const onDisk = JSON.parse(await readFile(join(h.dataDir, STATE_FILE), "utf8"));
    expect(onDisk).toEqual({ version: 1, servers: { search: { enabled: false } } });
    expect((await readdir(h.dataDir)).filter((f) => f.endsWith(".tmp"))).toEqual([]);

    // After a restart the override is applied to the configured servers before anything starts.
    const reloaded = await RuntimeState.load(h.dataDir, logger);
    const cfg = ConfigSchema.parse({
      openai: { api_key: "k" },
      mcp_servers: [
        { name: "search", mode: "native", server_url: "https://s.example.com/sse" },
        { name: "files", mode: "client", transport: "stdio", command: "x" },
      ],
    });
    const effective = applyServerOverrides(cfg.mcp_servers, reloaded.serverOverrides);
    expect(effective.map((s) => [s.name, s.enabled])).toEqual([
      ["search", false],
      ["files", true],
    ]);

    const on = await h.app.inject({ method: "POST", url: "/api/servers/search", payload: { enabled: true } });
    expect(on.json().server).toMatchObject({ enabled: true, state: "up" });
    expect((await RuntimeState.load(h.dataDir)).serverEnabled("search")).toBe(true);
  });

  it("a server known to both parts (failover) is toggled in both", async () => {
    await h.app.close();
    const dataDir = await mkdtemp(join(tmpdir(), "ingress-test-"));
    const state = await RuntimeState.load(dataDir);
    const native = new RecordingTarget([
      server("home_assistant", "native", { state: "down", lastError: "list failed" }),
    ]);
    const client = new RecordingTarget([server("home_assistant", "client", { transport: "http" })]);
    const app = Fastify();
    await app.register(ingressPlugin, {
      servers: new PersistentServerAdmin({ targets: [native, client], state }),
      approvals: h.approvals,
      status: () => snapshot,
      satelliteToken: () => TOKEN,
      logger,
    });
    const list = (await app.inject({ url: "/api/servers" })).json().servers;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ mode: "client", state: "up" });
    await app.inject({ method: "POST", url: "/api/servers/home_assistant", payload: { enabled: false } });
    expect(native.calls).toEqual([["home_assistant", false]]);
    expect(client.calls).toEqual([["home_assistant", false]]);
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("POST /api/servers/:name: unknown server → 404 unknown_server, nothing persisted", async () => {
    const res = await h.app.inject({ method: "POST", url: "/api/servers/nope", payload: { enabled: false } });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: "unknown_server", message: 'no MCP server named "nope"' } });
    await expect(readFile(join(h.dataDir, STATE_FILE))).rejects.toThrow(/ENOENT/);
  });

  it.each([
    ["a missing field", { enable: true }],
    ["a string instead of a boolean", { enabled: "false" }],
    ["an extra field", { enabled: true, force: true }],
    ["an array", [true]],
  ])("POST /api/servers/:name with %s → 400 bad_request", async (_what, payload) => {
    const res = await h.app.inject({ method: "POST", url: "/api/servers/search", payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe("bad_request");
    expect(h.native.calls).toEqual([]);
  });

  it("rejects bodies that are not JSON (no cross-site form posts) and malformed JSON with bad_request", async () => {
    const form = await h.app.inject({
      method: "POST",
      url: "/api/servers/search",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "enabled=false",
    });
    expect(form.statusCode).toBe(400);
    expect(form.json().error.code).toBe("bad_request");
    const broken = await h.app.inject({
      method: "POST",
      url: "/api/approvals/x",
      headers: { "content-type": "application/json" },
      payload: "{",
    });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().error.code).toBe("bad_request");
    expect(h.native.calls).toEqual([]);
  });

  it("GET /api/approvals shows pending approvals with a deadline; POST approves with source ingress", async () => {
    const { id, decision } = h.approvals.request(
      {
        server: "home_assistant",
        tool: "HassTurnOn",
        arguments: '{"name":"kitchen light"}',
        mode: "client",
        satelliteId: "kitchen",
      },
      "appr-1",
    );
    const list = await h.app.inject({ url: "/api/approvals" });
    expect(list.statusCode).toBe(200);
    const body = list.json();
    expect(body.approvals).toHaveLength(1);
    expect(body.approvals[0]).toMatchObject({
      id,
      server: "home_assistant",
      tool: "HassTurnOn",
      arguments: '{"name":"kitchen light"}',
      satelliteId: "kitchen",
    });
    expect(body.approvals[0].expiresAt - body.approvals[0].createdAt).toBe(30_000);
    expect(body.approvals[0].remainingS).toBeGreaterThan(25);
    expect(body.approvals[0].remainingS).toBeLessThanOrEqual(30);

    const res = await h.app.inject({
      method: "POST",
      url: `/api/approvals/${id}`,
      payload: { approve: true },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ id, approve: true });
    await expect(decision).resolves.toEqual({ approve: true, source: "ingress" });

    const again = await h.app.inject({
      method: "POST",
      url: `/api/approvals/${id}`,
      payload: { approve: false },
    });
    expect(again.statusCode).toBe(404);
    expect(again.json().error.code).toBe("unknown_approval");
    expect((await h.app.inject({ url: "/api/approvals" })).json().approvals).toEqual([]);
  });

  it("says how an approval that left was decided: in the list, and to a late Approve", async () => {
    const { id } = h.approvals.request({
      server: "everything",
      tool: "get-sum",
      arguments: "{}",
      mode: "client",
    });
    h.approvals.cancel(
      (p) => p.id === id,
      "Home Assistant stopped waiting for the answer, so it was not run.",
    );
    const body = (await h.app.inject({ url: "/api/approvals" })).json();
    expect(body.approvals).toEqual([]);
    expect(body.settled).toEqual([
      expect.objectContaining({
        id,
        tool: "get-sum",
        approve: false,
        source: "cancelled",
        reason: "Home Assistant stopped waiting for the answer, so it was not run.",
      }),
    ]);
    const late = await h.app.inject({
      method: "POST",
      url: `/api/approvals/${id}`,
      payload: { approve: true },
    });
    expect(late.statusCode).toBe(404);
    expect(late.json().error).toEqual({
      code: "unknown_approval",
      message:
        "get-sum was already cancelled: Home Assistant stopped waiting for the answer, so it was not run.",
    });
  });

  it("POST /api/approvals/:id {approve:false} denies with a reason the model can speak", async () => {
    const { id, decision } = h.approvals.request({
      server: "s",
      tool: "delete_all",
      arguments: "{}",
      mode: "native",
    });
    const res = await h.app.inject({
      method: "POST",
      url: `/api/approvals/${id}`,
      payload: { approve: false },
    });
    expect(res.statusCode).toBe(200);
    const d = await decision;
    expect(d).toMatchObject({ approve: false, source: "ingress" });
    expect(d.reason).toMatch(/declined delete_all/);
  });

  it("POST /api/approvals/:id with a bad body does not answer the approval", async () => {
    const { id } = h.approvals.request({ server: "s", tool: "t", arguments: "{}", mode: "native" });
    const res = await h.app.inject({
      method: "POST",
      url: `/api/approvals/${id}`,
      payload: { approve: "yes" },
    });
    expect(res.statusCode).toBe(400);
    expect(h.approvals.get(id)).toBeDefined();
  });

  it("GET /api/satellite gives the talk page its endpoint and token", async () => {
    const res = await h.app.inject({ url: "/api/satellite" });
    expect(res.json()).toEqual({ protocol: 1, path: "api/v1/satellite", token: TOKEN, talkToken: TOKEN });
  });

  it("GET /api/satellite gives the satellite port for the URL shown beside the token", async () => {
    const app = Fastify({ logger: false });
    await app.register(ingressPlugin, {
      servers: new PersistentServerAdmin({ targets: [], state: h.state, logger }),
      approvals: h.approvals,
      status: () => snapshot,
      satelliteToken: () => TOKEN,
      satellitePort: () => 8765,
      logger,
    });
    const res = await app.inject({ url: "/api/satellite" });
    expect(res.json()).toMatchObject({ path: "api/v1/satellite", port: 8765 });
    await app.close();
  });

  it("GET /api/satellite with per-device tokens only: no shared token, an ingress-only talk token", async () => {
    await h.app.close();
    const app = Fastify();
    await app.register(ingressPlugin, {
      servers: { list: () => [], setEnabled: () => Promise.reject(new Error("unused")) },
      approvals: h.approvals,
      status: () => snapshot,
      satelliteToken: () => undefined,
      talkToken: () => "ingress-only-talk-token-0001",
      logger,
    });
    const res = await app.inject({ url: "/api/satellite" });
    expect(res.json()).toEqual({
      protocol: 1,
      path: "api/v1/satellite",
      token: null,
      talkToken: "ingress-only-talk-token-0001",
    });
    await app.close();
  });

  it("every API error code used here is in the registry", () => {
    for (const code of [
      "unknown_server",
      "unknown_approval",
      "bad_request",
      "forbidden",
      "internal",
      "not_found",
    ])
      expect(Object.keys(API_ERRORS)).toContain(code);
  });

  it("an unexpected failure is a 500 internal without details", async () => {
    await h.app.close();
    const app = Fastify();
    await app.register(ingressPlugin, {
      servers: {
        list: () => [],
        setEnabled: () => Promise.reject(new Error("disk on fire /secret/path")),
      },
      approvals: h.approvals,
      status: () => snapshot,
      satelliteToken: () => TOKEN,
      logger,
    });
    const res = await app.inject({ method: "POST", url: "/api/servers/x", payload: { enabled: true } });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: { code: "internal", message: "internal error" } });
    await app.close();
  });
});

describe("ingress UI files", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(async () => {
    await h.app.close();
    await rm(h.dataDir, { recursive: true, force: true });
  });

  it("serves the pages with a <base> from X-Ingress-Path and only relative URLs", async () => {
    const res = await h.app.inject({
      url: "/",
      headers: { "x-ingress-path": "/api/hassio_ingress/AbC-123_x" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(res.body).toContain('<base href="/api/hassio_ingress/AbC-123_x/" />');
    // Shown inside Home Assistant's panel: the page drops its own app bar (style.css, html.ingress).
    expect(res.body).toContain('<html lang="en" class="ingress">');
    expect((await h.app.inject({ url: "/" })).body).toContain('<html lang="en">');
    for (const page of [res.body, (await h.app.inject({ url: "/talk" })).body])
      for (const m of page.matchAll(/(?:src|href)="([^"]+)"/g)) {
        if (m[1]!.startsWith("/api/hassio_ingress/")) continue; // the injected base itself
        expect(m[1]).toMatch(/^\.\//);
      }
  });

  it("ignores an X-Ingress-Path that could inject markup", async () => {
    const res = await h.app.inject({
      url: "/talk",
      headers: { "x-ingress-path": '/x"><script>alert(1)</script>' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain("<base");
    expect(res.body).not.toContain("alert(1)");
  });

  it("serves scripts, the worklet and styles with their types; unknown files are 404", async () => {
    for (const [url, type] of [
      ["/admin.js", "text/javascript; charset=utf-8"],
      ["/talk.js", "text/javascript; charset=utf-8"],
      ["/mic-worklet.js", "text/javascript; charset=utf-8"],
      ["/common.js", "text/javascript; charset=utf-8"],
      ["/style.css", "text/css; charset=utf-8"],
      ["/icon.svg", "image/svg+xml"],
    ]) {
      const res = await h.app.inject({ url: url! });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers["content-type"]).toBe(type);
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
    }
    expect((await h.app.inject({ url: "/mic-worklet.js" })).body).toContain(
      'registerProcessor("mic-capture"',
    );
    expect((await h.app.inject({ url: "/../package.json" })).statusCode).toBe(404);
    expect((await h.app.inject({ url: "/ingress.ts" })).statusCode).toBe(404);
  });
});

describe("ingress address restriction (as an add-on)", () => {
  let h: Harness;
  afterEach(async () => {
    await h.app.close();
    await rm(h.dataDir, { recursive: true, force: true });
  });

  it("answers the Supervisor's ingress address and refuses every other with 403 forbidden", async () => {
    h = await harness({ allowedAddresses: ["172.30.32.2"] });
    const ok = await h.app.inject({ url: "/api/status", remoteAddress: "172.30.32.2" });
    expect(ok.statusCode).toBe(200);
    const mapped = await h.app.inject({ url: "/api/servers", remoteAddress: "::ffff:172.30.32.2" });
    expect(mapped.statusCode).toBe(200);
    for (const remoteAddress of ["172.30.32.3", "192.168.1.20", "127.0.0.1", "::1"]) {
      const res = await h.app.inject({ url: "/api/status", remoteAddress });
      expect(res.statusCode, remoteAddress).toBe(403);
      expect(res.json()).toEqual({ error: { code: "forbidden", message: API_ERRORS.forbidden.message } });
    }
    const post = await h.app.inject({
      method: "POST",
      url: "/api/servers/search",
      remoteAddress: "10.0.0.9",
      payload: { enabled: false },
    });
    expect(post.statusCode).toBe(403);
    expect(h.native.calls).toEqual([]);
    expect((await h.app.inject({ url: "/", remoteAddress: "10.0.0.9" })).statusCode).toBe(403);
  });

  it("registered on the service's ingress instance (createIngressServer as an add-on), foreign peers get 403", async () => {
    h = await harness();
    const ingress = createIngressServer({ logger, allowedAddresses: [INGRESS_PROXY_ADDRESS] });
    await ingress.register(ingressPlugin, {
      servers: new PersistentServerAdmin({ targets: [h.client, h.native], state: h.state }),
      approvals: h.approvals,
      status: () => snapshot,
      satelliteToken: () => TOKEN,
      logger,
    });
    try {
      const ok = await ingress.inject({ url: "/api/servers", remoteAddress: INGRESS_PROXY_ADDRESS });
      expect(ok.statusCode).toBe(200);
      expect(ok.json().servers).toHaveLength(3);
      const page = await ingress.inject({ url: "/", remoteAddress: INGRESS_PROXY_ADDRESS });
      expect(page.statusCode).toBe(200);
      for (const remoteAddress of ["192.168.1.20", "127.0.0.1"]) {
        const res = await ingress.inject({
          method: "POST",
          url: "/api/servers/search",
          remoteAddress,
          payload: { enabled: false },
        });
        expect(res.statusCode, remoteAddress).toBe(403);
        expect(res.json().error.code).toBe("forbidden");
      }
      expect(h.native.calls).toEqual([]);
      const res = await ingress.inject({ url: "/api/satellite", remoteAddress: "10.1.2.3" });
      expect(res.statusCode).toBe(403);
      expect(res.body).not.toContain(TOKEN);
    } finally {
      await ingress.close();
    }
  });

  it("refuses a real connection from loopback when only the Supervisor may connect", async () => {
    h = await harness({ allowedAddresses: ["172.30.32.2"] });
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = h.app.server.address() as { port: number };
    const res = await fetch(`http://127.0.0.1:${port}/api/status`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("forbidden");
  });
});

describe("runtime state file", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "state-test-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps the last of many concurrent toggles, and the file is always whole JSON", async () => {
    const state = await RuntimeState.load(dir);
    const writes = [];
    for (let i = 0; i < 25; i++) writes.push(state.setServerEnabled(`s${i % 3}`, i % 2 === 0));
    await Promise.all(writes);
    const onDisk = JSON.parse(await readFile(join(dir, STATE_FILE), "utf8"));
    // the last writes were i=22 (s1 on), 23 (s2 off), 24 (s0 on)
    expect(onDisk.servers).toEqual({ s0: { enabled: true }, s1: { enabled: true }, s2: { enabled: false } });
    expect((await readdir(dir)).sort()).toEqual([STATE_FILE]);
    await state.clearServer("s1");
    expect((await RuntimeState.load(dir)).serverOverrides).toEqual(
      new Map([
        ["s0", true],
        ["s2", false],
      ]),
    );
  });

  it("reconcile at startup applies toggles and forgets those the configuration caught up with", async () => {
    const state = await RuntimeState.load(dir);
    await state.setServerEnabled("a", false);
    await state.setServerEnabled("b", true);
    await state.setServerEnabled("gone", false);
    const cfg = ConfigSchema.parse({
      openai: { api_key: "k" },
      mcp_servers: [
        { name: "a", mode: "client", transport: "stdio", command: "x" },
        { name: "b", mode: "client", transport: "stdio", command: "x", enabled: true },
        { name: "c", mode: "client", transport: "stdio", command: "x", enabled: false },
      ],
    });
    const reloaded = await RuntimeState.load(dir);
    const effective = await reloaded.reconcile(cfg.mcp_servers);
    expect(effective.map((s) => [s.name, s.enabled])).toEqual([
      ["a", false],
      ["b", true],
      ["c", false],
    ]);
    // b's toggle equals the configuration now: forgotten, so a later edit of the configuration rules.
    const onDisk = JSON.parse(await readFile(join(dir, STATE_FILE), "utf8"));
    expect(onDisk.servers).toEqual({ a: { enabled: false }, gone: { enabled: false } });
    expect(cfg.mcp_servers[0]!.enabled).toBe(true);
  });

  it("sets an invalid file aside and starts from the configuration", async () => {
    await writeFile(join(dir, STATE_FILE), '{"version": 9, "servers": 1}');
    const state = await RuntimeState.load(dir, logger);
    expect(state.serverOverrides.size).toBe(0);
    expect((await readdir(dir)).sort()).toEqual([`${STATE_FILE}.invalid`]);
    await writeFile(join(dir, STATE_FILE), "not json");
    expect((await RuntimeState.load(dir)).serverOverrides.size).toBe(0);
  });

  it("creates the data directory when it does not exist yet", async () => {
    const nested = join(dir, "a", "b");
    const state = await RuntimeState.load(nested);
    await state.setServerEnabled("x", false);
    expect(JSON.parse(await readFile(join(nested, STATE_FILE), "utf8")).servers).toEqual({
      x: { enabled: false },
    });
  });

  it("mergeServerStatuses keeps one entry per name, the healthier one", () => {
    const merged = mergeServerStatuses([
      [server("a", "native", { state: "down" }), server("b", "native", { state: "disabled" })],
      [server("a", "client", { state: "connecting" }), server("c", "client")],
    ]);
    expect(merged.map((s) => [s.name, s.mode, s.state])).toEqual([
      ["a", "client", "connecting"],
      ["b", "native", "disabled"],
      ["c", "client", "up"],
    ]);
  });
});
