/**
 * The base URL an ESPHome device fetches reply audio from (DESIGN §11): the satellite port, as the device on
 * the home network sees it.
 *
 * Precedence: `esphome.reply_base_url`; else, as an add-on, the host's LAN address (the primary connected
 * interface's IPv4 address from the Supervisor's `GET /network/info`) and the host port mapped to the
 * satellite port (`GET /addons/self/info`, its `network` map; the port itself with host networking); else
 * none, with the reason in words.
 */
import { z } from "zod";
import { supervisorBaseUrl, type HaEnv } from "../ha/derive.js";

export type ReplyBase =
  | { readonly url: string; readonly source: "option" | "supervisor" }
  | { readonly url: null; readonly reason: string };

const SupervisorEnvelope = z.object({ result: z.literal("ok"), data: z.unknown() });

const NetworkInfo = z.object({
  interfaces: z.array(
    z.object({
      interface: z.string(),
      enabled: z.boolean().optional(),
      connected: z.boolean().optional(),
      primary: z.boolean().optional(),
      ipv4: z
        .object({ address: z.array(z.string()).default([]) })
        .nullable()
        .optional(),
    }),
  ),
});

const AddonInfo = z.object({
  host_network: z.boolean().optional(),
  network: z.record(z.string(), z.number().int().nullable()).nullable().optional(),
});

const IPV4_CIDR = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/\d{1,2})?$/;

/** The LAN address from `/network/info` data: the primary connected interface first, IPv4 only. */
export function hostLanAddress(data: unknown): { address: string } | { reason: string } {
  const parsed = NetworkInfo.safeParse(data);
  if (!parsed.success) return { reason: "the Supervisor's network information has an unexpected shape" };
  const usable = parsed.data.interfaces.filter((i) => i.enabled !== false && i.connected !== false);
  const ordered = [...usable.filter((i) => i.primary === true), ...usable.filter((i) => i.primary !== true)];
  for (const i of ordered) {
    for (const a of i.ipv4?.address ?? []) {
      const m = IPV4_CIDR.exec(a);
      if (m) return { address: m[1]! };
    }
  }
  return { reason: "the host has no connected network interface with an IPv4 address" };
}

/** The host port for `containerPort` from `/addons/self/info` data. */
export function mappedHostPort(data: unknown, containerPort: number): { port: number } | { reason: string } {
  const parsed = AddonInfo.safeParse(data);
  if (!parsed.success) return { reason: "the Supervisor's add-on information has an unexpected shape" };
  if (parsed.data.host_network === true) return { port: containerPort };
  const port = parsed.data.network?.[`${containerPort}/tcp`];
  if (port === undefined || port === null)
    return {
      reason: `port ${containerPort}/tcp is not mapped to a host port (the add-on's Network settings)`,
    };
  return { port };
}

export interface ReplyBaseOptions {
  /** `esphome.reply_base_url`. */
  readonly option?: string | undefined;
  readonly env: HaEnv;
  /** The satellite port inside the container (`listen.satellite_port`). */
  readonly satellitePort: number;
  /** Per Supervisor request. Default 5000 ms. */
  readonly timeoutMs?: number;
}

/** Resolves the reply base URL. Never rejects: a failure is `{url: null, reason}`. */
export async function resolveReplyBaseUrl(o: ReplyBaseOptions): Promise<ReplyBase> {
  if (o.option) return { url: o.option.replace(/\/+$/, ""), source: "option" };
  const token = o.env.SUPERVISOR_TOKEN?.trim();
  if (!token)
    return {
      url: null,
      reason:
        "not running as a Home Assistant add-on: set esphome.reply_base_url to where devices reach port " +
        `${o.satellitePort}`,
    };
  const base = supervisorBaseUrl(o.env);
  const get = (path: string) => supervisorGet(`${base}${path}`, token, o.timeoutMs ?? 5000);
  const [network, addon] = await Promise.all([get("/network/info"), get("/addons/self/info")]);
  if ("reason" in network) return { url: null, reason: `the host's address is unknown: ${network.reason}` };
  if ("reason" in addon) return { url: null, reason: `the mapped port is unknown: ${addon.reason}` };
  const host = hostLanAddress(network.data);
  if ("reason" in host) return { url: null, reason: host.reason };
  const port = mappedHostPort(addon.data, o.satellitePort);
  if ("reason" in port) return { url: null, reason: port.reason };
  return { url: `http://${host.address}:${port.port}`, source: "supervisor" };
}

async function supervisorGet(
  url: string,
  token: string,
  timeoutMs: number,
): Promise<{ data: unknown } | { reason: string }> {
  const path = new URL(url).pathname;
  try {
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (!res.ok) return { reason: `the Supervisor answered ${path} with HTTP ${res.status}` };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { reason: `the Supervisor's answer to ${path} is not JSON` };
    }
    const env = SupervisorEnvelope.safeParse(body);
    return env.success ? { data: env.data.data } : { reason: `the Supervisor refused ${path}` };
  } catch (err) {
    return { reason: `cannot reach the Supervisor for ${path} (${fetchFailure(err)})` };
  }
}

/** `ECONNREFUSED`, `timed out`, ... from a failed `fetch`. */
function fetchFailure(err: unknown): string {
  if (err instanceof Error && err.name === "TimeoutError") return "timed out";
  const cause =
    err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (typeof cause?.code === "string") return cause.code;
  return err instanceof Error ? err.message : String(err);
}
