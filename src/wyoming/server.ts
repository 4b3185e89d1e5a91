/**
 * The Wyoming TCP service (DESIGN §9): many concurrent connections, each independent. A connection
 * reads frames (`framing.ts`), parses them into events (`events.ts`), answers `describe` and `ping`
 * itself and routes program events to the registered programs (`program.ts`).
 *
 * Bad input on one connection (not JSON, a header over 64 KiB, data or a payload over 1 MiB, a
 * connection ending inside an event, a known event with invalid data, an event that does not arrive
 * whole within `eventMs` of its first byte) gets `error {text, code}` and a close; no other connection
 * notices. Event types it does not know are skipped.
 *
 * Nobody can hoard connections: one address holds at most `perPeer` at once (one more gets `error
 * too_many_connections` and a close); a connection with no call in progress is closed `idleMs` after
 * its last whole event (bytes of an unfinished event do not count); past `MAX_CONNECTIONS` in all, a new
 * connection still answers `describe` and `ping` (for `eventMs`) but refuses program calls, so Home
 * Assistant can read `info` while others hold the service; past four times that, one is refused.
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { WYOMING_ERRORS, type WyomingErrorCode } from "../errors.js";
import type { Config } from "../config/model.js";
import type { Logger } from "../log.js";
import { AddressAllowList, LOOPBACK, normalizeAddress } from "../net/address.js";
import { WyomingActivity, type WyomingProgramKind, type WyomingTurn } from "./activity.js";
import { WyomingEvents, parseEvent, type IncomingEvent } from "./events.js";
import {
  FramingError,
  WyomingFrameReader,
  encodeFrame,
  type FramingLimits,
  type OutgoingFrame,
} from "./framing.js";
import { buildInfo } from "./info.js";
import {
  programOf,
  type WyomingCall,
  type WyomingPeer,
  type WyomingProgram,
  type WyomingPrograms,
} from "./program.js";

export interface WyomingServerOptions {
  readonly config: Config;
  /** The add-on's version, announced in `info`. */
  readonly version: string;
  readonly logger: Logger;
  /** Defaults to a tracker without metrics. */
  readonly activity?: WyomingActivity;
  /** Programs served from the start; more can be registered later. */
  readonly programs?: WyomingPrograms;
  readonly limits?: Partial<FramingLimits>;
  /** After we end a connection, how long the client has to close its side before it is destroyed. */
  readonly lingerMs?: number;
  /**
   * A connection with no program call in progress (none opened, or every one answered) is closed this
   * long after its last whole event. Calls in progress are never cut. Default 30 s.
   */
  readonly idleMs?: number;
  /** From the first byte of an event, how long the rest may take (`event_timeout`). Default 10 s. */
  readonly eventMs?: number;
  /**
   * Who may connect (Wyoming has no authentication of its own). Default: loopback only. The service
   * passes loopback, Home Assistant's internal network when running as an add-on, and
   * `wyoming.allowed_addresses`.
   */
  readonly allowedPeers?: AddressAllowList;
}

/** Home Assistant's internal network: Home Assistant reaches an add-on's port from here. */
export const ADDON_NETWORK = "172.30.32.0/23";

/** The peers a Wyoming service accepts: loopback, the add-on network (as an add-on), and the option. */
export function wyomingPeers(config: Config, addon: boolean): AddressAllowList {
  return new AddressAllowList([
    ...LOOPBACK,
    ...(addon ? [ADDON_NETWORK] : []),
    ...config.wyoming.allowed_addresses,
  ]);
}

/**
 * Connections one address may hold at once when `wyoming.max_connections_per_peer` is not set: Home
 * Assistant is one address for all of its satellites, each using at most a speech-to-text, a
 * conversation and a text-to-speech connection in turn, plus its `describe` calls.
 */
export function wyomingPeerCap(config: Config): number {
  return config.wyoming.max_connections_per_peer ?? 2 * config.satellites.max_conversations + 4;
}

/** Refused addresses logged at warning level (once each); more go to debug. */
const REFUSED_LOGGED = 32;

