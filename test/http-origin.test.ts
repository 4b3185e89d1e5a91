/**
 * DNS rebinding and cross-site requests against a standalone (not add-on) service: real requests on
 * loopback with hostile `Host` and `Origin` headers, to the admin API, the talk page's WebSocket on
 * the ingress instance and the satellite port's WebSocket.
 */
import { request } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { createApp, type App } from "../src/app.js";
import { ConfigSchema } from "../src/config/model.js";
import { API_ERRORS } from "../src/errors.js";
import { isLoopbackHostname } from "../src/http/origin.js";
import { createLogger } from "../src/log.js";
import { wireService, type Service } from "../src/service.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";

const SATELLITE_TOKEN = "origin-test-satellite-token-0123";

interface Answer {
  status: number;
  body: string;
}

/** One HTTP request to 127.0.0.1:`port` with exactly the headers given (Host included). */
function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers, setHost: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The status a WebSocket upgrade got: 101 when it opened. */
function upgrade(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("open", () => {
      ws.terminate();
      resolve(101);
    });
    ws.once("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once("error", reject);
  });
}

describe("standalone ingress and satellite port: Host and Origin checks", () => {
  let fake: FakeRealtimeServer;
  let app: App;
  let service: Service;
  let dataDir: string;
  let ingress: number;
  let satellite: number;

  beforeAll(async () => {
    fake = await startFakeRealtime();
    dataDir = await mkdtemp(join(tmpdir(), "openvoice-origin-"));
    const config = ConfigSchema.parse({
      openai: { api_key: "sk-test", base_url: fake.url, pool_size: 0 },
      satellites: { token: SATELLITE_TOKEN },
      listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
      log_level: "fatal",
    });
    app = await createApp({
      config,
      logger: createLogger({ level: "fatal" }),
      env: {},
      registry: new Registry(),
      dataDir,
    });
    service = await wireService(app);
    const ports = await app.listen();
    ingress = ports.ingressPort;
    satellite = ports.satellitePort;
    app.setReady(true);
  });

  afterAll(async () => {
    service.approvals.cancel(() => true, "test over");
    await app.close();
    await fake.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const pending = (): string =>
    service.approvals.request({ server: "s", tool: "unlock_door", arguments: "{}", mode: "client" }).id;

  it("answers loopback Host names and addresses", async () => {
    for (const host of [`127.0.0.1:${ingress}`, `localhost:${ingress}`, "localhost", `[::1]:${ingress}`]) {
      const res = await send(ingress, "GET", "/api/status", { host });
      expect(res.status, host).toBe(200);
    }
  });

  it("refuses a rebound Host (a foreign name pointing at 127.0.0.1) with 403, the token unread", async () => {
    for (const host of [
      `evil.example:${ingress}`,
      "attacker.test",
      `10.0.0.5:${ingress}`,
      "localhost.evil.example",
    ]) {
      const res = await send(ingress, "GET", "/api/satellite", { host });
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body)).toEqual({
        error: { code: "forbidden_host", message: API_ERRORS.forbidden_host.message },
      });
      expect(res.body).not.toContain(SATELLITE_TOKEN);
    }
    // No Host at all: Node refuses it (400) before any route runs.
    const bare = await send(ingress, "GET", "/api/satellite", {});
    expect(bare.status).toBeGreaterThanOrEqual(400);
    expect(bare.body).not.toContain(SATELLITE_TOKEN);
  });

  it("refuses a state-changing request from another origin; the approval stays pending", async () => {
    const id = pending();
    const host = `127.0.0.1:${ingress}`;
    const body = JSON.stringify({ approve: true });
    for (const origin of ["http://evil.example", `http://localhost:${ingress + 1}`, "null", "not a url"]) {
      const res = await send(
        ingress,
        "POST",
        `/api/approvals/${id}`,
        { host, origin, "content-type": "application/json" },
        body,
      );
      expect(res.status, origin).toBe(403);
      expect(JSON.parse(res.body).error.code).toBe("forbidden_origin");
    }
    expect(service.approvals.get(id)).toBeDefined();
    // The page's own origin (and a client that sends no Origin) may answer.
    const ok = await send(
      ingress,
      "POST",
      `/api/approvals/${id}`,
      { host, origin: `http://${host}`, "content-type": "application/json" },
      body,
    );
    expect(ok.status).toBe(200);
    expect(service.approvals.get(id)).toBeUndefined();
  });

  it("refuses the talk page's WebSocket from another origin or a rebound Host", async () => {
    const url = `ws://127.0.0.1:${ingress}/api/v1/satellite`;
    expect(await upgrade(url, { Origin: "http://evil.example" })).toBe(403);
    expect(
      await upgrade(url, { Origin: `http://evil.example:${ingress}`, Host: `evil.example:${ingress}` }),
    ).toBe(403);
    expect(await upgrade(url, { Origin: `http://127.0.0.1:${ingress}` })).toBe(101);
  });

  it("satellite port: devices (no Origin) connect; a browser page on another origin is refused", async () => {
    const url = `ws://127.0.0.1:${satellite}/api/v1/satellite`;
    const auth = { Authorization: `Bearer ${SATELLITE_TOKEN}` };
    expect(await upgrade(url, auth)).toBe(101);
    expect(await upgrade(url, { ...auth, Origin: "http://evil.example" })).toBe(403);
    expect(await upgrade(url, { ...auth, Origin: `http://127.0.0.1:${satellite}` })).toBe(403);
    // The standalone ingress page itself may.
    expect(await upgrade(url, { ...auth, Origin: `http://localhost:${ingress}` })).toBe(101);
    // Health probes and scrapes are not browser upgrades: untouched.
    expect((await send(satellite, "GET", "/healthz", { host: "anything.example" })).status).toBe(200);
  });

  it("isLoopbackHostname", () => {
    for (const h of ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
      expect(isLoopbackHostname(h), h).toBe(true);
    for (const h of [
      "",
      "localhost.",
      "evil.localhost.example",
      "128.0.0.1",
      "0.0.0.0",
      "::",
      "127.0.0.1.nip.io",
    ])
      expect(isLoopbackHostname(h), h).toBe(false);
  });
});
