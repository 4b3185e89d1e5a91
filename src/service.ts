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
import type { McpServerConfig } from "./config/model.js";
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
import { FirmwareListener } from "./satellite/firmware/listener.js";
import { resolveLimits, type SatelliteLimits } from "./satellite/limits.js";
import { SatelliteRegistry, satelliteRoute, type SatelliteRouteOptions } from "./satellite/route.js";
import { RuntimeState } from "./state/runtime-state.js";
import { afterWaitingIo } from "./turns.js";
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
  const { state, servers, failover, tools } = await wireTools(app);
  const approvals = wireApprovals(app);
  const cost = createCostMeter(app, opts.costClock);
  const engine = wireEngine(app, { cost, tools, approvals, servers, failover, overrides: opts.realtime });
  const routes = await wireSatellites(app, { engine, approvals, limits: opts.satelliteLimits });
  const wyoming = wireWyoming(app, { engine, approvals });
  const firmware = await wireFirmware(app, { state, routes, limits: opts.satelliteLimits });
  const esphome = await wireEsphome(app, {
    engine,
    state,
    auth: routes.auth,
    version: VERSION,
    ...(opts.esphome ? { overrides: opts.esphome } : {}),
  });
  await wireIngress(app, { tools, engine, cost, approvals, state, routes, wyoming, firmware, esphome });
  startInBackground(app, { tools, engine });
  return {
    tools,
    engine,
    cost,
    approvals,
    auth: routes.auth,
    satellites: routes.satellites,
    wyoming: wyoming.server,
    wyomingActivity: wyoming.activity,
    firmwarePort: firmware.port,
    esphome,
  };
}

/**
 * Home Assistant's derived MCP servers reconciled with the saved runtime toggles, and the client MCP
 * manager over them (not connected yet: see {@link startInBackground}). Closes the manager with the app.
 */
async function wireTools(app: App): Promise<{
  state: RuntimeState;
  servers: McpServerConfig[];
  failover: RealtimeEngineOptions["failoverRoutes"];
  tools: ClientMcpManager;
}> {
  const { config, logger, metrics } = app;
  const derived = deriveMcpServers(config, app.env);
  for (const w of derived.warnings) logger.warn(w);
  logger.info({ source: derived.source }, "Home Assistant tools");
  const state = await RuntimeState.load(app.dataDir, logger);
  const servers = await state.reconcile(derived.servers);
  for (const s of servers) if (s.enabled) initialiseServerSeries(metrics, s.name, s.mode);
  const tools = new ClientMcpManager({
    servers,
    logger: logger.child({ part: "mcp" }),
    metrics,
    clientInfo: { name: "openvoice-mcp", version: VERSION },
  });
  app.addClosable("client MCP servers", () => tools.close());
  return { state, servers, failover: derived.failover, tools };
}

/** The approval queue with its metrics; on close every pending approval is denied. */
function wireApprovals(app: App): ApprovalQueue {
  const approvals = new ApprovalQueue({ timeoutS: app.config.approvals.timeout_s });
  app.addClosable("approval metrics", observeApprovals(app.metrics, approvals));
  app.addClosable("approvals", () => approvals.cancel(() => true, "The service is shutting down."));
  return approvals;
}

/**
 * The realtime engine (every route's conversations), closed with the app. Ready only once the
 * upstream accepted a session with this key.
 */
function wireEngine(
  app: App,
  parts: {
    cost: CostMeter;
    tools: ClientMcpManager;
    approvals: ApprovalQueue;
    servers: McpServerConfig[];
    failover: RealtimeEngineOptions["failoverRoutes"];
    overrides: ServiceOptions["realtime"];
  },
): RealtimeEngine {
  const engine = new RealtimeEngine({
    cost: parts.cost,
    config: app.config,
    tools: parts.tools,
    approvals: parts.approvals,
    logger: app.logger.child({ part: "realtime" }),
    metrics: app.metrics,
    nativeServers: parts.servers,
    failoverRoutes: parts.failover,
    ...parts.overrides,
  });
  app.addReadinessCheck("upstream", () => engine.upstreamProblem() ?? true);
  app.addClosable("realtime engine", () => engine.close());
  return engine;
}

