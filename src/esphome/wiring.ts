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
  parts: { engine: RealtimeEngine; state: RuntimeState; version: string; overrides?: EsphomeRuntimeOverrides },
): Promise<EsphomeWiring> {
  const { config, logger } = app;
  if (!config.esphome.enabled) return { admin: () => null, started: Promise.resolve() };
  const log = logger.child({ part: "esphome" });
  let baseUrl: string | null = config.esphome.reply_base_url ?? null;
  const streams = new ReplyStreams({ baseUrl: () => baseUrl, logger: log });
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
          baseUrl = runtime.baseUrl ?? baseUrl;
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
