/**
 * The two Fastify instances of the service.
 *
 * - Satellite port (`listen.satellite_port`, mapped to the host): `/healthz` (alive), `/readyz`
 *   (ready to take satellites), `/metrics` (Prometheus text; bearer token when `metrics.token` is set).
 *   The satellite WebSocket route is registered on it by the composition root.
 * - Ingress port (`listen.ingress_port`): the admin UI/API. As an add-on it answers only the
 *   Supervisor's ingress proxy (`172.30.32.2`); outside an add-on it binds loopback only.
 *
 * Both answer unknown routes and errors with the registry's `{error:{code,message}}` body.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
} from "fastify";
import type { Registry } from "prom-client";
import { ApiError, apiErrorBody } from "../errors.js";
import type { Logger } from "../log.js";
import { browserOriginGuard, loopbackOnly } from "./origin.js";
import { normalizeAddress } from "../net/address.js";

/** The address Home Assistant's ingress proxy connects from. */
export const INGRESS_PROXY_ADDRESS = "172.30.32.2";
/** Where the ingress instance binds outside an add-on. */
export const LOOPBACK_HOST = "127.0.0.1";

/** The outcome of the readiness checks: ready, or the reasons why not. */
export type Readiness =
  { readonly ready: true } | { readonly ready: false; readonly reasons: readonly string[] };

/** Compares a presented secret with the expected one in constant time (over SHA-256 digests). */
export function secretEquals(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer TOKEN` header, if that is what the header holds. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m?.[1];
}

/** No per-request log lines (health probes and scrapes would flood the add-on log); errors still log. */
const quietRequests = (): LogController => new LogController({ disableRequestLogging: true });

const noJsonSchemas = (): never => {
  throw new Error("routes here declare no JSON schema: check bodies and params with zod");
};
/**
 * No route declares a JSON schema (bodies and params are checked with zod), so Fastify gets
 * compilers that refuse one instead of loading ajv and fast-json-stringify on the path to listening.
 */
const NO_SCHEMA_COMPILERS = {
  compilersFactory: { buildValidator: () => noJsonSchemas, buildSerializer: () => noJsonSchemas },
};

/** Registry error bodies for unknown routes, `ApiError`s, validation errors and everything else. */
function useApiErrors(app: FastifyInstance): void {
  app.setNotFoundHandler((_req, reply) => reply.code(404).send(apiErrorBody("not_found")));
  app.setErrorHandler((error: FastifyError | ApiError, req, reply) => {
    if (error instanceof ApiError)
      return reply.code(error.status).send(apiErrorBody(error.code, error.message));
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500)
      return reply.code(status).send(apiErrorBody("bad_request", error.message));
    req.log.error({ err: error }, "request failed");
    return reply.code(500).send(apiErrorBody("internal"));
  });
}

export interface SatelliteServerOptions {
  readonly logger: Logger;
  readonly registry: Registry;
  /** Bearer token required on `/metrics`; open when unset. */
  readonly metricsToken?: string | undefined;
  /** Evaluated on every `/readyz`. */
  readonly readiness: () => Readiness;
  /**
   * Browser pages allowed to open WebSockets here (the standalone ingress page). Upgrades without
   * an `Origin` (devices) always pass; any other `Origin` gets 403 `forbidden_origin`. Default: none.
   */
  readonly browserOrigin?: (origin: URL) => boolean;
}

/** The satellite-port instance with its health, readiness and metrics routes (not listening yet). */
export function createSatelliteServer(opts: SatelliteServerOptions): FastifyInstance {
  const loggerInstance: FastifyBaseLogger = opts.logger.child({ server: "satellite" });
  const app = Fastify({
    loggerInstance,
    logController: quietRequests(),
    schemaController: NO_SCHEMA_COMPILERS,
  });
  useApiErrors(app);
  app.addHook("onRequest", browserOriginGuard(opts.browserOrigin ?? (() => false)));

  app.get("/healthz", (_req, reply) => reply.send({ status: "ok" }));

  app.get("/readyz", (_req, reply) => {
    const r = opts.readiness();
    if (r.ready) return reply.send({ status: "ready" });
    return reply.code(503).send({ ...apiErrorBody("not_ready"), reasons: r.reasons });
  });

  const token = opts.metricsToken;
  app.get("/metrics", async (req, reply) => {
    if (token !== undefined) {
      const presented = bearerToken(req.headers.authorization);
      if (presented === undefined || !secretEquals(presented, token)) {
        return reply.code(401).header("www-authenticate", "Bearer").send(apiErrorBody("unauthorized"));
      }
    }
    const body = await opts.registry.metrics();
    return reply.type(opts.registry.contentType).send(body);
  });

  return app;
}

export interface IngressServerOptions {
  readonly logger: Logger;
  /**
   * Remote addresses allowed to use the instance; `undefined` allows everyone (outside an add-on,
   * where the instance binds loopback only). As an add-on: `[INGRESS_PROXY_ADDRESS]`.
   */
  readonly allowedAddresses?: readonly string[] | undefined;
  /**
   * Outside an add-on: only loopback `Host` values, and state-changing requests and WebSocket
   * upgrades only from the page's own origin (see `loopbackOnly` in `./origin.ts`).
   */
  readonly loopbackOnly?: boolean;
}

/** The ingress instance (not listening yet); the admin UI/API plugins are registered on it. */
export function createIngressServer(opts: IngressServerOptions): FastifyInstance {
  const loggerInstance: FastifyBaseLogger = opts.logger.child({ server: "ingress" });
  const app = Fastify({
    loggerInstance,
    logController: quietRequests(),
    schemaController: NO_SCHEMA_COMPILERS,
  });
  useApiErrors(app);
  if (opts.loopbackOnly === true) app.addHook("onRequest", loopbackOnly());
  const allowed = opts.allowedAddresses;
  if (allowed !== undefined) {
    app.addHook("onRequest", async (req, reply) => {
      const from = normalizeAddress(req.socket.remoteAddress);
      if (!allowed.includes(from)) {
        req.log.warn({ from }, "ingress request from a foreign address refused");
        return reply.code(403).send(apiErrorBody("forbidden"));
      }
    });
  }
  return app;
}