/** What the satellite routes share with the firmware port and the ingress UI. */
interface SatelliteRoutes {
  readonly auth: SatelliteAuth;
  readonly satellites: SatelliteRegistry;
  readonly options: Omit<SatelliteRouteOptions, "auth"> & { conversationIdleS: number };
  /** The talk page's per-process token (handed out by the ingress UI only). */
  readonly talkToken: string;
}

/**
 * The satellite route on the satellite port (configured tokens) and on ingress for the talk page:
 * ingress has already authenticated the Home Assistant user, so it takes a per-process token that
 * only the ingress UI hands out.
 */
async function wireSatellites(
  app: App,
  parts: { engine: RealtimeEngine; approvals: ApprovalQueue; limits: Partial<SatelliteLimits> | undefined },
): Promise<SatelliteRoutes> {
  const { config, logger, metrics } = app;
  const auth = await SatelliteAuth.load({
    token: config.satellites.token,
    devices: config.satellites.devices.flatMap((d) =>
      d.token === undefined ? [] : [{ id: d.id, token: d.token }],
    ),
    dataDir: app.dataDir,
  });
  const satellites = new SatelliteRegistry();
  const options = {
    conversations: parts.engine,
    approvals: parts.approvals,
    logger: logger.child({ part: "satellite" }),
    metrics,
    conversationIdleS: config.satellites.conversation_idle_s,
    registry: satellites,
    ...(parts.limits ? { limits: parts.limits } : {}),
  };
  await app.satellite.register(satelliteRoute, { ...options, auth });
  const talkToken = randomBytes(32).toString("base64url");
  await app.ingress.register(satelliteRoute, {
    ...options,
    auth: new SatelliteAuth({ token: talkToken }),
    talkPage: true,
  });
  return { auth, satellites, options, talkToken };
}

/**
 * The Wyoming service when `wyoming.enabled`: the speech-to-text, conversation and text-to-speech
 * programs over the engine's conversations (the speaker session opens on the first call that needs
 * it), its listener, discovery in the add-on, readiness and closing. The activity exists either way
 * (the status page says when it is disabled).
 */
function wireWyoming(
  app: App,
  parts: { engine: RealtimeEngine; approvals: ApprovalQueue },
): { server: WyomingServer | undefined; activity: WyomingActivity } {
  const { config, logger } = app;
  const activity = new WyomingActivity({ metrics: app.metrics, enabled: config.wyoming.enabled });
  if (!config.wyoming.enabled) return { server: undefined, activity };
  const wyomingLogger = logger.child({ part: "wyoming" });
  const assist = createAssistPrograms({ ...parts, config, logger: wyomingLogger });
  const server = new WyomingServer({
    config,
    version: VERSION,
    logger: logger.child({ part: "wyoming-server" }),
    activity,
    programs: assist.programs,
    allowedPeers: wyomingPeers(config, app.addon),
  });
  app.addClosable("wyoming programs", () => assist.close());
  let discovery: WyomingDiscovery | undefined;
  app.addListener("wyoming", async () => {
    const port = await server.listen();
    if (app.addon) {
      discovery = new WyomingDiscovery({ env: app.env, port, logger: wyomingLogger });
      void discovery.start();
    }
    return port;
  });
  app.addReadinessCheck("wyoming", () => server.port !== undefined || "not listening");
  app.addClosable("wyoming discovery", () => discovery?.stop());
  app.addClosable("wyoming", () => server.close());
  return { server, activity };
}

/**
 * The firmware port when `satellites.dialects` enables a dialect (else nothing listens; `port` is
 * null), closed with the app. Its connections share the satellite registry, so the satellite port's
 * shutdown ends them like every other satellite.
 */
