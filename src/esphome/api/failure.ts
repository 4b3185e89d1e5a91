/**
 * Turns whatever a failed connect threw into a `DeviceConnectError` with words a user understands.
 * Pure: it reads error names, codes and causes only, so it is tested apart from any socket.
 */
import { DeviceConnectError } from "./types.js";

/** Socket error codes that mean "nothing answered there", reported with the code. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNRESET",
  "ETIMEDOUT",
  "EADDRNOTAVAIL",
]);

function chain(err: unknown): { name: string; code: string; message: string }[] {
  const out: { name: string; code: string; message: string }[] = [];
  let cur: unknown = err;
  for (let i = 0; i < 8 && cur instanceof Error; i++) {
    const code = (cur as { code?: unknown }).code;
    out.push({ name: cur.name, code: typeof code === "string" ? code : "", message: cur.message });
    cur = cur.cause;
  }
  return out;
}

/**
 * Classifies a connect failure. `where` is `host:port`; `timeoutMs` the connect bound. The key is never
 * part of the result: only error names and codes are read, and library messages are not passed on.
 */
export function connectFailure(err: unknown, where: string, timeoutMs: number): DeviceConnectError {
  if (err instanceof DeviceConnectError) return err;
  const links = chain(err);
  const has = (pred: (l: { name: string; code: string }) => boolean): boolean => links.some(pred);

  if (has((l) => l.name === "EncryptionKeyInvalidError")) return new DeviceConnectError("bad_key");
  if (has((l) => l.code === "INVALID_PSK_LENGTH" || l.name === "EncryptionKeyMissingError")) {
    return new DeviceConnectError("bad_key", "the encryption key is not a valid 32-byte base64 key");
  }
  if (has((l) => l.name === "EncryptionRequiredError")) return new DeviceConnectError("key_required");
  const socket = links.find((l) => UNREACHABLE_CODES.has(l.code));
  if (socket) return new DeviceConnectError("unreachable", `cannot reach ${where} (${socket.code})`);
  if (has((l) => l.name === "TimeoutError" || l.name === "ConnectionTimeoutError")) {
    return new DeviceConnectError(
      "timeout",
      `${where} did not answer within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  if (has((l) => l.name === "NoiseHandshakeTimeoutError" || l.name === "AbortError")) {
    return new DeviceConnectError(
      "timeout",
      `${where} did not finish the handshake within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  if (has((l) => l.name === "ConnectionClosedByPeerError" || l.name === "PeerClosedDuringNoiseError")) {
    return new DeviceConnectError("unreachable", `cannot reach ${where} (the device closed the connection)`);
  }
  const first = links[0];
  return new DeviceConnectError(
    "protocol",
    `${where} answered something unexpected (${first ? first.name : String(err)})`,
  );
}