/** Events queued on one connection before reading pauses (backpressure on a slow program). */
const QUEUE_HIGH = 64;
const QUEUE_LOW = 16;
/** Payload bytes queued on one connection before reading pauses. */
const QUEUE_HIGH_BYTES = 2 * 1024 * 1024;
/** TCP keepalive probes find peers that vanished without closing. */
const KEEPALIVE_MS = 30_000;
/** Connections served in full at once; past it a new connection only answers `describe` and `ping`. */
export const MAX_CONNECTIONS = 128;
/** Connections held at all (describe-only ones included); past it a new one is refused. */
const HARD_MAX_CONNECTIONS = 4 * MAX_CONNECTIONS;
/** How long a refused socket has to read its `error` before it is destroyed. */
const REFUSED_LINGER_MS = 2_000;

const PROGRAM_LABEL: Record<WyomingProgramKind, string> = {
  asr: "speech-to-text",
  handle: "conversation",
  tts: "text-to-speech",
};

export class WyomingServer {
  readonly activity: WyomingActivity;
  readonly #opts: WyomingServerOptions;
  readonly #logger: Logger;
  #programs: WyomingPrograms;
  readonly #connections = new Set<WyomingConnection>();
  #server: Server | undefined;
  #next = 0;
  readonly #peers: AddressAllowList;
  readonly #refusedLogged = new Set<string>();
  readonly #perPeerCap: number;
  /** Open connections by normalised address. */
  readonly #byPeer = new Map<string, number>();

  constructor(opts: WyomingServerOptions) {
    this.#opts = opts;
    this.#logger = opts.logger;
    this.#programs = { ...opts.programs };
    this.activity = opts.activity ?? new WyomingActivity();
    this.#peers = opts.allowedPeers ?? new AddressAllowList(LOOPBACK);
    this.#perPeerCap = wyomingPeerCap(opts.config);
  }

  /**
   * Registers programs (replacing any of the same kind). Connections that already opened a call keep
   * it; `info` announces the programs registered at the time of each `describe`.
   */
  register(programs: WyomingPrograms): void {
    this.#programs = { ...this.#programs, ...programs };
  }

  /** @internal the program of a kind, for connections. */
  program(kind: WyomingProgramKind): WyomingProgram<never> | undefined {
    return this.#programs[kind];
  }

