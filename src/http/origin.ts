/**
 * `Host` and `Origin` checks for what a browser can reach outside an add-on, against DNS rebinding
 * (a foreign name that resolves to 127.0.0.1 makes a hostile page same-origin with us, but its
 * requests still carry the foreign name in `Host`) and cross-site requests (a hostile page's
 * requests carry its own `Origin`).
 *
 * - `loopbackOnly()`, on the standalone ingress instance: every request must name a loopback host
 *   (`localhost`, 127.0.0.0/8, `[::1]`, any port); state-changing requests and WebSocket upgrades
 *   that carry an `Origin` must come from that same host. A request without `Origin` is not a
 *   cross-site browser request and passes.
 * - `browserOriginGuard()`, on the satellite port: devices send no `Origin` and pass; a WebSocket
 *   upgrade with an `Origin` passes only when the predicate accepts it.
 *
 * Refusals are 403 with the registry codes `forbidden_host` / `forbidden_origin`.
 */
import { isIP } from "node:net";
import type { FastifyRequest, onRequestHookHandler } from "fastify";
import { apiErrorBody } from "../errors.js";

/** A `Host` header value: a name or IPv4 address, or a bracketed IPv6 address, and an optional port. */
const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** `localhost`, an address in 127.0.0.0/8, or `::1` (bracketed or not; any case). */
export function isLoopbackHostname(hostname: string): boolean {
  const bare = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  const h = bare.toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return new URL(`http://[${h}]`).hostname === "[::1]";
  return false;
}

/** `host[:port]` of a `Host` header in canonical form (`new URL` rules), or undefined for a malformed one. */
function canonicalHost(header: string | undefined): URL | undefined {
  if (header === undefined || !HOST_RE.test(header)) return undefined;
  try {
    return new URL(`http://${header}`);
  } catch {
    return undefined;
  }
}

/** An `Origin` header as a URL when it is an http(s) origin; undefined for `null` or anything else. */
function parseOrigin(origin: string): URL | undefined {
  try {
    const url = new URL(origin);
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}

function isUpgrade(req: FastifyRequest): boolean {
  return req.headers.upgrade?.toLowerCase() === "websocket";
}

/** Standalone ingress instance: loopback `Host` only; same-origin state changes and upgrades only. */
export function loopbackOnly(): onRequestHookHandler {
  return (req, reply, done) => {
    const host = canonicalHost(req.headers.host);
    if (host === undefined || !isLoopbackHostname(host.hostname)) {
      req.log.warn({ host: req.headers.host }, "request for a foreign Host refused");
      void reply.code(403).send(apiErrorBody("forbidden_host"));
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && (isUpgrade(req) || !SAFE_METHODS.has(req.method))) {
      const from = parseOrigin(origin);
      if (from?.host !== host.host) {
        req.log.warn({ origin }, "request from a foreign origin refused");
        void reply.code(403).send(apiErrorBody("forbidden_origin"));
        return;
      }
    }
    done();
  };
}

/** Satellite port: a WebSocket upgrade that carries an `Origin` must be one `allowed` accepts. */
export function browserOriginGuard(allowed: (origin: URL) => boolean): onRequestHookHandler {
  return (req, reply, done) => {
    const origin = req.headers.origin;
    if (origin === undefined || !isUpgrade(req)) {
      done();
      return;
    }
    const from = parseOrigin(origin);
    if (from === undefined || !allowed(from)) {
      req.log.warn({ origin }, "satellite WebSocket from a browser page on another origin refused");
      void reply.code(403).send(apiErrorBody("forbidden_origin"));
      return;
    }
    done();
  };
}
