/**
 * Satellite tokens: one shared token, per-device tokens, or — when neither is configured — a token
 * generated at first start and kept in `<dataDir>/satellite_token` (mode 0600) so it survives restarts.
 *
 * Every comparison hashes the presented token and compares SHA-256 digests of equal length with
 * `crypto.timingSafeEqual`, against every known token without an early exit.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";

export const TOKEN_FILE = "satellite_token";
const MIN_TOKEN_LENGTH = 16;

/** Who a valid token belongs to. A device token is bound to that device's `client_id`. */
export type TokenMatch = { kind: "shared" } | { kind: "device"; deviceId: string };

export interface SatelliteAuthOptions {
  /** Shared token for every satellite (`satellites.token`). */
  token?: string | undefined;
  /** Per-device tokens (`satellites.devices`). */
  devices?: readonly { id: string; token: string }[];
}

interface Entry {
  readonly digest: Buffer;
  readonly match: TokenMatch;
}

const digestOf = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest();

export class SatelliteAuth {
  readonly #entries: readonly Entry[];
  /** Open connections per device id, for `claimConnection`. */
  readonly #connections = new Map<string, number>();
  readonly #sharedToken: string | undefined;
  readonly #generated: boolean;

  /** Use `SatelliteAuth.load` in the service; the constructor takes already-resolved tokens. */
  constructor(opts: SatelliteAuthOptions & { generated?: boolean }) {
    const entries: Entry[] = [];
    if (opts.token !== undefined) entries.push({ digest: digestOf(opts.token), match: { kind: "shared" } });
    for (const d of opts.devices ?? [])
      entries.push({ digest: digestOf(d.token), match: { kind: "device", deviceId: d.id } });
    if (entries.length === 0) throw new Error("SatelliteAuth needs at least one token");
    this.#entries = entries;
    this.#sharedToken = opts.token;
    this.#generated = opts.generated ?? false;
  }

  /**
   * Resolves the configured tokens; with none configured, reads `<dataDir>/satellite_token` or
   * creates it (0600) with 256 random bits. A file holding a token that is too short is replaced.
   */
  static async load(opts: SatelliteAuthOptions & { dataDir: string }): Promise<SatelliteAuth> {
    const devices = opts.devices ?? [];
    if (opts.token !== undefined || devices.length > 0)
      return new SatelliteAuth({ token: opts.token, devices });
    const token = await loadOrCreateToken(opts.dataDir);
    return new SatelliteAuth({ token, generated: true });
  }

  /** Constant-time check of a presented token against every known token. */
  verify(token: string): TokenMatch | null {
    const presented = digestOf(token);
    let found: TokenMatch | null = null;
    for (const e of this.#entries)
      if (timingSafeEqual(presented, e.digest) && found === null) found = e.match;
    return found;
  }

  /**
   * Takes one of `max` connection places of a device token; the shared token is not counted. Returns
   * the function that gives the place back (idempotent), or null when all `max` are taken. Every
   * wire using this `SatelliteAuth` shares the count.
   */
  claimConnection(match: TokenMatch, max: number): (() => void) | null {
    if (match.kind !== "device") return () => undefined;
    const id = match.deviceId;
    const open = this.#connections.get(id) ?? 0;
    if (open >= max) return null;
    this.#connections.set(id, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#connections.get(id) ?? 1) - 1;
      if (left > 0) this.#connections.set(id, left);
      else this.#connections.delete(id);
    };
  }

  /** The shared token (configured or generated), for the ingress UI; undefined with device tokens only. */
  get sharedToken(): string | undefined {
    return this.#sharedToken;
  }

  /** True when the shared token was generated into the data directory. */
  get generated(): boolean {
    return this.#generated;
  }
}

async function loadOrCreateToken(dataDir: string): Promise<string> {
  const file = path.join(dataDir, TOKEN_FILE);
  const existing = await readToken(file);
  if (existing !== null) return existing;
  await mkdir(dataDir, { recursive: true });
  const token = randomBytes(32).toString("base64url");
  // Written whole to a private temp file, then published with link(): readers never see a partial file.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, `${token}\n`, { mode: 0o600 });
  try {
    await link(tmp, file);
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // Another start published first, or a token too short to keep is there.
    const other = await readToken(file);
    if (other !== null) return other;
    await rename(tmp, file);
    return token;
  } finally {
    await rm(tmp, { force: true });
  }
}

async function readToken(file: string): Promise<string | null> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    return text.length >= MIN_TOKEN_LENGTH ? text : null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}