  /** The `info` data as `describe` answers it now. */
  info(): ReturnType<typeof buildInfo> {
    return buildInfo(this.#opts.config, this.#opts.version, this.#programs);
  }

  /** Open connections. */
  get connections(): number {
    return this.#connections.size;
  }

  /** The bound port, once listening. */
  get port(): number | undefined {
    const addr = this.#server?.address();
    return addr !== null && typeof addr === "object" ? addr.port : undefined;
  }

  /** Binds `listen.host` : `wyoming.port`; resolves with the bound port (useful with port 0). */
  async listen(): Promise<number> {
    if (this.#server) throw new Error("the Wyoming server is already listening");
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    const { host } = this.#opts.config.listen;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#opts.config.wyoming.port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.#logger.error({ err }, "Wyoming listener error"));
    const port = (server.address() as AddressInfo).port;
    this.activity.listening(port);
    this.#logger.info({ host, port }, "Wyoming service listening");
    return port;
  }

  /**
   * Stops accepting and closes every connection (their program calls get `close("shutdown")`).
   * Resolves when every socket is gone; sockets still open after `timeoutMs` are destroyed.
   */
  async close(timeoutMs = 2_000): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.activity.listening(undefined);
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const conns = [...this.#connections];
    for (const c of conns) c.shutdown();
    const timer = setTimeout(() => {
      for (const c of conns) c.destroy();
    }, timeoutMs);
    timer.unref();
    await Promise.all([closed, ...conns.map((c) => c.gone)]);
    clearTimeout(timer);
  }

  #accept(socket: Socket): void {
    const address = normalizeAddress(socket.remoteAddress);
    if (!this.#peers.allows(socket.remoteAddress))
      return this.#refuse(
        socket,
        address,
        "forbidden",
        "the address is not allowed (wyoming.allowed_addresses)",
      );
    const held = this.#byPeer.get(address) ?? 0;
    if (held >= this.#perPeerCap)
      return this.#refuse(
        socket,
        address,
        "too_many_connections",
        `the address holds ${held} connections, the most allowed (wyoming.max_connections_per_peer)`,
        `This address already holds ${held} connections to the Wyoming service, the most allowed ` +
          "(wyoming.max_connections_per_peer). Close one and try again.",
      );
    if (this.#connections.size >= HARD_MAX_CONNECTIONS)
      return this.#refuse(
        socket,
        address,
        "too_many_connections",
        `${HARD_MAX_CONNECTIONS} connections are open`,
        `The Wyoming service holds ${HARD_MAX_CONNECTIONS} connections, the most it keeps; try again when one ends.`,
      );
    const id = `w${++this.#next}`;
    const conn = new WyomingConnection(id, socket, this, {
      logger: this.#logger.child({ wyoming: id }),
      limits: this.#opts.limits,
      lingerMs: this.#opts.lingerMs ?? 5_000,
      idleMs: this.#opts.idleMs ?? 30_000,
      eventMs: this.#opts.eventMs ?? 10_000,
      describeOnly: this.#connections.size >= MAX_CONNECTIONS,
    });
    this.#connections.add(conn);
    this.#byPeer.set(address, held + 1);
    this.activity.connectionOpened();
    void conn.gone.then(() => {
      this.#connections.delete(conn);
      const left = (this.#byPeer.get(address) ?? 1) - 1;
      if (left > 0) this.#byPeer.set(address, left);
      else this.#byPeer.delete(address);
      this.activity.connectionClosed();
    });
  }

  /** One `error` (`text` defaults to the code's meaning), then the socket is closed. Logged once per address. */
  #refuse(socket: Socket, address: string, code: WyomingErrorCode, why: string, text?: string): void {
    const key = `${code} ${address}`;
    const first = !this.#refusedLogged.has(key) && this.#refusedLogged.size < REFUSED_LOGGED;
    if (first) this.#refusedLogged.add(key);
    this.#logger[first ? "warn" : "debug"]({ address, code }, `Wyoming connection refused: ${why}`);
    socket.on("error", () => undefined);
    socket.end(encodeFrame(WyomingEvents.error(text ?? WYOMING_ERRORS[code].message, code)));
    socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
  }
}

interface ConnectionOptions {
  readonly logger: Logger;
  readonly limits: Partial<FramingLimits> | undefined;
  readonly lingerMs: number;
  readonly idleMs: number;
  readonly eventMs: number;
  /** The service is full: answer `describe` and `ping`, refuse program calls, idle out after `eventMs`. */
  readonly describeOnly: boolean;
}

const FULL_SENTENCE =
  `The Wyoming service is serving ${MAX_CONNECTIONS} connections, the most at once; ` +
  "try again when one ends.";

interface OpenCall {
  readonly call: WyomingCall<IncomingEvent>;
  readonly turn: WyomingTurn;
}

/** One client connection: reader, event queue, program calls, and the `WyomingPeer` programs write to. */
class WyomingConnection implements WyomingPeer {
  readonly id: string;
  readonly remote: string;
  readonly gone: Promise<void>;
  readonly #socket: Socket;
  readonly #server: WyomingServer;
  readonly #log: Logger;
  readonly #reader: WyomingFrameReader;
  readonly #lingerMs: number;
  readonly #abort = new AbortController();
  readonly #queue: IncomingEvent[] = [];
  #queuedBytes = 0;
  readonly #calls = new Map<WyomingProgramKind, OpenCall>();
  #pumping = false;
  #closing = false;
  #ended = false;
  /** The service sent an `error`: calls still open end as `error`, not `abandoned`. */
  #failed = false;
  readonly #idleMs: number;
  readonly #eventMs: number;
  readonly #describeOnly: boolean;
  /** Closes the connection when no call is in progress; re-armed by every whole event. */
  #idle: NodeJS.Timeout | undefined;
  /** Armed by the first byte of an event; the rest must come before it fires. */
  #eventDeadline: NodeJS.Timeout | undefined;

