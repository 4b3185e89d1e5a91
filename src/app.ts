/**
 * The composition root: builds the logger, the metrics registry and the two Fastify instances from a
 * validated `Config`, and owns shutdown. Parts of the service hook in through three lists:
 *
 * - Fastify plugins/routes, registered on `app.satellite` / `app.ingress` before `listen()`;
 * - readiness checks (`addReadinessCheck`), all of which must pass for `/readyz` to say ready;
 * - closables (`addClosable`): sessions, subprocesses, pools — closed by `close()`.
 */
import { mkdir } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import type { Config } from "./config/model.js";
import { createLogger, type Logger } from "./log.js";
import { createMetrics, type Metrics } from "./metrics.js";
import {
  createIngressServer,
  createSatelliteServer,
  INGRESS_PROXY_ADDRESS,
  LOOPBACK_HOST,
  type Readiness,
} from "./http/server.js";
import { isLoopbackHostname } from "./http/origin.js";
import { isAddon, resolveDataDir, type Env } from "./data-dir.js";

/** Whole-shutdown budget: listeners, sessions and subprocesses. */
export const SHUTDOWN_TIMEOUT_MS = 5_000;

export { isAddon, resolveDataDir, type Env } from "./data-dir.js";

/** A readiness check: `true` when ready, or a short reason why not. */
export type ReadinessCheck = () => true | string;

/** Something `close()` shuts down. It should finish within the budget; it is not waited on beyond it. */
export type Close = () => Promise<void> | void;

export interface ListenAddresses {
  readonly satellitePort: number;
  readonly ingressPort: number;
  /** Ports of the listeners added with `addListener` that bound, by name. */
  readonly extra?: Readonly<Record<string, number>>;
}

/** Binds a listener of its own (not a Fastify instance); resolves with its port, or `undefined` when it did not bind. */
export type Listen = () => Promise<number | undefined>;

export interface ShutdownReport {
  /** Every closable and listener finished cleanly within the budget. */
  readonly clean: boolean;
  readonly failed: readonly string[];
  readonly timedOut: readonly string[];
}

export interface AppOptions {
  readonly config: Config;
  /** Defaults to `process.env`. */
  readonly env?: Env;
  /** Defaults to a logger at `config.log_level` on stdout. */
  readonly logger?: Logger;
  /** Defaults to a fresh Registry with the default process metrics. */
  readonly registry?: Registry;
  /** Overrides the data dir resolved from `env`. */
  readonly dataDir?: string;
  /** Overrides the ingress allow-list (defaults: the ingress proxy as an add-on, anyone on loopback otherwise). */
  readonly ingressAllowedAddresses?: readonly string[];
  /** Overrides the shutdown budget (tests). */
  readonly shutdownTimeoutMs?: number;
}

export interface App {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly env: Env;
  /** Persistent state (generated tokens, runtime toggles); exists once `createApp` resolves. */
  readonly dataDir: string;
  readonly addon: boolean;
  /** Satellite-port instance: `/healthz`, `/readyz`, `/metrics`; register the satellite route here. */
  readonly satellite: FastifyInstance;
  /** Ingress instance for the admin UI/API. */
  readonly ingress: FastifyInstance;
  /** Adds a check consulted on every `/readyz`. */
  addReadinessCheck(name: string, check: ReadinessCheck): void;
  /** The app's own readiness flag (set by `main` once listening); checks are consulted only when true. */
  setReady(ready: boolean): void;
  readiness(): Readiness;
  /**
   * Registers something to shut down. On `close()` every closable runs concurrently with the
   * listeners closing; errors are logged, never thrown.
   */
  addClosable(name: string, close: Close): void;
  /**
   * Adds a listener `listen()` binds after both Fastify instances (e.g. the Wyoming TCP service). It
   * owns its failures: a rejection is logged and reported as not bound, never fails `listen()`.
   * Close it with `addClosable`.
   */
  addListener(name: string, listen: Listen): void;
  /**
   * Runs `start` once `listen()` has bound every listener, on a later turn of the event loop than
   * `listen()` resolving: background work (MCP servers, the warm pool) starts after the service
   * answers, never on the path to listening. `start` owns its errors.
   */
  afterListen(start: () => void): void;
  /** Binds both instances; resolves with the bound ports (useful with port 0). */
  listen(): Promise<ListenAddresses>;
  /**
   * Stops accepting, then closes listeners and every closable within the shutdown budget.
   * Idempotent: later calls return the first call's promise. Never rejects.
   */
  close(): Promise<ShutdownReport>;
}

