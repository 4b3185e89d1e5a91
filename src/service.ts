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
import { deriveMcpServers } from "./ha/derive.js";
import { ingressPlugin, type StatusSnapshot } from "./http/ingress.js";
import { ClientMcpManager } from "./mcp/manager.js";
import { initialiseServerSeries, observeApprovals } from "./metrics.js";
import { RealtimeEngine, type RealtimeEngineOptions } from "./realtime/engine.js";
import { SatelliteAuth } from "./satellite/auth.js";
import type { SatelliteLimits } from "./satellite/limits.js";
import { SatelliteRegistry, satelliteRoute } from "./satellite/route.js";
import { RuntimeState } from "./state/runtime-state.js";
import { PersistentServerAdmin } from "./state/server-admin.js";

export interface ServiceOptions {
  /** Test seams for the outside world and for time-compressed runs. */
  readonly realtime?: Pick<RealtimeEngineOptions, "transportFactory" | "limits" | "now">;
  readonly satelliteLimits?: Partial<SatelliteLimits>;
}

export interface Service {
  readonly tools: ClientMcpManager;
  readonly engine: RealtimeEngine;
  readonly approvals: ApprovalQueue;
  readonly auth: SatelliteAuth;
  readonly satellites: SatelliteRegistry;
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
  const engine = new RealtimeEngine({
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
    devices: config.satellites.devices,
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
      },
      sessions,
      satellites: {
        connected: satellites.size,
        conversations: s.conversations,
        list: satellites.connected().map((c) => ({ id: c.clientId })),
      },
      version: VERSION,
    };
  };
  await app.ingress.register(ingressPlugin, {
    servers: new PersistentServerAdmin({ targets: [tools, engine.serverTarget], state, logger }),
    approvals,
    status,
    satelliteToken: () => auth.sharedToken,
    talkToken: () => talkToken,
    satellitePort: () => {
      const bound = app.satellite.server.address();
      return bound !== null && typeof bound === "object" ? bound.port : config.listen.satellite_port;
    },
    logger: logger.child({ part: "ingress" }),
  });

  // Closables run concurrently; each part bounds its own close.
  app.addClosable("approval metrics", stopApprovalMetrics);
  app.addClosable("approvals", () => approvals.cancel(() => true, "The service is shutting down."));
  app.addClosable("realtime engine", () => engine.close());
  app.addClosable("client MCP servers", () => tools.close());

  // Background start once both ports listen (ingress binds last), so loading the MCP client code,
  // spawning servers and opening upstream sessions stay off the path to listening.
  app.ingress.addHook("onListen", (done) => {
    setImmediate(() => {
      void tools.connectAll().catch((err: unknown) => logger.error({ err }, "client MCP start failed"));
      void engine.warmUp().catch((err: unknown) => logger.warn({ err }, "warm pool could not fill yet"));
    });
    done();
  });

  return { tools, engine, approvals, auth, satellites };
}