  constructor(id: string, socket: Socket, server: WyomingServer, opts: ConnectionOptions) {
    this.id = id;
    this.#socket = socket;
    this.#server = server;
    this.#log = opts.logger;
    this.#lingerMs = opts.lingerMs;
    this.#reader = new WyomingFrameReader(opts.limits);
    this.remote = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
    this.gone = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("end", () => this.#onEnd());
    socket.on("error", (err) => this.#log.debug({ err }, "Wyoming socket error"));
    socket.once("close", () => this.#onClose());
    socket.setKeepAlive(true, KEEPALIVE_MS);
    this.#describeOnly = opts.describeOnly;
    this.#idleMs = opts.describeOnly ? opts.eventMs : opts.idleMs;
    this.#eventMs = opts.eventMs;
    this.#armIdle();
    this.#log.debug({ remote: this.remote, describeOnly: opts.describeOnly }, "Wyoming connection");
  }

  /** (Re)starts the idle clock; when it runs out with a call in progress it starts again. */
  #armIdle(): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.#closing) return;
      if (this.#pumping || this.#queue.length > 0 || [...this.#calls.values()].some((c) => !c.turn.finished))
        return this.#armIdle();
      this.#log.debug("idle Wyoming connection closed");
      this.#end("idle");
    }, this.#idleMs);
    this.#idle.unref();
  }

  /** Starts the event clock at the first byte of an event; stops it once no event is partly read. */
  #watchEvent(): void {
    if (!this.#reader.midEvent) {
      clearTimeout(this.#eventDeadline);
      this.#eventDeadline = undefined;
      return;
    }
    if (this.#eventDeadline !== undefined) return;
    this.#eventDeadline = setTimeout(() => {
      this.#eventDeadline = undefined;
      // Reading is paused for our own backpressure: the client is not the slow one.
      if (this.#socket.isPaused()) return this.#watchEvent();
      if (this.#reader.midEvent)
        this.fail(
          "event_timeout",
          `An event did not arrive whole within ${this.#eventMs / 1000} seconds of its first byte.`,
        );
    }, this.#eventMs);
    this.#eventDeadline.unref();
  }

  get closed(): boolean {
    return this.#closing;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  write(frame: OutgoingFrame): Promise<boolean> {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return Promise.resolve(false);
    if (socket.write(encodeFrame(frame))) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => () => {
        socket.off("drain", onDrain);
        socket.off("close", onClose);
        resolve(ok);
      };
      const onDrain = done(true);
      const onClose = done(false);
      socket.once("drain", onDrain);
      socket.once("close", onClose);
    });
  }

  fail(code: WyomingErrorCode, text: string = WYOMING_ERRORS[code].message): void {
    if (this.#closing) return;
    this.#log.info({ code }, `Wyoming error sent: ${text}`);
    this.#failed = true;
    void this.write(WyomingEvents.error(text, code));
    this.close();
  }

  close(): void {
    this.#end("closed by the service");
  }

  #end(reason: string): void {
    if (this.#closing) return;
    this.#beginClose(reason);
    this.#socket.end();
    setTimeout(() => this.destroy(), this.#lingerMs).unref();
  }

  /** Service shutdown: calls are told first, then the connection ends. */
  shutdown(): void {
    if (this.#closing) return;
    this.#beginClose("shutdown");
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    let frames;
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      return this.#failWith(err);
    }
    this.#watchEvent();
    if (frames.length > 0) this.#armIdle();
    for (const frame of frames) {
      const parsed = parseEvent(frame);
      if (parsed.kind === "unknown") {
        this.#log.debug({ type: parsed.type }, "Wyoming event type skipped");
        continue;
      }
      if (parsed.kind === "invalid")
        return this.fail("bad_event", `invalid ${parsed.type}: ${parsed.message}`);
      this.#queue.push(parsed.event);
      if (parsed.event.type === "audio-chunk") this.#queuedBytes += parsed.event.audio.length;
    }
    if (this.#queue.length >= QUEUE_HIGH || this.#queuedBytes >= QUEUE_HIGH_BYTES) this.#socket.pause();
    void this.#pump();
  }

  #onEnd(): void {
    this.#ended = true;
    if (this.#closing) return;
    try {
      this.#reader.end();
    } catch (err) {
      return this.#failWith(err);
    }
    // Home Assistant closes the whole connection when it stops waiting (TCP shows only the end of its
    // writing): a call still waiting for its answer, with nothing left to read, has nobody to answer.
    if (this.#pumping && this.#queue.length === 0) return this.#end("closed by the client");
    void this.#pump();
  }

  /** A framing error as its own code; anything else (a defect) as `internal`, logged. */
  #failWith(err: unknown): void {
    if (err instanceof FramingError) return this.fail(err.code, err.message);
    this.#log.error({ err }, "Wyoming connection failed");
    this.fail("internal", "The service failed while reading the request.");
  }

  #onClose(): void {
    if (!this.#closing) this.#beginClose("closed by the client");
  }

  /** Marks the connection closing, stops dispatching, and closes every program call once. */
  #beginClose(reason: string): void {
    this.#closing = true;
    clearTimeout(this.#idle);
    clearTimeout(this.#eventDeadline);
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.#abort.abort();
    for (const [kind, { call, turn }] of this.#calls) {
      try {
        call.close(reason);
      } catch (err) {
        this.#log.error({ err, program: kind }, "Wyoming program close failed");
      }
      turn.finish(this.#failed ? "error" : "abandoned");
    }
    this.#calls.clear();
  }

  /** Dispatches queued events one at a time, waiting for each program's `handle`. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    let dispatched = 0;
    try {
      while (!this.#closing) {
        const event = this.#queue.shift();
        if (event === undefined) break;
        dispatched++;
        if (event.type === "audio-chunk") this.#queuedBytes -= event.audio.length;
        const low = this.#queue.length <= QUEUE_LOW && this.#queuedBytes < QUEUE_HIGH_BYTES / 2;
        if (low && this.#socket.isPaused()) this.#socket.resume();
        await this.#dispatch(event).catch((err: unknown) => this.#failWith(err));
      }
    } finally {
      this.#pumping = false;
    }
    // The idle clock counts from the end of the last call's work, not only from its last event.
    if (dispatched > 0 && !this.#closing) this.#armIdle();
    // The client closed its side (Home Assistant closes the whole socket when a call is over): once its
    // last events are handled the connection is over, as for the Python server at end of stream.
    if (this.#ended && !this.#closing && this.#queue.length === 0) this.#end("closed by the client");
  }

  async #dispatch(event: IncomingEvent): Promise<void> {
    switch (event.type) {
      case "describe":
        await this.write(WyomingEvents.info(this.#server.info()));
        return;
      case "ping":
        await this.write(WyomingEvents.pong(event.text));
        return;
      case "error":
        this.#log.warn({ code: event.code }, `Wyoming client reported an error: ${event.text}`);
        return;
    }
    const kind = programOf(event.type);
    if (kind === undefined) return;
    if (this.#describeOnly) return this.fail("too_many_connections", FULL_SENTENCE);
    const open = this.#calls.get(kind) ?? this.#open(kind);
    if (open === undefined) return;
    try {
      await open.call.handle(event);
    } catch (err) {
      this.#log.error({ err, program: kind, type: event.type }, "Wyoming program failed");
      open.turn.finish("error");
      this.fail("internal", "The service failed while handling the request.");
    }
  }

  #open(kind: WyomingProgramKind): OpenCall | undefined {
    const turn = this.#server.activity.begin(kind, this.id);
    const program = this.#server.program(kind);
    if (program === undefined) {
      turn.finish("not_supported");
      this.fail("not_supported", `This service has no ${PROGRAM_LABEL[kind]} program.`);
      return undefined;
    }
    let call: WyomingCall<IncomingEvent>;
    try {
      call = program.open({ peer: this, turn, logger: this.#log.child({ program: kind }) });
    } catch (err) {
      this.#log.error({ err, program: kind }, "Wyoming program could not open a call");
      turn.finish("error");
      this.fail("internal", `The ${PROGRAM_LABEL[kind]} program could not start.`);
      return undefined;
    }
    const open: OpenCall = { call, turn };
    this.#calls.set(kind, open);
    return open;
  }
}
