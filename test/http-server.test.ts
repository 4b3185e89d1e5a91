import { normalizeAddress } from "../src/net/address.js";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { createApp, isAddon, resolveDataDir, type App } from "../src/app.js";
import { parseConfig } from "../src/config/load.js";
import type { Config } from "../src/config/model.js";
import {
  bearerToken,
  createIngressServer,
  createSatelliteServer,
  INGRESS_PROXY_ADDRESS,
  secretEquals,
} from "../src/http/server.js";
import { createLogger } from "../src/log.js";

const logger = createLogger({ level: "fatal" });

function config(extra = "", host = "127.0.0.1"): Config {
  const r = parseConfig(
    `openai: {api_key: sk-test}\nlisten: {host: "${host}", satellite_port: 0, ingress_port: 0}\n${extra}`,
    "yaml",
    {},
  );
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

describe("helpers", () => {
  it("secretEquals compares whole secrets of any length", () => {
    expect(secretEquals("abc", "abc")).toBe(true);
    expect(secretEquals("abc", "abd")).toBe(false);
    expect(secretEquals("abc", "abcd")).toBe(false);
    expect(secretEquals("", "x")).toBe(false);
  });

  it("bearerToken reads only well-formed bearer headers", () => {
    expect(bearerToken("Bearer t0k")).toBe("t0k");
    expect(bearerToken("bearer  t0k ")).toBe("t0k");
    expect(bearerToken("Basic dXNlcg==")).toBeUndefined();
    expect(bearerToken("Bearer a b")).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });

  it("normalizeAddress unmaps IPv4-mapped IPv6", () => {
    expect(normalizeAddress("::ffff:172.30.32.2")).toBe("172.30.32.2");
    expect(normalizeAddress("::1")).toBe("::1");
  });

  it("add-on detection and data dir", () => {
    expect(isAddon({ SUPERVISOR_TOKEN: "x" })).toBe(true);
    expect(isAddon({ SUPERVISOR_TOKEN: "" })).toBe(false);
    expect(resolveDataDir({ SUPERVISOR_TOKEN: "x" })).toBe("/data");
    expect(resolveDataDir({}, "/srv/app")).toBe("/srv/app/data");
    expect(resolveDataDir({ SUPERVISOR_TOKEN: "x", OPENVOICE_DATA_DIR: "/tmp/ov" })).toBe("/tmp/ov");
  });
});

describe("satellite-port server", () => {
  it("/healthz is always alive and /readyz follows readiness", async () => {
    let ready = false;
    const app = createSatelliteServer({
      logger,
      registry: new Registry(),
      readiness: () => (ready ? { ready: true } : { ready: false, reasons: ["pool: connecting"] }),
    });
    try {
      expect((await app.inject("/healthz")).json()).toEqual({ status: "ok" });
      const notReady = await app.inject("/readyz");
      expect(notReady.statusCode).toBe(503);
      expect(notReady.json()).toMatchObject({ error: { code: "not_ready" }, reasons: ["pool: connecting"] });
      ready = true;
      const nowReady = await app.inject("/readyz");
      expect(nowReady.statusCode).toBe(200);
      expect(nowReady.json()).toEqual({ status: "ready" });
    } finally {
      await app.close();
    }
  });

  it("/metrics is open without a token and serves the registry", async () => {
    const registry = new Registry();
    const app = createSatelliteServer({ logger, registry, readiness: () => ({ ready: true }) });
    try {
      const res = await app.inject("/metrics");
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toContain("text/plain");
    } finally {
      await app.close();
    }
  });

  it("/metrics with metrics.token needs the bearer token", async () => {
    const app = createSatelliteServer({
      logger,
      registry: new Registry(),
      metricsToken: "scrape-secret",
      readiness: () => ({ ready: true }),
    });
    try {
      for (const authorization of [
        undefined,
        "Bearer wrong",
        "Bearer scrape-secret2",
        "Basic c2NyYXBlLXNlY3JldA==",
      ]) {
        const res = await app.inject({ url: "/metrics", headers: authorization ? { authorization } : {} });
        expect(res.statusCode, String(authorization)).toBe(401);
        expect(res.json()).toEqual({
          error: { code: "unauthorized", message: "missing or invalid bearer token" },
        });
        expect(res.headers["www-authenticate"]).toBe("Bearer");
      }
      const ok = await app.inject({ url: "/metrics", headers: { authorization: "Bearer scrape-secret" } });
      expect(ok.statusCode).toBe(200);
      // health stays open
      expect((await app.inject("/healthz")).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it("unknown routes get the registry's not_found body", async () => {
    const app = createSatelliteServer({
      logger,
      registry: new Registry(),
      readiness: () => ({ ready: true }),
    });
    try {
      const res = await app.inject("/nope");
      expect(res.statusCode).toBe(404);
      expect(res.json()).toEqual({ error: { code: "not_found", message: "no such resource" } });
    } finally {
      await app.close();
    }
  });
});

describe("ingress server", () => {
  it("as an add-on answers only the ingress proxy address", async () => {
    const app = createIngressServer({ logger, allowedAddresses: [INGRESS_PROXY_ADDRESS] });
    app.get("/api/ping", () => ({ pong: true }));
    try {
      const foreign = await app.inject({ url: "/api/ping", remoteAddress: "172.30.32.9" });
      expect(foreign.statusCode).toBe(403);
      expect(foreign.json()).toEqual({
        error: { code: "forbidden", message: "only Home Assistant ingress may use this endpoint" },
      });
      const proxied = await app.inject({ url: "/api/ping", remoteAddress: INGRESS_PROXY_ADDRESS });
      expect(proxied.statusCode).toBe(200);
      expect(proxied.json()).toEqual({ pong: true });
      const mapped = await app.inject({ url: "/api/ping", remoteAddress: `::ffff:${INGRESS_PROXY_ADDRESS}` });
      expect(mapped.statusCode).toBe(200);
      // unknown paths are refused before routing, too
      expect((await app.inject({ url: "/anything", remoteAddress: "10.0.0.1" })).statusCode).toBe(403);
    } finally {
      await app.close();
    }
  });

  it("refuses a real loopback client when running as an add-on", async () => {
    const app = createIngressServer({ logger, allowedAddresses: [INGRESS_PROXY_ADDRESS] });
    app.get("/api/ping", () => ({ pong: true }));
    try {
      await app.listen({ host: "127.0.0.1", port: 0 });
      const res = await fetch(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/ping`);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("forbidden");
    } finally {
      await app.close();
    }
  });
});

describe("createApp", () => {
  let dataDir: string | undefined;
  let app: App | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    dataDir = undefined;
  });

  async function start(
    extra = "",
    env: Record<string, string> = {},
    opts: { shutdownTimeoutMs?: number; host?: string } = {},
  ) {
    dataDir = await mkdtemp(join(tmpdir(), "openvoice-app-"));
    app = await createApp({
      config: config(extra, opts.host),
      env: { ...env, OPENVOICE_DATA_DIR: join(dataDir, "state") },
      logger,
      ...(opts.shutdownTimeoutMs ? { shutdownTimeoutMs: opts.shutdownTimeoutMs } : {}),
    });
    return app;
  }

  it("creates the data dir and serves health, readiness and metrics on real sockets", async () => {
    const a = await start();
    expect(a.dataDir).toBe(join(dataDir!, "state"));
    expect((await stat(a.dataDir)).isDirectory()).toBe(true);
    const { satellitePort, ingressPort } = await a.listen();
    expect(satellitePort).toBeGreaterThan(0);
    expect(ingressPort).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${satellitePort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    a.setReady(true);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    let poolUp = false;
    a.addReadinessCheck("pool", () => poolUp || "connecting");
    const blocked = await fetch(`${base}/readyz`);
    expect(blocked.status).toBe(503);
    expect(await blocked.json()).toMatchObject({ reasons: ["pool: connecting"] });
    poolUp = true;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain("openvoice_satellites_connected");
  });

  it("outside an add-on binds the ingress instance to 127.0.0.1 whatever listen.host says", async () => {
    const a = await start("", {}, { host: "::1" });
    await a.listen();
    const ingressAddr = a.ingress.server.address();
    const satelliteAddr = a.satellite.server.address();
    expect(typeof satelliteAddr === "object" && satelliteAddr?.address).toBe("::1");
    expect(typeof ingressAddr === "object" && ingressAddr?.address).toBe("127.0.0.1");
    expect(a.addon).toBe(false);
  });

  it("as an add-on restricts ingress to the proxy address", async () => {
    const a = await start("", { SUPERVISOR_TOKEN: "supervisor-token" });
    expect(a.addon).toBe(true);
    const { ingressPort } = await a.listen();
    const res = await fetch(`http://127.0.0.1:${ingressPort}/`);
    expect(res.status).toBe(403);
  });

  it("close() runs every closable, stops listeners, is idempotent and reports clean", async () => {
    const a = await start();
    const { satellitePort } = await a.listen();
    const closed: string[] = [];
    a.addClosable("sessions", async () => {
      await new Promise((r) => setTimeout(r, 20));
      closed.push("sessions");
    });
    a.addClosable("subprocesses", () => void closed.push("subprocesses"));
    const first = a.close();
    expect(a.close()).toBe(first);
    const report = await first;
    expect(report).toEqual({ clean: true, failed: [], timedOut: [] });
    expect(closed.sort()).toEqual(["sessions", "subprocesses"]);
    await expect(fetch(`http://127.0.0.1:${satellitePort}/healthz`)).rejects.toThrow();
  });

  it("close() is bounded: a hanging closable is reported, a failing one too", async () => {
    const a = await start("", {}, { shutdownTimeoutMs: 300 });
    await a.listen();
    a.addClosable("stuck", () => new Promise<void>(() => undefined));
    a.addClosable("broken", () => {
      throw new Error("boom");
    });
    const t0 = Date.now();
    const report = await a.close();
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(report.clean).toBe(false);
    expect(report.timedOut).toEqual(["stuck"]);
    expect(report.failed).toEqual(["broken"]);
  });
});
