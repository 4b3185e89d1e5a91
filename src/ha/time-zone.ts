/**
 * Home Assistant's time zone: as an add-on from the Supervisor's proxy to Home Assistant's configuration
 * (`GET <supervisor>/core/api/config`, field `time_zone`); outside an add-on from `TZ`; else UTC.
 */
import { z } from "zod";
import type { Logger } from "../log.js";
import { supervisorBaseUrl, type HaEnv } from "./derive.js";

const ConfigAnswer = z.looseObject({ time_zone: z.string().min(1) });

/** The zone to use until Home Assistant has answered (and when it cannot): `TZ`, else UTC. */
export function localTimeZone(env: { TZ?: string | undefined }): string {
  const tz = env.TZ?.trim();
  return tz && isTimeZone(tz) ? tz : "UTC";
}

/** The zones the runtime lists (canonical names only): cheap to ask, unlike a formatter. */
let listed: ReadonlySet<string> | undefined;

export function isTimeZone(tz: string): boolean {
  // A formatter would answer for every name, aliases included, but the first one a process builds
  // loads ICU's date data (about 9 MiB); the list answers for the usual names without it.
  if (tz === "UTC" || (listed ??= new Set(Intl.supportedValuesOf("timeZone"))).has(tz)) return true;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * Asks Home Assistant for its time zone through the Supervisor. Resolves undefined without a Supervisor
 * token, or when the answer is missing or not a zone this runtime knows (logged). Never rejects.
 */
export async function homeAssistantTimeZone(
  env: HaEnv,
  logger: Logger,
  timeoutMs = 5000,
): Promise<string | undefined> {
  const token = env.SUPERVISOR_TOKEN?.trim();
  if (!token) return undefined;
  try {
    const res = await fetch(`${supervisorBaseUrl(env)}/core/api/config`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const parsed = ConfigAnswer.safeParse(await res.json());
    if (!parsed.success || !isTimeZone(parsed.data.time_zone)) throw new Error("no usable time_zone");
    return parsed.data.time_zone;
  } catch (err) {
    logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      "Home Assistant's time zone unknown",
    );
    return undefined;
  }
}
