/**
 * The effective configuration for people (`--check-config`, the admin UI): every secret masked.
 * Secrets: `api_key`, `token`, `authorization`, `password`, `encryption_key`, `noise_psk` at any
 * depth, and every value of a `headers` or `env` map (their names stay visible).
 */
import { stringify } from "yaml";
import type { Config } from "./model.js";

export const MASK = "********";

const SECRET_KEYS = new Set(["api_key", "token", "authorization", "password", "encryption_key", "noise_psk"]);
const SECRET_MAPS = new Set(["headers", "env"]);

function mask(value: unknown, key: string | undefined, inSecretMap: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => mask(v, undefined, false));
  if (typeof value === "object" && value !== null) {
    const secretMap = key !== undefined && SECRET_MAPS.has(key);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = mask(v, k, secretMap);
    return out;
  }
  if (value === undefined) return value;
  return inSecretMap || (key !== undefined && SECRET_KEYS.has(key)) ? MASK : value;
}

/** A deep copy of the configuration with every secret value replaced by `MASK`. */
export function maskSecrets(config: Config): Record<string, unknown> {
  return mask(config, undefined, false) as Record<string, unknown>;
}

/** The masked effective configuration as YAML in the seed's shape (`mcp_servers` as a map by name). */
export function renderEffectiveConfig(config: Config): string {
  const masked = maskSecrets(config);
  const servers: Record<string, unknown> = {};
  for (const entry of masked.mcp_servers as Record<string, unknown>[]) {
    const { name, ...rest } = entry;
    servers[String(name)] = rest;
  }
  return stringify({ ...masked, mcp_servers: servers }, { lineWidth: 0 });
}
