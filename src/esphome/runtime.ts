/**
 * The ESPHome part once loaded (after the service listens): the devices from the options (and, with
 * `esphome.discover`, the ones Home Assistant knows), the device manager over the API client, and the
 * voice hosts' dependencies (the engine's conversations and speech, the reply streams).
 */
import type { App } from "../app.js";
import type { Logger } from "../log.js";
import type { RealtimeEngine } from "../realtime/engine.js";
import type { RuntimeState } from "../state/runtime-state.js";
import type { EsphomeAdmin } from "./admin.js";
import { connectDevice, probeVoiceOwner } from "./api/index.js";
import { EsphomeDevices, type DeviceManagerOptions, type EsphomeDeviceSpec } from "./devices.js";
import { readHaEsphomeDevices } from "./ha-config.js";
import { HaWebSocketClient, haWebSocketTarget } from "./ha-websocket.js";
import type { ReplyStreams } from "./reply-stream.js";
import { resolveReplyBaseUrl } from "./reply-url.js";

/** Test seams: faster backoff and ownership rounds. */
export type EsphomeRuntimeOverrides = Partial<
  Pick<DeviceManagerOptions, "backoffMs" | "ownershipRounds" | "ownershipRoundMs" | "ownershipRetryMs">
>;

export interface EsphomeRuntime {
  readonly admin: EsphomeAdmin;
  /** The reply base URL found at start (null: keep the configured one). */
  readonly baseUrl: string | null;
  close(): Promise<void>;
}

/** The listed devices, then discovered ones not listed (same host and port: the listed one wins, keeping the entity). */
export function mergeDeviceSpecs(
  listed: readonly EsphomeDeviceSpec[],
  discovered: readonly EsphomeDeviceSpec[],
): EsphomeDeviceSpec[] {
  const out = listed.map((l) => {
    const same = discovered.find((d) => d.host === l.host && d.port === l.port);
    return same?.satelliteEntityId && !l.satelliteEntityId
      ? {
          ...l,
          satelliteEntityId: same.satelliteEntityId,
          encryptionKey: l.encryptionKey ?? same.encryptionKey,
        }
      : l;
  });
  for (const d of discovered) if (!listed.some((l) => l.host === d.host && l.port === d.port)) out.push(d);
  return out;
}

export async function startEsphome(o: {
  app: App;
  engine: RealtimeEngine;
  state: RuntimeState;
  streams: ReplyStreams;
  clientInfo: string;
  logger: Logger;
  overrides?: EsphomeRuntimeOverrides;
}): Promise<EsphomeRuntime> {
  const { config, metrics } = o.app;
  const listed: EsphomeDeviceSpec[] = config.esphome.devices.map((d) => ({
    ...(d.name ? { name: d.name } : {}),
    host: d.host,
    port: d.port,
    ...(d.encryption_key ? { encryptionKey: d.encryption_key } : {}),
    ...(d.take_over !== undefined ? { takeOver: d.take_over } : {}),
    source: "options" as const,
  }));
  const discovered = config.esphome.discover ? await discover(config.esphome.ha_config_dir, o.logger) : [];
  const target = haWebSocketTarget(config.home_assistant, o.app.env);
  if ("reason" in target)
    o.logger.info(`taking devices over cannot switch their Assist entities: ${target.reason}`);
  const entities = "reason" in target ? undefined : new HaWebSocketClient(target);
  const base = await resolveReplyBaseUrl({
    option: config.esphome.reply_base_url,
    env: o.app.env,
    satellitePort: config.listen.satellite_port,
  });
  if (base.url === null) o.logger.warn(`reply URL for ESPHome devices: ${base.reason}`);
  const devices = new EsphomeDevices({
    connect: connectDevice,
    probe: probeVoiceOwner,
    state: o.state,
    voice: {
      conversations: o.engine,
      speech: o.engine,
      streams: o.streams,
      format: config.esphome.reply_format,
      conversationIdleS: config.satellites.conversation_idle_s,
      metrics,
    },
    clientInfo: o.clientInfo,
    logger: o.logger,
    metrics,
    ...(o.overrides?.backoffMs ? { backoffMs: o.overrides.backoffMs } : {}),
    ...(o.overrides?.ownershipRounds ? { ownershipRounds: o.overrides.ownershipRounds } : {}),
    ...(o.overrides?.ownershipRoundMs ? { ownershipRoundMs: o.overrides.ownershipRoundMs } : {}),
    ...(o.overrides?.ownershipRetryMs ? { ownershipRetryMs: o.overrides.ownershipRetryMs } : {}),
    ...(entities ? { entities } : {}),
  });
  const specs = mergeDeviceSpecs(listed, discovered);
  devices.start(specs);
  // The encoder is compiled ahead of the first reply only when there is a device to answer: an
  // install without ESPHome voice devices never loads it.
  if (specs.length > 0 && config.esphome.reply_format === "mp3")
    void o.streams.prepare("mp3").catch(() => undefined);
  return { admin: devices, baseUrl: base.url, close: () => devices.close() };
}

/**
 * The voice devices Home Assistant knows (those with an Assist satellite entity), from its configuration
 * folder; what could not be read is logged, never thrown.
 */
async function discover(dir: string, log: Logger): Promise<EsphomeDeviceSpec[]> {
  const found = await readHaEsphomeDevices(dir);
  for (const p of found.problems) log.warn(`ESPHome discovery: ${p}`);
  const voice = found.devices.filter((d) => d.satellite !== undefined);
  log.info({ devices: voice.length, dir }, "ESPHome voice devices found in Home Assistant's configuration");
  return voice.map((d) => ({
    ...(d.deviceName ? { name: d.deviceName } : {}),
    host: d.host,
    port: d.port,
    ...(d.noisePsk ? { encryptionKey: d.noisePsk } : {}),
    source: "home_assistant" as const,
    ...(d.satellite ? { satelliteEntityId: d.satellite.entityId } : {}),
  }));
}
