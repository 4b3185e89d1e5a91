/**
 * Wires the parts of the service into an `App` (the composition root's second half): Home Assistant
 * server derivation, runtime toggles, the client MCP manager, the realtime engine with its warm pool,
 * the approval queue, the satellite route (satellite port, and ingress for the talk page) and the
 * ingress admin UI/API. `main` calls it between `createApp` and `listen`; tests call it the same way.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ApprovalQueue } from "./approvals/queue.js";
import type { App } from "./app.js";
import { createCostMeter } from "./cost/wire.js";
import type { CostMeter } from "./cost/meter.js";
import type { EsphomeRuntimeOverrides } from "./esphome/runtime.js";
import { wireEsphome, type EsphomeWiring } from "./esphome/wiring.js";
import { deriveMcpServers } from "./ha/derive.js";
import { ingressPlugin, type StatusSnapshot } from "./http/ingress.js";
import { ClientMcpManager } from "./mcp/manager.js";
import { initialiseServerSeries, observeApprovals } from "./metrics.js";
import { RealtimeEngine, type RealtimeEngineOptions } from "./realtime/engine.js";
import { SatelliteAuth } from "./satellite/auth.js";
import { FirmwareAccess } from "./satellite/firmware/access.js";
import { FirmwareListener, type FirmwareListenerOptions } from "./satellite/firmware/listener.js";
import { resolveLimits, type SatelliteLimits } from "./satellite/limits.js";
import { SatelliteRegistry, satelliteRoute } from "./satellite/route.js";
import { RuntimeState } from "./state/runtime-state.js";
import { PersistentServerAdmin } from "./state/server-admin.js";
import { WyomingActivity } from "./wyoming/activity.js";
import { WyomingDiscovery } from "./wyoming/discovery.js";
import { createAssistPrograms } from "./wyoming/programs.js";
import { WyomingServer, wyomingPeers } from "./wyoming/server.js";

export interface ServiceOptions {
  /** Test seams for the outside world and for time-compressed runs. */
  readonly realtime?: Pick<RealtimeEngineOptions, "transportFactory" | "limits" | "now">;
  readonly satelliteLimits?: Partial<SatelliteLimits>;
  /** Epoch milliseconds of the cost ledger (its days roll over at local midnight). */
  readonly costClock?: () => number;
  readonly esphome?: EsphomeRuntimeOverrides;
}

export interface Service {
  readonly tools: ClientMcpManager;
  readonly engine: RealtimeEngine;
  readonly cost: CostMeter;
  readonly approvals: ApprovalQueue;
  readonly auth: SatelliteAuth;
  readonly satellites: SatelliteRegistry;
  /** The Wyoming service (`undefined` when `wyoming.enabled` is false); register its programs here. */
  readonly wyoming?: WyomingServer;
  /** What the Wyoming service is doing (also when disabled: the status page says so). */
  readonly wyomingActivity: WyomingActivity;
  /** The bound firmware port; null when no dialect is enabled. */
  readonly firmwarePort: number | null;
  /** The ESPHome voice devices (loaded once the service listens). */
  readonly esphome: EsphomeWiring;
}

export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/**
 * Builds every part, registers routes on both Fastify instances, readiness checks and closables.
 * Client MCP servers connect and the warm pool fills in the background once the ingress instance
 * listens: a slow tool server or an unreachable upstream never blocks start-up (they show in
 * `/readyz` and the status API instead).
 */