function boundPort(server: FastifyInstance): number {
  const addr = server.server.address();
  if (addr === null || typeof addr === "string") throw new Error("server is not listening on a TCP port");
  return addr.port;
}

export async function createApp(opts: AppOptions): Promise<App> {
  const { config } = opts;
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? createLogger({ level: config.log_level });
  const metrics = createMetrics(opts.registry ?? new Registry());
  const addon = isAddon(env);
  const dataDir = opts.dataDir ?? resolveDataDir(env);
  await mkdir(dataDir, { recursive: true });

  let ready = false;
  const checks = new Map<string, ReadinessCheck>();
  const readiness = (): Readiness => {
    if (!ready) return { ready: false, reasons: ["listeners: not listening yet"] };
    const reasons: string[] = [];
    for (const [name, check] of checks) {
      let result: true | string;
      try {
        result = check();
      } catch (e) {
        result = (e as Error).message;
      }
      if (result !== true) reasons.push(`${name}: ${result}`);
    }
    return reasons.length === 0 ? { ready: true } : { ready: false, reasons };
  };

  const satellite = createSatelliteServer({
    logger,
    registry: metrics.registry,
    metricsToken: config.metrics.token,
    readiness,
    // Standalone, the ingress page may open the satellite WebSocket too; as an add-on it is served
    // through Home Assistant's origin, which reaches only the ingress instance.
    browserOrigin: (origin) =>
      !addon &&
      isLoopbackHostname(origin.hostname) &&
      ingress.server.listening &&
      Number(origin.port || (origin.protocol === "https:" ? 443 : 80)) === boundPort(ingress),
  });
  const ingress = createIngressServer({
    logger,
    allowedAddresses: opts.ingressAllowedAddresses ?? (addon ? [INGRESS_PROXY_ADDRESS] : undefined),
    loopbackOnly: !addon,
  });

  const closables: { name: string; close: Close }[] = [];
  const listeners: { name: string; listen: Listen }[] = [];
  const afterListen: (() => void)[] = [];
  let closing: Promise<ShutdownReport> | undefined;
  const budget = opts.shutdownTimeoutMs ?? SHUTDOWN_TIMEOUT_MS;

  const shutdown = async (): Promise<ShutdownReport> => {
    ready = false;
    const failed: string[] = [];
    const pending = new Set<string>();
    const tasks: { name: string; close: Close }[] = [
      ...closables.slice().reverse(),
      { name: "satellite listener", close: () => satellite.close() },
      { name: "ingress listener", close: () => ingress.close() },
    ];
    const runs = tasks.map(async (t) => {
      pending.add(t.name);
      try {
        await t.close();
      } catch (e) {
        failed.push(t.name);
        logger.error({ err: e, closable: t.name }, "shutdown step failed");
      } finally {
        pending.delete(t.name);
      }
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((res) => {
      timer = setTimeout(() => res("timeout"), budget);
      timer.unref();
    });
    const outcome = await Promise.race([Promise.all(runs).then(() => "done" as const), deadline]);
    clearTimeout(timer);
    const timedOut = outcome === "timeout" ? [...pending] : [];
    if (timedOut.length > 0) logger.warn({ pending: timedOut, budgetMs: budget }, "shutdown budget exceeded");
    return { clean: failed.length === 0 && timedOut.length === 0, failed, timedOut };
  };

  return {
    config,
    logger,
    metrics,
    env,
    dataDir,
    addon,
    satellite,
    ingress,
    addReadinessCheck: (name, check) => void checks.set(name, check),
    setReady: (value) => {
      ready = value;
    },
    readiness,
    addClosable: (name, close) => void closables.push({ name, close }),
    addListener: (name, listen) => void listeners.push({ name, listen }),
    afterListen: (start) => void afterListen.push(start),
    async listen() {
      await satellite.listen({ host: config.listen.host, port: config.listen.satellite_port });
      const ingressHost = addon ? config.listen.host : LOOPBACK_HOST;
      await ingress.listen({ host: ingressHost, port: config.listen.ingress_port });
      const extra: Record<string, number> = {};
      for (const l of listeners) {
        const port = await l.listen().catch((err: unknown) => {
          logger.error({ err, listener: l.name }, "listener did not bind");
          return undefined;
        });
        if (port !== undefined) extra[l.name] = port;
      }
      const ports = { satellitePort: boundPort(satellite), ingressPort: boundPort(ingress), extra };
      logger.info({ host: config.listen.host, ...ports, ingressHost, addon }, "listening");
      setImmediate(() => {
        for (const start of afterListen.splice(0)) start();
      });
      return ports;
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
  };
}
