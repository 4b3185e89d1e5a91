/**
 * Wyoming discovery against a fake Supervisor (`POST /discovery` with the add-on's token), retried with
 * backoff and logged once; and the Wyoming service wired into the whole service: it listens on its own
 * port next to the two HTTP instances, announces itself once listening as an add-on, shows in the
 * ingress status API, and closes with the app.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { createApp, type App } from "../src/app.js";
import { ConfigSchema } from "../src/config/model.js";
import { createLogger, type Logger } from "../src/log.js";
import { wireService } from "../src/service.js";
import { WyomingDiscovery, discoveryMessage } from "../src/wyoming/discovery.js";
import { startFakeSupervisor, type FakeSupervisor } from "./fixtures/supervisor/fake-supervisor.js";
import { WyomingTestClient, haDescribe } from "./wyoming-client.js";

const TOKEN = "supervisor-token-for-tests";

function captured(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  return { logger, lines };
}

let sup: FakeSupervisor | undefined;
afterEach(async () => {
  await sup?.close();
  sup = undefined;
});

describe("WyomingDiscovery", () => {
  it("posts the service's URI with the Supervisor token, retrying with backoff, and logs success once", async () => {
    sup = await startFakeSupervisor({ token: TOKEN, discoveryFailures: 2 });
    const { logger, lines } = captured();
    const d = new WyomingDiscovery({
      env: { SUPERVISOR_TOKEN: TOKEN, OPENVOICE_SUPERVISOR_URL: `${sup.url}/` },
      port: 10300,
      hostname: "a0d7b954-openvoice-mcp",
      logger,
      backoff: { initialMs: 20, maxMs: 40 },
    });
    expect(await d.start()).toBe(true);
    expect(d.attempts).toBe(3);
    expect(sup.discoveries).toEqual([
      { service: "wyoming", config: { uri: "tcp://a0d7b954-openvoice-mcp:10300" } },
    ]);
    expect(sup.requests.map((r) => [r.method, r.path, r.authorized, r.status])).toEqual([
      ["POST", "/discovery", true, 503],
      ["POST", "/discovery", true, 503],
      ["POST", "/discovery", true, 200],
    ]);
    const announced = lines.filter((l) => String(l.msg).includes("announced"));
    expect(announced).toHaveLength(1);
    expect(
      lines.filter((l) => String(l.msg).startsWith("Wyoming discovery failed")).map((l) => l.level),
    ).toEqual(["warn", "debug"]);
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
    expect(await d.start()).toBe(true); // once: no second announcement
    expect(sup.discoveries).toHaveLength(1);
  });

  it("does nothing without a Supervisor token, and stop() ends the retries", async () => {
    sup = await startFakeSupervisor({ token: TOKEN, discoveryFailures: 1000 });
    const { logger } = captured();
    const none = new WyomingDiscovery({ env: { OPENVOICE_SUPERVISOR_URL: sup.url }, port: 1, logger });
    expect(await none.start()).toBe(false);
    expect(sup.requests).toEqual([]);

    const wrong = new WyomingDiscovery({
      env: { SUPERVISOR_TOKEN: "not-the-token", OPENVOICE_SUPERVISOR_URL: sup.url },
      port: 1,
      logger,
      backoff: { initialMs: 10, maxMs: 10 },
    });
    const result = wrong.start();
    await expect.poll(() => sup!.requests.length).toBeGreaterThanOrEqual(2);
    wrong.stop();
    expect(await result).toBe(false);
    expect(sup.requests.every((r) => r.status === 401)).toBe(true);
  });

  it("builds the message Home Assistant's config flow reads (uri with host and port)", () => {
    const { config } = discoveryMessage("host-name", 10300);
    const uri = new URL(config.uri);
    expect([uri.protocol, uri.hostname, uri.port]).toEqual(["tcp:", "host-name", "10300"]);
  });
});

describe("the Wyoming service in the whole service", () => {
  let app: App | undefined;
  let dataDir: string | undefined;
  afterEach(async () => {
    await app?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    app = undefined;
  });

  async function startService(env: Record<string, string>, wyoming: Record<string, unknown> = {}) {
    dataDir = await mkdtemp(join(tmpdir(), "openvoice-wyoming-"));
    const { logger, lines } = captured();
    app = await createApp({
      config: ConfigSchema.parse({
        openai: { api_key: "sk-test", base_url: "ws://127.0.0.1:9/v1/realtime", pool_size: 0 },
        listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
        wyoming: { port: 0, ...wyoming },
        log_level: "debug",
      }),
      env,
      logger,
      registry: new Registry(),
      dataDir,
      ingressAllowedAddresses: ["127.0.0.1"],
    });
    const service = await wireService(app);
    const ports = await app.listen();
    app.setReady(true);
    return { service, ports, lines };
  }

  it("listens, announces itself as an add-on, shows in the status API and closes with the app", async () => {
    sup = await startFakeSupervisor({ token: TOKEN });
    const { service, ports } = await startService({
      SUPERVISOR_TOKEN: TOKEN,
      OPENVOICE_SUPERVISOR_URL: sup.url,
    });
    const port = ports.extra?.wyoming;
    expect(port).toBeGreaterThan(0);
    expect(service.wyoming?.port).toBe(port);
    await expect.poll(() => sup!.discoveries).toEqual([discoveryMessage(hostname(), port!)]);
    expect((await haDescribe(port!))?.type).toBe("info");

    const status = (await (await fetch(`http://127.0.0.1:${ports.ingressPort}/api/status`)).json()) as {
      wyoming: { enabled: boolean; listening: boolean; port: number; connections: number };
    };
    expect(status.wyoming).toMatchObject({ enabled: true, listening: true, port, connections: 0 });
    // The upstream here is unreachable, so /readyz names it, and only it: the Wyoming part is ready.
    const ready = (await (await fetch(`http://127.0.0.1:${ports.satellitePort}/readyz`)).json()) as {
      reasons?: string[];
    };
    expect(ready.reasons?.length).toBeGreaterThan(0);
    expect(ready.reasons?.every((r) => r.startsWith("upstream:"))).toBe(true);

    const open = await WyomingTestClient.connect(port!);
    const report = await app!.close();
    expect(report).toMatchObject({ clean: true });
    expect(await open.readToClose()).toEqual([]);
    await expect(WyomingTestClient.connect(port!)).rejects.toThrow();
  });

  it("outside an add-on it listens without announcing; disabled, it does not listen at all", async () => {
    sup = await startFakeSupervisor({ token: TOKEN });
    const first = await startService({ OPENVOICE_SUPERVISOR_URL: sup.url });
    expect(first.ports.extra?.wyoming).toBeGreaterThan(0);
    await app!.close();
    expect(sup.requests).toEqual([]);

    const second = await startService({}, { enabled: false });
    expect(second.ports.extra).toEqual({});
    expect(second.service.wyoming).toBeUndefined();
    expect(second.service.wyomingActivity.snapshot()).toMatchObject({ enabled: false, listening: false });
  });

  it("a port in use is logged and reported, and the rest of the service runs", async () => {
    const { createServer } = await import("node:net");
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const { ports, lines } = await startService({}, { port: taken });
      expect(ports.extra).toEqual({});
      expect(lines.some((l) => l.msg === "listener did not bind" && l.listener === "wyoming")).toBe(true);
      const ready = (await (await fetch(`http://127.0.0.1:${ports.satellitePort}/readyz`)).json()) as unknown;
      expect(JSON.stringify(ready)).toContain("wyoming: not listening");
    } finally {
      blocker.close();
    }
  });
});