export async function wireService(app: App, opts: ServiceOptions = {}): Promise<Service> {
  const { config, logger, metrics } = app;
  const derived = deriveMcpServers(config, app.env);
  for (const w of derived.warnings) logger.warn(w);
  logger.info({ source: derived.source }, "Home Assistant tools");

  const state = await RuntimeState.load(app.dataDir, logger);
  const servers = await state.reconcile(derived.servers);
  for (const s of servers) if (s.enabled) initialiseServerSeries(metrics, s.name, s.mode);

  const approvals = new ApprovalQueue({ timeoutS: config.approvals.timeout_s });
  const stopApprovalMetrics = observeApprovals(metrics, approvals);

  const tools = new ClientMcpManager({
    servers,
    logger: logger.child({ part: "mcp" }),
    metrics,
    clientInfo: { name: "openvoice-mcp", version: VERSION },
  });
  const cost = createCostMeter(app, opts.costClock);
  const engine = new RealtimeEngine({
    cost,
    config,
    tools,
    approvals,
    logger: logger.child({ part: "realtime" }),
    metrics,
    nativeServers: servers,
    failoverRoutes: derived.failover,
    ...opts.realtime,
  });

  const auth = await SatelliteAuth.load({
    token: config.satellites.token,
    devices: config.satellites.devices.flatMap((d) =>
      d.token === undefined ? [] : [{ id: d.id, token: d.token }],
    ),
    dataDir: app.dataDir,
  });
  const satellites = new SatelliteRegistry();
  const routeOptions = {
    conversations: engine,
    approvals,
    logger: logger.child({ part: "satellite" }),
    metrics,
    conversationIdleS: config.satellites.conversation_idle_s,
    registry: satellites,
    ...(opts.satelliteLimits ? { limits: opts.satelliteLimits } : {}),
  };
  await app.satellite.register(satelliteRoute, { ...routeOptions, auth });

  // The talk page reaches the same route through ingress with a per-process token that only the
  // ingress UI hands out: ingress has already authenticated the Home Assistant user.
  const talkToken = randomBytes(32).toString("base64url");
  await app.ingress.register(satelliteRoute, {
    ...routeOptions,
    auth: new SatelliteAuth({ token: talkToken }),
    talkPage: true,
  });

  const wyomingActivity = new WyomingActivity({ metrics, enabled: config.wyoming.enabled });
  // The speech-to-text, conversation and text-to-speech programs over the engine's conversations. The
  // speaker session for text-to-speech opens on the first call that needs it, not at start-up.
  const assist = config.wyoming.enabled
    ? createAssistPrograms({ engine, config, approvals, logger: logger.child({ part: "wyoming" }) })
    : undefined;
  const wyoming = assist
    ? new WyomingServer({
        config,
        version: VERSION,
        logger: logger.child({ part: "wyoming-server" }),
        activity: wyomingActivity,
        programs: assist.programs,
        allowedPeers: wyomingPeers(config, app.addon),
      })
    : undefined;
  if (wyoming && assist) {
    app.addClosable("wyoming programs", () => assist.close());
    const wyomingLogger = logger.child({ part: "wyoming" });
    let discovery: WyomingDiscovery | undefined;
    app.addListener("wyoming", async () => {
      const port = await wyoming.listen();
      if (app.addon) {
        discovery = new WyomingDiscovery({ env: app.env, port, logger: wyomingLogger });
        void discovery.start();
      }
      return port;
    });
    app.addReadinessCheck("wyoming", () => wyoming.port !== undefined || "not listening");
    app.addClosable("wyoming discovery", () => discovery?.stop());
    app.addClosable("wyoming", () => wyoming.close());
  }

  const firmwareAccess = new FirmwareAccess({
    devices: config.satellites.devices,
    state,
    logger: logger.child({ part: "firmware" }),
  });
  const firmware = await startFirmwarePort(app, {
    dialects: config.satellites.dialects,
    access: firmwareAccess,
    registry: satellites,
    deps: {
      ...routeOptions,
      auth,
      limits: resolveLimits(opts.satelliteLimits),
      logger: logger.child({ part: "firmware" }),
    },
  });

  const esphome = await wireEsphome(app, {
    engine,
    state,
    auth,
    version: VERSION,
    ...(opts.esphome ? { overrides: opts.esphome } : {}),
  });

  const status = (): StatusSnapshot => {
    const s = engine.status();
    const sessions = Object.fromEntries(
      Object.entries(s.sessions).filter(([k, n]) => n > 0 && k !== "closed"),
    );
    return {
      upstream: {
        state: s.upstream.state,
        ...(s.upstream.lastError ? { lastError: s.upstream.lastError } : {}),
        ...(s.upstream.hint ? { hint: s.upstream.hint } : {}),
      },
      sessions,
      satellites: {
        connected: satellites.size,
        conversations: s.conversations,
        list: satellites.devices().map((c) => ({
          id: c.clientId,
          ...(c.name === undefined ? {} : { name: c.name }),
          dialect: c.dialect,
        })),
      },
      ...(firmware === null
        ? {}
        : {
            firmware: {
              port: firmware.port,
              dialects: config.satellites.dialects,
              refused: firmwareAccess.refused(),
            },
          }),
      version: VERSION,
      wyoming: wyomingActivity.snapshot(),
    };
  };
  await app.ingress.register(ingressPlugin, {
    servers: new PersistentServerAdmin({ targets: [tools, engine.serverTarget], state, logger }),
    approvals,
    status,
    satelliteToken: () => auth.sharedToken,
    talkToken: () => talkToken,
    cost,
    allowFirmwareDevice: (address: string) => firmwareAccess.allow(address),
    satellitePort: () => {
      const bound = app.satellite.server.address();
      return bound !== null && typeof bound === "object" ? bound.port : config.listen.satellite_port;
    },
    logger: logger.child({ part: "ingress" }),
    esphome: esphome.admin,
  });

  // Ready only once the upstream accepted a session with this key (the listeners are the app's own check).
  app.addReadinessCheck("upstream", () => engine.upstreamProblem() ?? true);

  // Closables run concurrently; each part bounds its own close.
  app.addClosable("approval metrics", stopApprovalMetrics);
  app.addClosable("approvals", () => approvals.cancel(() => true, "The service is shutting down."));
  app.addClosable("realtime engine", () => engine.close());
  app.addClosable("client MCP servers", () => tools.close());

  // Background start once every port listens, so loading the MCP client code, spawning servers and
  // opening upstream sessions stay off the path to listening.
  app.afterListen(() => {
    void tools.connectAll().catch((err: unknown) => logger.error({ err }, "client MCP start failed"));
    void engine.warmUp().catch((err: unknown) => logger.warn({ err }, "warm pool could not fill yet"));
  });

  return {
    tools,
    engine,
    cost,
    approvals,
    auth,
    satellites,
    wyoming,
    wyomingActivity,
    firmwarePort: firmware?.port ?? null,
    esphome,
  };
}

/**
 * Binds the firmware port when `satellites.dialects` enables a dialect (else nothing listens) and
 * closes it with the app. Its connections share the satellite registry, so the satellite port's
 * shutdown ends them like every other satellite.
 */
async function startFirmwarePort(
  app: App,
  opts: FirmwareListenerOptions,
): Promise<{ port: number; listener: FirmwareListener } | null> {
  if (opts.dialects.length === 0) return null;
  const listener = new FirmwareListener(opts);
  const port = await listener.listen(app.config.listen.host, app.config.listen.firmware_port);
  app.addClosable("firmware port", () => listener.close());
  return { port, listener };
}
