/**
 * The ESPHome route's step of the service wiring. At wiring time it only registers the reply streams'
 * route on the satellite port (Fastify routes must exist before listening; nothing heavy is loaded);
 * the device manager, the API client and the turn load with a dynamic import once the service listens,
 * so start-up stays lean. Everything is closed with the app.
 */
import type { App } from "../app.js";
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
