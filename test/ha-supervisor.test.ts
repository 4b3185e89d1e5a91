/**
 * Zero-config end to end: running as an add-on (SUPERVISOR_TOKEN set, no HA server configured),
 * the derived `home_assistant` server reaches Core's MCP endpoint through a fake Supervisor on
 * 127.0.0.1 with the reference MCP server behind it.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigSchema } from "../src/config/model.js";
import { deriveMcpServers, HA_SERVER_NAME } from "../src/ha/derive.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import { Registry } from "prom-client";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { createMetrics } from "../src/metrics.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { startFakeRealtime } from "./fake-realtime/server.js";
import { startFakeSupervisor, type FakeSupervisor } from "./fixtures/supervisor/fake-supervisor.js";

const SUPERVISOR_TOKEN = "supervisor-token-for-tests-5f2c";
const config = ConfigSchema.parse({ openai: { api_key: "sk-test" } });

type SessionUpdate = Extract<RealtimeClientEvent, { type: "session.update" }>;
const toolsOf = (e: SessionUpdate) => ("tools" in e.session ? (e.session.tools ?? []) : []);

describe("zero-config Home Assistant through the Supervisor", () => {
  let sup: FakeSupervisor;
  let client: Client | undefined;
  beforeEach(async () => {
    sup = await startFakeSupervisor({ token: SUPERVISOR_TOKEN });
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await sup.close();
  });

  const derive = (token = SUPERVISOR_TOKEN) =>
    deriveMcpServers(config, { SUPERVISOR_TOKEN: token, OPENVOICE_SUPERVISOR_URL: sup.url });

  /** Connects the way a Streamable HTTP client route does: the configured URL and Authorization header. */
  async function connect(server: { server_url?: string; authorization?: string }): Promise<Client> {
    const c = new Client({ name: "openvoice-test", version: "0" });
    const transport = new StreamableHTTPClientTransport(new URL(server.server_url!), {
      requestInit: { headers: { authorization: server.authorization! } },
    });
    await c.connect(transport, { timeout: 10_000 });
    client = c;
    return c;
  }

  it("the derived server reaches /core/api/mcp with the Supervisor token; tools list and call", async () => {
    const d = derive();
    expect(d.source).toBe("zero-config");
    const ha = d.servers.find((s) => s.name === HA_SERVER_NAME)!;
    expect(ha.server_url).toBe(`${sup.url}/core/api/mcp`);

    const c = await connect(ha);
    const { tools } = await c.listTools(undefined, { timeout: 10_000 });
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(["echo", "get-sum"]));
    const res = await c.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } }, undefined, {
      timeout: 10_000,
    });
    expect(JSON.stringify(res.content)).toContain("42");

    expect(sup.sessionsOpened()).toBe(1);
    expect(sup.requests.length).toBeGreaterThan(0);
    expect(sup.requests.every((r) => r.authorized && r.path === "/core/api/mcp")).toBe(true);
  });

  it("ClientMcpManager built from the derived servers lists and calls Home Assistant's tools", async () => {
    const d = derive();
    const manager = new ClientMcpManager({
      servers: d.servers,
      logger: pino({ level: "silent" }),
      callTimeoutMs: 10_000,
    });
    try {
      await manager.connectAll();
      expect(manager.status()).toEqual([
        expect.objectContaining({
          name: HA_SERVER_NAME,
          mode: "client",
          transport: "http",
          state: "up",
          enabled: true,
        }),
      ]);
      const names = manager.tools().map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(["echo", "get-sum"]));
      expect(manager.tools().every((t) => t.server === HA_SERVER_NAME)).toBe(true);
      const out = await manager.callTool("echo", JSON.stringify({ message: "lights on" }));
      expect(out).toMatchObject({ ok: true, outcome: "success", server: HA_SERVER_NAME, tool: "echo" });
      expect(out.output).toContain("lights on");
      const sum = await manager.callTool("get-sum", JSON.stringify({ a: 19, b: 23 }));
      expect(sum.ok).toBe(true);
      expect(sum.output).toContain("42");
      expect(sup.requests.filter((r) => r.path === "/core/api/mcp").every((r) => r.authorized)).toBe(true);

      // Disabled from the UI: its tools disappear; enabled again: they come back through the Supervisor.
      await manager.setEnabled(HA_SERVER_NAME, false);
      expect(manager.tools()).toEqual([]);
      await manager.setEnabled(HA_SERVER_NAME, true);
      expect(manager.tools().map((t) => t.name)).toEqual(expect.arrayContaining(["echo"]));
    } finally {
      await manager.close();
    }
  });

  it("native HA whose tools OpenAI cannot list fails over to the Supervisor route (client tools)", async () => {
    const fake = await startFakeRealtime({ mcp: { [HA_SERVER_NAME]: { outcome: "failed" } } });
    const cfg = ConfigSchema.parse({
      openai: { api_key: "sk-test", base_url: fake.url, pool_size: 1 },
      home_assistant: { public_url: "https://home.example.com", token: "long-lived-token" },
    });
    const d = deriveMcpServers(cfg, { SUPERVISOR_TOKEN, OPENVOICE_SUPERVISOR_URL: sup.url });
    expect(d.source).toBe("native");
    const logger = pino({ level: "silent" });
    const manager = new ClientMcpManager({ servers: d.servers, logger, callTimeoutMs: 10_000 });
    const metrics = createMetrics(new Registry(), { defaults: false });
    const approvals = new ApprovalQueue({ timeoutS: 30 });
    const engine = new RealtimeEngine({
      config: cfg,
      tools: manager,
      approvals,
      logger,
      metrics,
      nativeServers: d.servers,
      failoverRoutes: d.failover,
    });
    try {
      await manager.connectAll();
      expect(manager.tools()).toEqual([]); // native: nothing of ours until failover
      await engine.warmUp();
      const conn = await fake.nextConnection();
      const first = await conn.waitFor("session.update", (e) =>
        toolsOf(e).some((t) => t.type === "mcp" && t.server_label === HA_SERVER_NAME),
      );
      expect(toolsOf(first)).toContainEqual(
        expect.objectContaining({
          type: "mcp",
          server_label: HA_SERVER_NAME,
          server_url: "https://home.example.com/mcp_server/sse",
          // The API adds the scheme to a native server's access token itself.
          authorization: "long-lived-token",
        }),
      );
      // mcp_list_tools.failed → the engine adds the Supervisor route and re-sends the tools as functions.
      const after = await conn.waitFor(
        "session.update",
        (e) => toolsOf(e).some((t) => t.type === "function" && t.name === "get-sum"),
        15_000,
      );
      expect(toolsOf(after).some((t) => t.type === "mcp" && t.server_label === HA_SERVER_NAME)).toBe(false);
      expect(manager.status()).toContainEqual(
        expect.objectContaining({ name: HA_SERVER_NAME, mode: "client", state: "up" }),
      );
      const sum = await manager.callTool("get-sum", JSON.stringify({ a: 40, b: 2 }));
      expect(sum.output).toContain("42");
      expect(sup.sessionsOpened()).toBeGreaterThanOrEqual(1);
      expect(sup.requests.every((r) => r.authorized)).toBe(true);
    } finally {
      await engine.close();
      await manager.close();
      approvals.cancel();
      await fake.close();
    }
  });

  it("a wrong token is refused by the Supervisor (401) and no MCP session opens", async () => {
    const ha = derive("not-the-token").servers[0]!;
    await expect(connect(ha)).rejects.toThrow(/401|Unauthorized/i);
    expect(sup.sessionsOpened()).toBe(0);
    expect(sup.requests.some((r) => r.status === 401 && !r.authorized)).toBe(true);
  });
});
