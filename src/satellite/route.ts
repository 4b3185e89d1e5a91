/**
 * Fastify plugin: `GET /api/v1/satellite` (WebSocket, protocol v1) on the satellite port.
 * This is the `ws` adapter of `SatelliteLink`; one `SatelliteBridge` per connection.
 *
 * Lifecycle: a newer connection with the same `client_id` replaces the older one (`session.end`
 * reason `replaced`, close 1000). On Fastify close every satellite gets `session.end` reason
 * `shutdown` and close 1001, and its conversation is ended (bounded by `shutdownTimeoutMs`).
 */
import websocket from "@fastify/websocket";
import type { FastifyPluginAsync } from "fastify";
import type { RawData, WebSocket } from "ws";
import { z } from "zod";
import type { ApprovalQueue } from "../approvals/queue.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ConversationSource } from "../realtime/conversation.js";
import type { SatelliteAuth } from "./auth.js";
import { SatelliteBridge, type SatelliteLink } from "./bridge.js";
import { resolveLimits, type SatelliteLimits } from "./limits.js";

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
}

/** Connected satellites; pass one in the options to read it from elsewhere (status API). */
export class SatelliteRegistry {
  readonly #all = new Set<SatelliteBridge>();
  readonly #byClient = new Map<string, SatelliteBridge>();

  /** Ready satellites (past hello), one per `client_id`. */
  connected(): { clientId: string; name?: string; sessionId: string; state: string | null }[] {
    return [...this.#byClient].map(([clientId, b]) => ({
      clientId,
      ...(b.name === undefined ? {} : { name: b.name }),
      sessionId: b.sessionId,
      state: b.state,
    }));
  }

  get size(): number {
    return this.#byClient.size;
  }

  /** Every bridge, ready or still in the handshake. */
  all(): SatelliteBridge[] {
    return [...this.#all];
  }

  add(bridge: SatelliteBridge): void {
    if (bridge.closed) return; // refused at connect (bad token)
    this.#all.add(bridge);
    bridge.on("ready", ({ clientId }) => {
      const previous = this.#byClient.get(clientId);
      this.#byClient.set(clientId, bridge);
      if (previous !== undefined && previous !== bridge) void previous.end("replaced", 1000);
    });
    bridge.once("closed", () => {
      this.#all.delete(bridge);
      const id = bridge.clientId;
      if (id !== null && this.#byClient.get(id) === bridge) this.#byClient.delete(id);
    });
  }
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
    const link = wsLink(socket, limits.closeGraceMs);
    const bridge = new SatelliteBridge(
      link,
      {
        conversations: opts.conversations,
        approvals: opts.approvals,
        auth: opts.auth,
        logger: opts.logger,
        metrics: opts.metrics,
        limits,
        conversationIdleS: opts.conversationIdleS ?? 30,
      },
      connectToken(req.headers.authorization, req.query),
    );
    registry.add(bridge);
    socket.on("message", (data: RawData, isBinary: boolean) => {
      try {
        const buf = toBuffer(data);
        if (isBinary) bridge.handleBinary(buf);
        else bridge.handleText(buf.toString("utf8"), buf.byteLength);
      } catch (err) {
        bridge.internalError(err);
      }
    });
    socket.on("pong", () => bridge.handlePong());
    socket.on("error", (err) => opts.logger.debug({ err }, "satellite socket error"));
    socket.on("close", () => bridge.handleClosed());
  });
};

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function wsLink(socket: WebSocket, closeGraceMs: number): SatelliteLink {
  const open = (): boolean => socket.readyState === socket.OPEN;
  let graceTimer: NodeJS.Timeout | undefined;
  socket.once("close", () => clearTimeout(graceTimer));
  return {
    sendText: (text) => {
      if (open()) socket.send(text);
    },
    sendBinary: (data) => {
      if (open()) socket.send(data, { binary: true });
    },
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    ping: () => {
      if (open()) socket.ping();
    },
    close: (code, reason) => {
      if (socket.readyState === socket.CLOSED || graceTimer !== undefined) return;
      socket.close(code, reason);
      graceTimer = setTimeout(() => socket.terminate(), closeGraceMs);
      graceTimer.unref();
    },
    terminate: () => socket.terminate(),
  };
}