async function wireFirmware(
  app: App,
  parts: { state: RuntimeState; routes: SatelliteRoutes; limits: Partial<SatelliteLimits> | undefined },
): Promise<{ port: number | null; access: FirmwareAccess }> {
  const { config, logger } = app;
  const access = new FirmwareAccess({
    devices: config.satellites.devices,
    state: parts.state,
    logger: logger.child({ part: "firmware" }),
  });
  if (config.satellites.dialects.length === 0) return { port: null, access };
  const listener = new FirmwareListener({
    dialects: config.satellites.dialects,
    access,
    registry: parts.routes.satellites,
    deps: {
      ...parts.routes.options,
      auth: parts.routes.auth,
      limits: resolveLimits(parts.limits),
      logger: logger.child({ part: "firmware" }),
    },
  });
  const port = await listener.listen(config.listen.host, config.listen.firmware_port);
  app.addClosable("firmware port", () => listener.close());
  return { port, access };
}

/** The ingress admin UI and API: server toggles, approvals, the status page, tokens, spend, ESPHome devices. */
async function wireIngress(
  app: App,
  parts: {
    tools: ClientMcpManager;
    engine: RealtimeEngine;
    cost: CostMeter;
    approvals: ApprovalQueue;
    state: RuntimeState;
    routes: SatelliteRoutes;
    wyoming: { activity: WyomingActivity };
    firmware: { port: number | null; access: FirmwareAccess };
    esphome: EsphomeWiring;
  },
): Promise<void> {
  const { config, logger } = app;
  const { engine, routes, firmware } = parts;
  await app.ingress.register(ingressPlugin, {
    servers: new PersistentServerAdmin({
      targets: [parts.tools, engine.serverTarget],
      state: parts.state,
      logger,
    }),
    approvals: parts.approvals,
    status: () => statusSnapshot(config, parts),
    satelliteToken: () => routes.auth.sharedToken,
    talkToken: () => routes.talkToken,
    cost: parts.cost,
    allowFirmwareDevice: (address: string) => firmware.access.allow(address),
    satellitePort: () => {
      const bound = app.satellite.server.address();
      return bound !== null && typeof bound === "object" ? bound.port : config.listen.satellite_port;
    },
    logger: logger.child({ part: "ingress" }),
    esphome: parts.esphome.admin,
  });
}

/** What the status page shows: upstream, sessions, satellites, the firmware port, Wyoming. */
function statusSnapshot(
  config: App["config"],
  parts: {
    engine: RealtimeEngine;
    routes: SatelliteRoutes;
    wyoming: { activity: WyomingActivity };
    firmware: { port: number | null; access: FirmwareAccess };
  },
): StatusSnapshot {
  const { routes, firmware } = parts;
  const s = parts.engine.status();
  const sessions = Object.fromEntries(Object.entries(s.sessions).filter(([k, n]) => n > 0 && k !== "closed"));
  return {
    upstream: {
      state: s.upstream.state,
      ...(s.upstream.lastError ? { lastError: s.upstream.lastError } : {}),
      ...(s.upstream.hint ? { hint: s.upstream.hint } : {}),
    },
    sessions,
    satellites: {
      connected: routes.satellites.size,
      conversations: s.conversations,
      list: routes.satellites.devices().map((c) => ({
        id: c.clientId,
        ...(c.name === undefined ? {} : { name: c.name }),
        dialect: c.dialect,
      })),
    },
    ...(firmware.port === null
      ? {}
      : {
          firmware: {
            port: firmware.port,
            dialects: config.satellites.dialects,
            refused: firmware.access.refused(),
          },
        }),
    version: VERSION,
    wyoming: parts.wyoming.activity.snapshot(),
  };
}

/**
 * Once every port listens: the warm pool fills and the client MCP servers connect, so loading the
 * MCP client code, spawning servers and opening upstream sessions stay off the path to listening.
 * The upstream goes first (a conversation needs it most); the MCP client code, the largest piece of
 * CPU work (its SDK's schemas and Ajv: about 15 ms), loads after the I/O waiting by then is served
 * (`afterWaitingIo`). Failures are logged, never thrown.
 */
function startInBackground(app: App, parts: { tools: ClientMcpManager; engine: RealtimeEngine }): void {
  const { logger } = app;
  app.afterListen(() => {
    void parts.engine.warmUp().catch((err: unknown) => logger.warn({ err }, "warm pool could not fill yet"));
    void afterWaitingIo()
      .then(() => parts.tools.connectAll())
      .catch((err: unknown) => logger.error({ err }, "client MCP start failed"));
  });
}
