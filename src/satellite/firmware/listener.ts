/**
 * The firmware port (`listen.firmware_port`): where devices flashed for other Realtime add-ons
 * connect, unchanged. Bound only when `satellites.dialects` enables at least one dialect.
 *
 * Before the upgrade: `/device/ws` is `underzenith` and needs a valid bearer token (else 401); any
 * other path is `fjfricke` or `va_client`, which have no authentication of their own, so the peer
 * address must belong to a known device (else 403, and the attempt is shown in the ingress UI). A
 * `va_client` built with a token may present it instead. After the upgrade the first frame tells
 * those two apart: binary audio is `fjfricke`, `{"type":"start"}` is `va_client`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { Dialect } from "../../config/model.js";
import type { Logger } from "../../log.js";
import type { SatelliteRegistry } from "../registry.js";
import { connectToken } from "../route.js";
import type { SatelliteConnection, SatelliteDeps } from "../wires/connection.js";
import { FjfrickeWire } from "../wires/fjfricke.js";
import { feedSocket, toBuffer, wsLink } from "../wires/link.js";
import { UNDERZENITH_PATH, UnderzenithWire } from "../wires/underzenith.js";
import { VaClientWire } from "../wires/va-client.js";
import { normalizeAddress } from "../../net/address.js";
import type { FirmwareAccess, KnownDevice } from "./access.js";

export interface FirmwareListenerOptions {
  dialects: readonly Dialect[];
  deps: SatelliteDeps;
  access: FirmwareAccess;
  registry: SatelliteRegistry;
}

/** What the upgrade request decided: refuse with a status, or go on knowing this much. */
type Admission =
  | { ok: false; status: 401 | 403 | 404; dialect: Dialect | null }
  | { ok: true; open: (socket: WebSocket, raw: Duplex) => void };

export class FirmwareListener {
  readonly #opts: FirmwareListenerOptions;
  readonly #enabled: ReadonlySet<Dialect>;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #wss: WebSocketServer;

  constructor(opts: FirmwareListenerOptions) {
    this.#opts = opts;
    this.#enabled = new Set(opts.dialects);
    this.#log = opts.deps.logger;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.deps.limits.maxFrameBytes * 4,
      perMessageDeflate: false,
    });
    this.#server = createServer((_req, res) => {
      res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
      res.end("this port speaks WebSocket\n");
    });
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", (err) => this.#log.debug({ err }, "firmware socket error"));
      const admission = this.#admit(req);
      if (!admission.ok) {
        if (admission.dialect !== null)
          opts.deps.metrics.dialectRefusals.inc({
            dialect: admission.dialect,
            code: String(admission.status),
          });
        return refuse(socket, admission.status);
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => admission.open(ws, socket));
    });
  }

  /** Binds the port; resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        const addr = this.#server.address();
        resolve(typeof addr === "object" && addr !== null ? addr.port : port);
        this.#log.info({ host, port, dialects: [...this.#enabled] }, "firmware port listening");
      });
    });
  }

  /** Stops accepting and drops every socket still open (connections end through the registry first). */
  async close(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  // ── before the upgrade ─────────────────────────────────────────────────────────────────────

  #admit(req: IncomingMessage): Admission {
    const path = new URL(req.url ?? "/", "http://device").pathname;
    const address = normalizeAddress(req.socket.remoteAddress);
    if (path === UNDERZENITH_PATH) {
      if (!this.#enabled.has("underzenith")) return { ok: false, status: 404, dialect: null };
      const token = connectToken(req.headers.authorization, undefined);
      const match = token === undefined ? null : this.#opts.deps.auth.verify(token);
      if (match === null) {
        this.#log.warn({ address }, "underzenith device refused: missing or invalid bearer token");
        return { ok: false, status: 401, dialect: "underzenith" };
      }
      return {
        ok: true,
        open: (ws, raw) => this.#start(ws, raw, (link) => new UnderzenithWire(link, this.#opts.deps, match)),
      };
    }
    const fjfricke = this.#enabled.has("fjfricke");
    const vaClient = this.#enabled.has("va_client");
    if (!fjfricke && !vaClient) return { ok: false, status: 404, dialect: null };
    const device = this.#deviceOf(req, address, vaClient);
    if (device === null) {
      // Only va_client sends an Authorization header (empty when built without a token).
      const dialect: Dialect =
        !fjfricke || (vaClient && req.headers.authorization !== undefined) ? "va_client" : "fjfricke";
      this.#opts.access.refuse(address, dialect);
      return { ok: false, status: 403, dialect };
    }
    return { ok: true, open: (ws, raw) => this.#sniff(ws, raw, device, { fjfricke, vaClient }) };
  }

  /** A va_client token when presented and valid, else the device listed at this address. */
  #deviceOf(req: IncomingMessage, address: string, vaClient: boolean): KnownDevice | null {
    const token = vaClient ? connectToken(req.headers.authorization, undefined) : undefined;
    const match = token === undefined ? null : this.#opts.deps.auth.verify(token);
    if (match?.kind === "device") return { id: match.deviceId };
    const listed = this.#opts.access.deviceAt(address);
    if (listed !== null || match === null) return listed;
    return { id: `va_client-${address.replace(/[^a-zA-Z0-9_.:-]/g, "-")}`.slice(0, 64) };
  }

  // ── after the upgrade ──────────────────────────────────────────────────────────────────────

  /** Waits for the first frame, which names the dialect, then hands the socket to that wire. */
  #sniff(
    ws: WebSocket,
    raw: Duplex,
    device: KnownDevice,
    enabled: { fjfricke: boolean; vaClient: boolean },
  ): void {
    const { deps } = this.#opts;
    const timer = setTimeout(() => ws.close(1002, "hello_timeout"), deps.limits.helloTimeoutMs);
    ws.once("close", () => clearTimeout(timer));
    ws.once("message", (data: RawData, isBinary: boolean) => {
      clearTimeout(timer);
      const first = toBuffer(data);
      const isStart = !isBinary && /^\s*\{\s*"type"\s*:\s*"start"/.test(first.toString("utf8", 0, 64));
      if (isBinary ? !enabled.fjfricke : !(isStart && enabled.vaClient)) {
        this.#log.warn(
          { device: device.id, binary: isBinary },
          "firmware first frame of a dialect that is not enabled",
        );
        return ws.close(1008, "dialect not enabled");
      }
      const conn = this.#start(ws, raw, (link) =>
        isBinary ? new FjfrickeWire(link, deps, device) : new VaClientWire(link, deps, device),
      );
      if (isBinary) conn.handleBinary(first);
      else conn.handleText(first.toString("utf8"), first.byteLength);
    });
  }

  #start(
    ws: WebSocket,
    raw: Duplex,
    make: (link: ReturnType<typeof wsLink>) => SatelliteConnection,
  ): SatelliteConnection {
    const conn = make(wsLink(ws, this.#opts.deps.limits.closeGraceMs, raw));
    this.#opts.registry.add(conn);
    feedSocket(ws, conn, (err) => this.#log.debug({ err }, "firmware socket error"));
    return conn;
  }
}

function refuse(socket: Duplex, status: 401 | 403 | 404): void {
  const text = { 401: "Unauthorized", 403: "Forbidden", 404: "Not Found" }[status];
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
