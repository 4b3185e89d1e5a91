/**
 * Test helpers for the satellite bridge: an in-memory recording fake of the Conversation seam, a real
 * Fastify app with the satellite route on 127.0.0.1:0, and a `ws` client that records what it gets.
 */
import { EventEmitter } from "node:events";
import Fastify, { type FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import type { ClientOptions } from "ws";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { createLogger, type Logger } from "../src/log.js";
import { createMetrics, type Metrics } from "../src/metrics.js";
import type {
  Conversation,
  ConversationEvents,
  ConversationOptions,
  ConversationSource,
} from "../src/realtime/conversation.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import type { SatelliteLimits } from "../src/satellite/limits.js";
import { ServerMessageSchema, type ServerMessage } from "../src/satellite/wires/v1-protocol.js";
import { SatelliteRegistry, satelliteRoute } from "../src/satellite/route.js";
import { sine } from "./fake-realtime/audio.js";
import { RecordingSocket } from "./helpers/recording-socket.js";

export const SHARED_TOKEN = "shared-token-0123456789abcdef";
export const DEVICE = { id: "kitchen", token: "kitchen-token-0123456789" };

/** Records every call the bridge makes; tests drive its events with `emit`. */
export class FakeConversation extends EventEmitter<ConversationEvents> implements Conversation {
  static #n = 0;
  readonly id = `conv_${++FakeConversation.#n}`;
  readonly appended: Buffer[] = [];
  readonly calls: (
    | { kind: "commit" }
    | { kind: "cancel" }
    | { kind: "cancelTurn" }
    | { kind: "interrupt"; itemId: string; audioEndMs: number; at: number }
    | { kind: "end"; reason: string }
  )[] = [];
  ended = false;

  constructor(readonly opts: ConversationOptions) {
    super();
  }

  appendAudio(pcm: Buffer): void {
    if (!this.ended) this.appended.push(Buffer.from(pcm));
  }
  commitAndRespond(): void {
    this.calls.push({ kind: "commit" });
  }
  cancelResponse(): void {
    this.calls.push({ kind: "cancel" });
  }
  cancelTurn(): void {
    this.calls.push({ kind: "cancelTurn" });
  }
  interrupt(itemId: string, audioEndMs: number): void {
    this.calls.push({ kind: "interrupt", itemId, audioEndMs, at: performance.now() });
  }
  end(reason: string): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      this.calls.push({ kind: "end", reason });
      this.emit("closed", { reason });
    }
    return Promise.resolve();
  }
  appendedBytes(): number {
    return this.appended.reduce((n, b) => n + b.byteLength, 0);
  }
}

export class FakeConversationSource implements ConversationSource {
  readonly started: FakeConversation[] = [];
  /** When set, `start` rejects with it. */
  failWith: Error | null = null;
  /** Delay before `start` resolves. */
  delayMs = 0;

  async start(opts: ConversationOptions): Promise<Conversation> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) throw this.failWith;
    const c = new FakeConversation(opts);
    this.started.push(c);
    return c;
  }

  /** The n-th (0-based) conversation, polling until it has started (bounded). */
  async nth(n: number, timeoutMs = 3000): Promise<FakeConversation> {
    const deadline = Date.now() + timeoutMs;
    while (this.started.length <= n) {
      if (Date.now() > deadline) throw new Error(`conversation #${n} did not start`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.started[n]!;
  }
}

export interface TestApp {
  app: FastifyInstance;
  url: string;
  source: FakeConversationSource;
  approvals: ApprovalQueue;
  metrics: Metrics;
  registry: SatelliteRegistry;
  logger: Logger;
  close(): Promise<void>;
}

export async function startApp(
  opts: {
    limits?: Partial<SatelliteLimits>;
    conversationIdleS?: number;
    source?: ConversationSource;
    auth?: SatelliteAuth;
    approvalTimeoutS?: number;
  } = {},
): Promise<TestApp> {
  const source = new FakeConversationSource();
  const approvals = new ApprovalQueue({ timeoutS: opts.approvalTimeoutS ?? 30 });
  const metrics = createMetrics(new Registry(), { defaults: false });
  const logger = createLogger({ level: "fatal" });
  const registry = new SatelliteRegistry();
  const app = Fastify();
  await app.register(satelliteRoute, {
    conversations: opts.source ?? source,
    approvals,
    auth: opts.auth ?? new SatelliteAuth({ token: SHARED_TOKEN, devices: [DEVICE] }),
    logger,
    metrics,
    registry,
    limits: opts.limits ?? {},
    conversationIdleS: opts.conversationIdleS ?? 30,
    shutdownTimeoutMs: 2000,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (addr === null || typeof addr === "string") throw new Error("no address");
  return {
    app,
    url: `ws://127.0.0.1:${addr.port}/api/v1/satellite`,
    source,
    approvals,
    metrics,
    registry,
    logger,
    close: () => app.close(),
  };
}

export interface Received {
  at: number;
  json?: ServerMessage;
  binary?: Buffer;
}

/** A satellite: a real `ws` client that records every frame with its arrival time. */
export class TestSatellite extends RecordingSocket<Received> {
  readonly #opened: Promise<void>;

  constructor(url: string, opts: ClientOptions = {}) {
    super(url, opts, 3000);
    this.#opened = this.opened();
    this.ws.on("error", () => undefined);
  }

  static async connect(url: string, opts: ClientOptions = {}): Promise<TestSatellite> {
    const s = new TestSatellite(url, opts);
    await s.#opened;
    return s;
  }

  protected override record(buf: Buffer, isBinary: boolean, at: number): Received {
    if (isBinary) return { at, binary: buf };
    const parsed = ServerMessageSchema.safeParse(JSON.parse(buf.toString("utf8")));
    if (!parsed.success) throw new Error(`server sent an invalid message: ${buf.toString("utf8")}`);
    return { at, json: parsed.data };
  }

  protected override seen(): unknown {
    return this.messages();
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === "string" ? msg : JSON.stringify(msg));
  }

  sendAudio(pcm: Buffer): void {
    this.ws.send(pcm, { binary: true });
  }

  /** Sends a hello with defaults and waits for `session_ready`. */
  async hello(over: Record<string, unknown> = {}): Promise<ServerMessage> {
    this.send({
      type: "hello",
      protocol: 1,
      client_id: "kitchen",
      token: SHARED_TOKEN,
      audio: { in: { rate: 16000 }, out: { rate: 16000 } },
      ...over,
    });
    return this.waitJson("session_ready");
  }

  messages(): ServerMessage[] {
    return this.frames.flatMap((f) => (f.json ? [f.json] : []));
  }

  async waitJson<T extends ServerMessage["type"]>(
    type: T,
    pred: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true,
    timeoutMs = 3000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    const f = await this.waitFor(
      (f) => f.json?.type === type && pred(f.json as Extract<ServerMessage, { type: T }>),
      timeoutMs,
    );
    return f.json as Extract<ServerMessage, { type: T }>;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A sine tone as PCM16 mono. */
export function tonePcm(ms: number, rate: number, hz = 440, amplitude = 0.3): Buffer {
  return sine(ms, rate, hz, amplitude);
}
