/**
 * Who owns a device's voice assistant (DESIGN §11). Nothing acknowledges a subscribe, but the device
 * answers `VoiceAssistantConfigurationRequest` with its wake words only to the connection that owns
 * the voice assistant and with empty lists to any other. Empty lists from a device without wake words
 * look the same, so "other" needs to know the device has wake words: from an earlier answer on this
 * connection, or from the caller (`deviceHasWakeWords`, e.g. remembered from an earlier connection).
 */
import type { DeviceConnection, VoiceConfiguration, VoiceOwner } from "./types.js";

const seenWakeWords = new WeakSet<DeviceConnection>();

function answeredAsOwner(c: VoiceConfiguration): boolean {
  return c.available.length > 0 || c.active.length > 0 || c.maxActive > 0;
}

/**
 * Asks the device once. "openvoice": it answered this connection with its configuration;
 * "other": it answered empty although it has wake words; "unknown": empty without known wake words,
 * no answer within `timeoutMs` (default 3 s), or the connection closed. Never rejects.
 */
export async function probeVoiceOwner(
  c: DeviceConnection,
  o: { timeoutMs?: number; deviceHasWakeWords?: boolean } = {},
): Promise<VoiceOwner> {
  let config: VoiceConfiguration;
  try {
    config = await c.voiceConfiguration(o.timeoutMs ?? 3000);
  } catch {
    return "unknown";
  }
  if (answeredAsOwner(config)) {
    seenWakeWords.add(c);
    return "openvoice";
  }
  return seenWakeWords.has(c) || o.deviceHasWakeWords === true ? "other" : "unknown";
}
