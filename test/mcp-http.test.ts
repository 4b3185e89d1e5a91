/**
 * ClientMcpManager against server-everything over Streamable HTTP and SSE on 127.0.0.1, and an
 * in-process Streamable HTTP server that records the headers it receives.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ClientMcpManager } from "../src/mcp/manager.js";
import {
  clientServer,
  liveChildren,
  memoryLogger,
  startEverythingHttp,
  waitFor,
  type HttpServerProcess,
} from "./fixtures/mcp/helpers.js";
import { startExpiringHttpServer, type ExpiringHttpServer } from "./fixtures/mcp/expiring-http.js";
import { createToyServer } from "./fixtures/mcp/toy-server.js";

const FAST_BACKOFF = { initialMs: 100, maxMs: 500 };

const cases = [
  { mode: "streamableHttp", transport: "http", path: "/mcp" },
  { mode: "sse", transport: "sse", path: "/sse" },
] as const;

describe.each(cases)("server-everything over $transport", ({ mode, transport, path }) => {
  let server: HttpServerProcess;
  let m: ClientMcpManager;

  beforeAll(async () => {
    server = await startEverythingHttp(mode);
    m = new ClientMcpManager({
      servers: [
        clientServer({
          name: "remote",
          transport,
          server_url: `http://127.0.0.1:${server.port}${path}`,
          timeout: 20,
        }),
      ],
      logger: memoryLogger("warn").logger,
      backoff: FAST_BACKOFF,
      callTimeoutMs: 1500,
    });
    await m.connectAll();
  });

  afterAll(async () => {
    await m.close();
    await server.stop();
  });

  it("lists and calls tools", async () => {
    expect(m.status()[0]).toMatchObject({ name: "remote", transport, state: "up" });
    expect(m.tools().map((t) => t.name)).toEqual(expect.arrayContaining(["echo", "get-sum"]));
    expect(await m.callTool("echo", '{"message":"over the wire"}')).toMatchObject({
      ok: true,
      output: "Echo: over the wire",
      server: "remote",
    });
    const sum = await m.callTool("get-sum", '{"a": 20, "b": 22}');
    expect(sum.output).toContain("42");
    expect((await m.callTool("get-tiny-image", "{}")).output).toMatch(/\[image: image\/png/);
  });

  it("answers errors and timeouts", async () => {
    expect(await m.callTool("get-sum", '{"a": "x"}')).toMatchObject({ ok: false, outcome: "error" });
    expect(await m.callTool("echo", "not json")).toMatchObject({ ok: false, outcome: "bad_arguments" });
    const slow = await m.callTool("trigger-long-running-operation", '{"duration": 20, "steps": 4}');
    expect(slow).toMatchObject({ ok: false, outcome: "timeout" });
    expect(slow.durationMs).toBeGreaterThanOrEqual(1400);
    expect(slow.durationMs).toBeLessThan(4000);
    expect((await m.callTool("echo", '{"message":"after"}')).ok).toBe(true);
  });

  it("notices the server going away and reconnects when it is back", async () => {
    const port = server.port;
    await server.stop();
    // A call made while the server is gone fails cleanly (no hang), whatever noticed it first.
    const during = await m.callTool("echo", '{"message":"anyone?"}');
    expect(during.ok).toBe(false);
    expect(["crash", "unknown_tool", "timeout"]).toContain(during.outcome);
    await waitFor(() => m.status()[0]!.state !== "up", 10_000, "server down");
    expect(m.tools()).toEqual([]);
    expect(m.status()[0]!.lastError).toBeTruthy();

    server = await startEverythingHttp(mode, port);
    await waitFor(() => m.status()[0]!.state === "up", 20_000, "server up again");
    expect(m.status()[0]!.restarts).toBeGreaterThanOrEqual(1);
    expect(await m.callTool("echo", '{"message":"welcome back"}')).toMatchObject({
      ok: true,
      output: "Echo: welcome back",
    });
  });
});

describe("health check", () => {
  it("marks an idle Streamable HTTP server down when it goes away, and up when it is back", async () => {
    let server = await startEverythingHttp("streamableHttp");
    const m = new ClientMcpManager({
      servers: [
        clientServer({ name: "idle", transport: "http", server_url: `http://127.0.0.1:${server.port}/mcp` }),
      ],
      logger: memoryLogger("warn").logger,
      backoff: FAST_BACKOFF,
      healthCheckMs: 200,
    });
    try {
      await m.connectAll();
      expect(m.status()[0]!.state).toBe("up");
      // Stays up while the server answers its pings.
      await new Promise((r) => setTimeout(r, 700));
      expect(m.status()[0]!.state).toBe("up");
      const port = server.port;
      await server.stop();
      await waitFor(() => m.status()[0]!.state !== "up", 10_000, "down without any call");
      expect(m.tools()).toEqual([]);
      server = await startEverythingHttp("streamableHttp", port);
      await waitFor(() => m.status()[0]!.state === "up", 20_000, "up again");
      expect((await m.callTool("echo", '{"message":"hi"}')).ok).toBe(true);
    } finally {
      await m.close();
      await server.stop();
    }
  });
});

describe("HTTP headers and authorization", () => {
  let http: HttpServer;
  let url: string;
  const seen: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    const mcp = createToyServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
    await mcp.connect(transport);
    http = createServer((req, res) => {
      seen.push(req.headers);
      void transport.handleRequest(req, res);
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  });

  afterAll(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  it("sends the configured headers and Authorization on every request, and never logs them", async () => {
    const { logger, lines } = memoryLogger("trace");
    const m = new ClientMcpManager({
      servers: [
        clientServer({
          name: "secured",
          transport: "http",
          server_url: url,
          authorization: "Bearer secret-token-xyz",
          headers: { "X-Home": "living-room" },
        }),
      ],
      logger,
    });
    try {
      await m.connectAll();
      expect(m.status()[0]!.state).toBe("up");
      expect(m.tools()).toHaveLength(10);
      expect(await m.callTool("echo", '{"text":"auth ok"}')).toMatchObject({ ok: true, output: "auth ok" });
    } finally {
      await m.close();
    }
    const posts = seen.filter((h) => h["content-type"] === "application/json");
    expect(posts.length).toBeGreaterThanOrEqual(3);
    for (const h of posts) {
      expect(h.authorization).toBe("Bearer secret-token-xyz");
      expect(h["x-home"]).toBe("living-room");
    }
    expect(lines.join("")).not.toContain("secret-token-xyz");
  });
});

describe("unreachable HTTP servers", () => {
  afterEach(() => {
    expect(liveChildren()).toEqual([]);
  });

  it("show as down quickly with the reason, and are retried", async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));

    const m = new ClientMcpManager({
      servers: [
        clientServer({
          name: "gone-http",
          transport: "http",
          server_url: `http://127.0.0.1:${port}/mcp`,
          timeout: 5,
        }),
        clientServer({
          name: "gone-sse",
          transport: "sse",
          server_url: `http://127.0.0.1:${port}/sse`,
          timeout: 5,
        }),
      ],
      logger: memoryLogger("warn").logger,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    try {
      const t0 = Date.now();
      await m.connectAll();
      expect(Date.now() - t0).toBeLessThan(5000);
      for (const s of m.status()) {
        expect(s.state).toBe("down");
        expect(s.lastError).toBeTruthy();
      }
      expect(await m.callTool("echo", "{}")).toMatchObject({ ok: false, outcome: "unknown_tool" });
      await waitFor(() => m.status().every((s) => s.restarts >= 2), 10_000, "retries");
    } finally {
      await m.close();
    }
  });
});

describe("Streamable HTTP session expiry (404 for our Mcp-Session-Id)", () => {
  let server: ExpiringHttpServer;
  let m: ClientMcpManager;
  /** The tool names every tools-changed listener call saw. */
  let changes: string[][];

  beforeEach(async () => {
    server = await startExpiringHttpServer();
    m = new ClientMcpManager({
      servers: [clientServer({ name: "expiring", transport: "http", server_url: server.url, timeout: 10 })],
      logger: memoryLogger("warn").logger,
      backoff: FAST_BACKOFF,
      healthCheckMs: 0,
    });
    await m.connectAll();
    expect(m.status()[0]!.state).toBe("up");
    changes = [];
    m.onToolsChanged(() => changes.push(m.tools().map((t) => t.name)));
  });

  afterEach(async () => {
    await m.close();
    await server.close();
  });

  it("re-initialises and retries the call once; the tool list does not churn", async () => {
    await server.forgetSessions();
    expect(await m.callTool("echo", '{"text":"still here"}')).toMatchObject({
      ok: true,
      output: "still here",
    });
    expect(server.initializations).toBe(2);
    expect(server.notFound).toBeGreaterThanOrEqual(1);
    expect(m.status()[0]).toMatchObject({ state: "up", restarts: 0 });
    expect(m.status()[0]).not.toHaveProperty("lastError");
    // Same tools after re-initialising: nobody is told anything changed.
    expect(changes).toEqual([]);
    expect(await m.callTool("echo", '{"text":"and again"}')).toMatchObject({ ok: true, output: "and again" });
    expect(server.initializations).toBe(2);
  });

  it("calls that meet the expiry together share one re-initialisation", async () => {
    await server.forgetSessions();
    const results = await Promise.all(
      ["a", "b", "c"].map((text) => m.callTool("echo", JSON.stringify({ text }))),
    );
    expect(results.map((r) => r.output)).toEqual(["a", "b", "c"]);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(server.initializations).toBe(2);
    expect(changes).toEqual([]);
  });

  it("a tool list that changed across the new session is announced once, never emptied on the way", async () => {
    server.tools.push({ name: "ping", description: "Answers.", inputSchema: { type: "object" } });
    await server.forgetSessions();
    expect((await m.callTool("echo", '{"text":"x"}')).ok).toBe(true);
    expect(changes).toEqual([["echo", "ping"]]);
  });

  it("a health-check ping that meets the expiry renews the session without any call", async () => {
    const watched = new ClientMcpManager({
      servers: [clientServer({ name: "watched", transport: "http", server_url: server.url, timeout: 10 })],
      logger: memoryLogger("warn").logger,
      backoff: FAST_BACKOFF,
      healthCheckMs: 100,
    });
    try {
      await watched.connectAll();
      const seen: number[] = [];
      watched.onToolsChanged(() => seen.push(watched.tools().length));
      const before = server.initializations;
      await server.forgetSessions();
      await waitFor(() => server.initializations === before + 1, 10_000, "a new session");
      expect(watched.status()[0]).toMatchObject({ state: "up", restarts: 0 });
      expect(seen).toEqual([]);
      expect(await watched.callTool("echo", '{"text":"renewed"}')).toMatchObject({ ok: true });
    } finally {
      await watched.close();
    }
  });

  it("retries only once: a session that expires again fails the call with the reason", async () => {
    server.expireOnCall = true;
    const r = await m.callTool("echo", '{"text":"never"}');
    expect(r).toMatchObject({ ok: false, outcome: "crash" });
    expect(r.output).toContain("expiring");
    expect(server.toolCalls).toBe(2);
  });
});
