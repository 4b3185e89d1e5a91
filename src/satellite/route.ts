/**
 * Fastify plugin: `GET /api/v1/satellite` (WebSocket, protocol v1) on the satellite port.
 * One `V1Wire` (a `SatelliteConnection` around a `SatelliteCore`) per socket.
 *
 * Lifecycle: a newer connection with the same `client_id` replaces the older one (`session.end`
 * reason `replaced`, close 1000). On Fastify close every satellite gets `session.end` reason
 * `shutdown` and close 1001, and its conversation is ended (bounded by `shutdownTimeoutMs`).
 */
import websocket from "@fastify/websocket";
import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { ApprovalQueue } from "../approvals/queue.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ConversationSource } from "../realtime/conversation.js";
import type { SatelliteAuth } from "./auth.js";
import { resolveLimits, type SatelliteLimits } from "./limits.js";
import { SatelliteRegistry } from "./registry.js";
import { feedSocket, wsLink } from "./wires/link.js";
import { V1Wire } from "./wires/v1.js";

export { SatelliteRegistry } from "./registry.js";

export const SATELLITE_PATH = "/api/v1/satellite";

export interface SatelliteRouteOptions {
  conversations: ConversationSource;
  approvals: ApprovalQueue;
  auth: SatelliteAuth;
  logger: Logger;
  metrics: Metrics;
  /** `satellites.conversation_idle_s`. Default 30. */
  conversationIdleS?: number;
  limits?: Partial<SatelliteLimits>;
  /** Upper bound on ending every bridge at shutdown. Default 3000 ms. */
  shutdownTimeoutMs?: number;
  registry?: SatelliteRegistry;
  /** The ingress talk page: its conversations count as the device `talk`. */
  talkPage?: boolean;
}

const QuerySchema = z.object({ token: z.string().min(1).max(512).optional() });
const BEARER_RE = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The connect-time token: `Authorization: Bearer` first, then `?token=`. */
export function connectToken(authorization: string | undefined, query: unknown): string | undefined {
  const bearer = authorization === undefined ? null : BEARER_RE.exec(authorization);
  if (bearer?.[1] !== undefined) return bearer[1];
  const q = QuerySchema.safeParse(query);
  return q.success ? q.data.token : undefined;
}

export const satelliteRoute: FastifyPluginAsync<SatelliteRouteOptions> = async (app, opts) => {
  const limits = resolveLimits(opts.limits);
  const registry = opts.registry ?? new SatelliteRegistry();

  // Registered before @fastify/websocket so it runs before its preClose closes the sockets bare.
  app.addHook("preClose", async () => {
    const all = Promise.all(registry.all().map((b) => b.end("shutdown", 1001)));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, opts.shutdownTimeoutMs ?? 3000);
    });
    await Promise.race([all, timeout]);
    clearTimeout(timer);
  });

  if (!app.hasDecorator("websocketServer"))
    await app.register(websocket, {
      // Frames somewhat above the limit get a typed error from the bridge; far above, ws closes 1009 itself.
      options: { maxPayload: limits.maxFrameBytes * 4, perMessageDeflate: false },
    });

  app.get(SATELLITE_PATH, { websocket: true, logLevel: "warn" }, (socket, req) => {
    const link = wsLink(socket, limits.closeGraceMs, req.raw.socket);
    const bridge = new V1Wire(
      link,
      {
        conversations: opts.conversations,
        approvals: opts.approvals,
        auth: opts.auth,
        logger: opts.logger,
        metrics: opts.metrics,
        limits,
        conversationIdleS: opts.conversationIdleS ?? 30,
        ...(opts.talkPage ? { talkPage: true } : {}),
      },
      connectToken(req.headers.authorization, req.query),
    );
    registry.add(bridge);
    feedSocket(socket, bridge, (err) => opts.logger.debug({ err }, "satellite socket error"));
  });
};
