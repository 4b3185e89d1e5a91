/**
 * The ESPHome route's step of the service wiring. At wiring time it only registers the reply streams'
 * route on the satellite port (Fastify routes must exist before listening; nothing heavy is loaded);
 * the device manager, the API client and the turn load with a dynamic import once the service listens,
 * so start-up stays lean. Everything is closed with the app.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { App } from "../app.js";
import { API_ERRORS, apiErrorBody } from "../errors.js";
import { bearerToken } from "../http/server.js";
import type { SatelliteAuth } from "../satellite/auth.js";
import type { RealtimeEngine } from "../realtime/engine.js";
import type { RuntimeState } from "../state/runtime-state.js";
import type { EsphomeAdmin } from "./admin.js";
import { ReplyStreams } from "./reply-stream.js";
import type { EsphomeRuntime, EsphomeRuntimeOverrides } from "./runtime.js";

export interface EsphomeWiring {
  /** The admin API's view; null until loaded and when `esphome.enabled` is false. */
  readonly admin: () => EsphomeAdmin | null;
  /** Settles once the ESPHome part has loaded and started connecting (at once when disabled). */
  readonly started: Promise<void>;
}

export async function wireEsphome(
  app: App,
  parts: {
    engine: RealtimeEngine;
    state: RuntimeState;
    /** The satellite tokens: the shared one authorises announcements on the satellite port. */
    auth: SatelliteAuth;
    version: string;
    overrides?: EsphomeRuntimeOverrides;
  },
): Promise<EsphomeWiring> {
  const { config, logger } = app;
  if (!config.esphome.enabled) return { admin: () => null, started: Promise.resolve() };
  const log = logger.child({ part: "esphome" });
  let found: string | null = null;
  const streams = new ReplyStreams({
    baseUrl: () => config.esphome.reply_base_url ?? found ?? boundAddress(app),
    logger: log,
  });
  await app.satellite.register(streams.plugin);
  await app.satellite.register(announceRoute(() => runtime?.admin ?? null, parts.auth));

  let runtime: EsphomeRuntime | null = null;
  let closed = false;
  let start!: () => void;
  const started = new Promise<void>((resolve) => (start = resolve));
  app.ingress.addHook("onListen", (done) => {
    setImmediate(() => {
      import("./runtime.js")
        .then(async (m) => {
          if (closed) return;
          runtime = await m.startEsphome({
            app,
            engine: parts.engine,
            state: parts.state,
            streams,
            clientInfo: `OpenVoice MCP ${parts.version}`,
            logger: log,
            ...(parts.overrides ? { overrides: parts.overrides } : {}),
          });
          found = runtime.baseUrl;
        })
        .catch((err: unknown) => log.error({ err }, "the ESPHome devices could not start"))
        .finally(start);
    });
    done();
  });
  app.addClosable("esphome devices", async () => {
    closed = true;
    await runtime?.close();
  });
  return { admin: () => runtime?.admin ?? null, started };
}

/** The satellite port's own address when it is bound to one concrete address (not a wildcard). */
function boundAddress(app: App): string | null {
  const host = app.config.listen.host;
  const bound = app.satellite.server.address();
  if (bound === null || typeof bound !== "object" || host === "0.0.0.0" || host === "::" || host === "")
    return null;
  return `http://${host.includes(":") ? `[${host}]` : host}:${bound.port}`;
}

const AnnounceParams = z.object({ name: z.string().min(1).max(200) });
const AnnounceBody = z.object({ text: z.string().trim().min(1).max(2000) }).strict();

/**
 * `POST /api/esphome/:name/announce {text}` on the satellite port, for automations (`rest_command`):
 * the same as the ingress route, authorised by the shared satellite token (`Authorization: Bearer`).
 */
function announceRoute(admin: () => EsphomeAdmin | null, auth: SatelliteAuth) {
  return (instance: FastifyInstance, _o: unknown, done: () => void): void => {
    instance.post("/api/esphome/:name/announce", async (req, reply) => {
      const token = bearerToken(req.headers.authorization);
      if (token === undefined || auth.verify(token)?.kind !== "shared")
        return reply.code(401).send(apiErrorBody("unauthorized", "the shared satellite token is required"));
      const params = AnnounceParams.safeParse(req.params);
      const body = AnnounceBody.safeParse(req.body);
      if (!params.success || !body.success)
        return reply.code(400).send(apiErrorBody("bad_request", 'expected a JSON body {"text": "…"}'));
      const a = admin();
      const outcome = a
        ? await a.announce(params.data.name, body.data.text)
        : ({ ok: false, code: "unknown_device", message: "the ESPHome devices are not loaded" } as const);
      if (outcome.ok) return { ok: true };
      return reply.code(API_ERRORS[outcome.code].status).send(apiErrorBody(outcome.code, outcome.message));
    });
    done();
  };
}
