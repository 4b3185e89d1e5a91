/**
 * The realtime engine: a warm pool of configured upstream sessions, conversations on top of them, and
 * runtime changes (servers enabled, tools changed) pushed to every live session. The tool catalog the
 * sessions share (native and client tools, per-session failover) is `tool-catalog.ts`.
 */
import { randomUUID } from "node:crypto";
import type { ApprovalQueue } from "../approvals/queue.js";
import type { Config, McpServerConfig } from "../config/model.js";
import { LimitError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ServerState, ServerStatus, ToolProvider } from "../mcp/types.js";
import type { Metrics } from "../metrics.js";
import { conversationDevice, type CostMeter } from "../cost/meter.js";
import type {
  AssistConversation,
  Conversation,
  ConversationOptions,
  ConversationSource,
  SpeechOptions,
  SpeechSource,
} from "./conversation.js";
import { LiveConversation, type SessionSource } from "./live-conversation.js";
import { RealtimeSession, type NativeListState, type SessionState } from "./session.js";
import { Speakers } from "./speakers.js";
import { EngineToolCatalog, type FailoverTarget } from "./tool-catalog.js";

export type { FailoverTarget } from "./tool-catalog.js";
import type { TranscriptTurn, TurnMode } from "./session-config.js";
import { realtimeUrl, type RealtimeTransportFactory } from "./transport.js";
import { createWsTransport } from "./ws-transport.js";
import {
  toUpstreamUnavailable,
  type UpstreamFailureKind,
  type UpstreamUnavailableError,
} from "./upstream-error.js";

export interface RealtimeLimits {
  /** The upstream's session limit (60 minutes). */
  sessionMaxMs: number;
  /** Conversations move to a fresh session this long before the limit (between turns). */
  rotateBeforeMs: number;
  /** Warm sessions nobody took are replaced after this long. */
  idleRecycleMs: number;
  connectTimeoutMs: number;
  /** An upstream that accepted the socket but sent nothing for this long refused the session. */
  handshakeTimeoutMs: number;
  /** Bound for `session.updated` plus native tool listing. */
  readyTimeoutMs: number;
  /** Waits before each reconnect attempt of a conversation. */
  reconnectDelaysMs: number[];
}

export const DEFAULT_LIMITS: RealtimeLimits = {
  sessionMaxMs: 60 * 60_000,
  rotateBeforeMs: 5 * 60_000,
  idleRecycleMs: 45 * 60_000,
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 5_000,
  readyTimeoutMs: 15_000,
  reconnectDelaysMs: [0, 500, 1000, 2000, 4000],
};

/** What the client MCP manager offers beyond `ToolProvider`: adding a server at runtime (failover). */
export interface RealtimeEngineOptions {
  config: Config;
  tools: ToolProvider & Partial<FailoverTarget>;
  approvals: ApprovalQueue;
  logger: Logger;
  metrics: Metrics;
  transportFactory?: RealtimeTransportFactory;
  now?: () => number;
  limits?: Partial<RealtimeLimits>;
  /** The effective server list (e.g. `deriveMcpServers().servers`); only `mode: native` ones are used. Default `config.mcp_servers`. */
  nativeServers?: McpServerConfig[];
  /**
   * Client routes by native server name, used when upstream cannot list its tools (e.g. Home
   * Assistant through the Supervisor). A native server's `fallback_url` is a route too.
   */
  failoverRoutes?: ReadonlyMap<string, McpServerConfig>;
  /** Prices usage, keeps budgets: refuses starts over budget and ends conversations at their limits. */
  cost?: CostMeter;
}

export type UpstreamState = "idle" | "connecting" | "connected" | "unreachable";

export interface UpstreamHealth {
  state: UpstreamState;
  /** Why the last attempt failed, in words ("OpenAI rejected the API key"), while `unreachable`. */
  lastError?: string;
  /** What to check ("check openai.api_key"), when known. */
  hint?: string;
  kind?: UpstreamFailureKind;
}

export interface RealtimeStatus {
  upstream: UpstreamHealth;
  pool: { target: number; ready: number; warming: number };
  conversations: number;
  sessions: Record<SessionState, number>;
  native: {
    name: string;
    enabled: boolean;
    /** Sessions per list-tools state. */
    sessions: Partial<Record<NativeListState, number>>;
    failedOver: boolean;
  }[];
}

/** How long the turns of a conversation the upstream ended wait for that device's next conversation. */
const CARRY_OVER_MS = 5 * 60_000;

/** The longest wait between two attempts to open a warm session while the upstream refuses them. */
const MAX_RETRY_MS = 10_000;
/** Out-of-band speech serves Wyoming's text-to-speech, which names no device. */
const SPEECH_DEVICE = { id: "wyoming", route: "wyoming" } as const;

export class RealtimeEngine implements ConversationSource, SessionSource, SpeechSource {
  readonly #o: RealtimeEngineOptions;
  readonly #limits: RealtimeLimits;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #factory: RealtimeTransportFactory;
  readonly #sessions = new Set<RealtimeSession>();
  readonly #pool: RealtimeSession[] = [];
  readonly #recycleTimers = new Map<RealtimeSession, NodeJS.Timeout>();
  readonly #conversations = new Set<LiveConversation>();
  /** Turns of conversations the upstream ended (refused reconnect), by device, for its next one. */
  readonly #carried = new Map<string, { turns: readonly TranscriptTurn[]; at: number }>();
  /** Starts that hold a place under the conversation cap but have no session yet. */
  #starting = 0;
  #warming = 0;
  #poolFailures = 0;
  /** One session per voice for out-of-band speech, oldest first. */
  readonly #speakers: Speakers<RealtimeSession>;
  #poolRetry: NodeJS.Timeout | undefined;
  #upstream: UpstreamHealth = { state: "idle" };
  #closed = false;
  readonly #unsubscribe: () => void;
  readonly #catalog: EngineToolCatalog;

  constructor(opts: RealtimeEngineOptions) {
    this.#o = opts;
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#log = opts.logger.child({ component: "realtime" });
    this.#now = opts.now ?? Date.now;
    this.#factory = opts.transportFactory ?? createWsTransport;
    this.#catalog = new EngineToolCatalog({
      servers: opts.nativeServers ?? opts.config.mcp_servers,
      config: opts.config,
      tools: opts.tools,
      failoverRoutes: opts.failoverRoutes,
      readyTimeoutMs: this.#limits.readyTimeoutMs,
      logger: this.#log,
    });
    this.#speakers = new Speakers({
      acquire: () => this.acquire({ turn: "client" }),
      account: (session) => this.#o.cost?.account(`speech-${session.id}`, SPEECH_DEVICE),
      closed: () => this.#closed,
      defaultVoice: opts.config.openai.voice,
    });
    this.#unsubscribe = opts.tools.onToolsChanged(() => this.#refreshAll());
  }

  get limits(): Readonly<RealtimeLimits> {
    return this.#limits;
  }

  /**
   * Fills the warm pool (`openai.pool_size`) and resolves when the first fill attempt settled.
   * Never rejects: an unreachable upstream shows in `status()` and is retried with backoff. Without a
   * pool, one session is opened and closed so that `/readyz` knows whether the key works.
   */
  async warmUp(): Promise<void> {
    if (this.#o.config.openai.pool_size === 0) {
      await this.#openSession("server_vad").then(
        (s) => s.close(1000, "probe"),
        () => undefined,
      );
      return;
    }
    await Promise.all(this.#fillPool());
  }

  /**
   * Why the upstream cannot be used, in words, or null when the last attempt opened a session.
   * Before any attempt settled it says so: readiness is only claimed once a session opened.
   */
  upstreamProblem(): string | null {
    const u = this.#upstream;
    if (u.state === "connected") return null;
    if (u.state === "unreachable" && u.lastError) return u.hint ? `${u.lastError} (${u.hint})` : u.lastError;
    return "no OpenAI session opened yet";
  }

  /**
   * Takes a warm session when one is ready, otherwise connects a new one. Every route starts its
   * conversations here, so `satellites.max_conversations` counts them all: a start beyond it (starts
   * still connecting included) rejects at once with `LimitError("too_many_conversations")`, and a
   * start that fails gives its place back. While the upstream cannot be used it rejects with an
   * `UpstreamUnavailableError` (`code: "upstream_unavailable"`) whose `message` says why in words
   * ("OpenAI rejected the API key", "OpenAI quota exceeded", …).
   */
  async start(opts: ConversationOptions): Promise<Conversation> {
    if (this.#closed) throw new Error("the realtime engine is closed");
    const device = conversationDevice(opts);
    await this.#o.cost?.admit(device);
    const max = this.#o.config.satellites.max_conversations;
    if (this.#conversations.size + this.#starting >= max) {
      this.#log.warn({ max, satellite: opts.satelliteId }, "conversation refused: the cap is reached");
      throw new LimitError(
        "too_many_conversations",
        `${max} conversations are running, the most allowed at once (satellites.max_conversations); ` +
          "try again when one ends",
      );
    }
    this.#starting++;
    let session: RealtimeSession;
    try {
      session = await this.acquire({
        turn: opts.turn,
        ...(opts.satelliteId !== undefined ? { satelliteId: opts.satelliteId } : {}),
      });
    } catch (err) {
      throw toUpstreamUnavailable(err);
    } finally {
      this.#starting--;
    }
    if (this.#closed) {
      session.close(1000, "shutdown");
      throw new Error("the realtime engine is closed");
    }
    const id = randomUUID();
    const usage = this.#o.cost?.account(id, device);
    const conv = new LiveConversation({
      id,
      ...(usage ? { usage } : {}),
      source: this,
      session,
      opts,
      limits: this.#limits,
      logger: this.#log,
      metrics: this.#o.metrics,
      now: this.#now,
      onEnd: (c) => {
        if (this.#conversations.delete(c)) this.#o.metrics.conversationsActive.dec();
        if (c.endReason === "upstream_unavailable" && opts.satelliteId && c.history.length > 0)
          this.#carry(opts.satelliteId, c.history);
      },
    });
    this.#resume(conv, opts.satelliteId);
    if (usage) this.#o.cost?.watch(conv, usage);
    this.#conversations.add(conv);
    this.#o.metrics.conversationsActive.inc();
    return conv;
  }

  /**
   * Keeps the turns of a device's conversation that an outage ended. Bounded: what is older than the
   * carry-over window is dropped here, so devices that never come back leave nothing behind.
   */
  #carry(satelliteId: string, turns: readonly TranscriptTurn[]): void {
    const now = this.#now();
    for (const [id, kept] of this.#carried) if (now - kept.at >= CARRY_OVER_MS) this.#carried.delete(id);
    this.#carried.set(satelliteId, { turns: [...turns], at: now });
  }

  /** A device's conversation that an outage ended (within 5 min) goes on in its next one, with its turns. */
  #resume(conv: LiveConversation, satelliteId: string | undefined): void {
    const carried = satelliteId === undefined ? undefined : this.#carried.get(satelliteId);
    if (satelliteId === undefined || carried === undefined) return;
    this.#carried.delete(satelliteId);
    if (this.#now() - carried.at < CARRY_OVER_MS) conv.prependHistory(carried.turns);
  }

  /** A ready session for a conversation: warm when possible. Used for starts, reconnects and rotation. */
  async acquire(opts: {
    turn: TurnMode;
    context?: string;
    satelliteId?: string;
    createResponse?: boolean;
  }): Promise<RealtimeSession> {
    let session: RealtimeSession | undefined;
    while ((session = this.#pool.shift())) {
      clearTimeout(this.#recycleTimers.get(session));
      this.#recycleTimers.delete(session);
      if (session.state === "ready") break;
    }
    void this.#fillPool();
    if (session) {
      session.configure({
        turn: opts.turn,
        ...(opts.context ? { context: opts.context } : {}),
        ...(opts.createResponse !== undefined ? { createResponse: opts.createResponse } : {}),
      });
      return session;
    }
    return this.#openSession(opts.turn, opts.context, opts.createResponse);
  }

  /** `start()` for a front end that asks for responses itself (the Assist pipeline's programs). */
  async startAssist(opts: ConversationOptions): Promise<AssistConversation> {
    const conv = await this.start(opts);
    if (!(conv instanceof LiveConversation)) throw new Error("not a live conversation");
    // Before any audio: the first session was taken (or opened) answering turns itself.
    if (opts.createResponse === false) conv.session?.configure({ turn: opts.turn, createResponse: false });
    return conv;
  }

  /**
   * Speaks `text` verbatim through an out-of-band response of this voice's speaker session (a warm
   * session kept for speech, turn detection off). See `SpeechSource.speak`.
   */
  speak(text: string, opts: SpeechOptions): Promise<void> {
    return this.#speakers.speak(text, opts);
  }

  /** Opens (or takes from the pool) the speaker session of `voice` ahead of the first `speak`. */
  async prepareSpeech(voice = this.#o.config.openai.voice): Promise<void> {
    await this.#speakers.speaker(voice);
  }

  /**
   * Enables or disables a native server at runtime; live sessions get a new `session.update`.
   * Returns false when no native server has that name (client servers are the manager's).
   */
  setServerEnabled(name: string, enabled: boolean): boolean {
    const outcome = this.#catalog.setEnabled(name, enabled);
    if (outcome === "changed") this.#refreshAll();
    return outcome !== "unknown";
  }

  /** Replaces the native server list (config reload); live sessions get a new `session.update`. */
  setNativeServers(servers: McpServerConfig[]): void {
    this.#catalog.setServers(servers);
    this.#refreshAll();
  }

  status(): RealtimeStatus {
    const sessions: Record<SessionState, number> = {
      connecting: 0,
      configuring: 0,
      ready: 0,
      active: 0,
      closed: 0,
    };
    for (const s of this.#sessions) sessions[s.state]++;
    const native = this.#catalog.configured().map((cfg) => {
      const per: Partial<Record<NativeListState, number>> = {};
      for (const s of this.#sessions) {
        const st = s.nativeStates().get(cfg.name);
        if (st) per[st] = (per[st] ?? 0) + 1;
      }
      return {
        name: cfg.name,
        enabled: this.#catalog.isEnabled(cfg),
        sessions: per,
        failedOver: this.#catalog.hasFailedOver(cfg.name),
      };
    });
    return {
      upstream: { ...this.#upstream },
      pool: { target: this.#o.config.openai.pool_size, ready: this.#pool.length, warming: this.#warming },
      conversations: this.#conversations.size,
      sessions,
      native,
    };
  }

  /**
   * The native servers as the admin API lists them (`ServerToggleTarget` of `src/state/server-admin.ts`):
   * `up` when a session listed its tools, `down` when every session failed to, else `connecting`.
   */
  readonly serverTarget = {
    status: (): ServerStatus[] =>
      this.status().native.map((n) => {
        const s = n.sessions;
        const state: ServerState = !n.enabled
          ? "disabled"
          : (s.listed ?? 0) > 0
            ? "up"
            : (s.failed ?? 0) + (s.failed_over ?? 0) > 0 && !s.pending && !s.listing
              ? "down"
              : "connecting";
        return {
          name: n.name,
          mode: "native",
          enabled: n.enabled,
          state,
          toolCount: 0,
          restarts: 0,
          ...(state === "down" ? { lastError: "OpenAI could not list its tools" } : {}),
        };
      }),
    setEnabled: (name: string, enabled: boolean): void => {
      this.setServerEnabled(name, enabled);
    },
  };

  /** Ends every conversation and closes every session; resolves within ~3 s. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    clearTimeout(this.#poolRetry);
    for (const t of this.#recycleTimers.values()) clearTimeout(t);
    this.#recycleTimers.clear();
    await Promise.all([...this.#conversations].map((c) => c.end("shutdown")));
    const closing = [...this.#sessions].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.state === "closed") return resolve();
          s.once("closed", () => resolve());
          s.close(1001, "shutting down");
        }),
    );
    this.#pool.length = 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closing),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 3000);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  // ── sessions and pool ─────────────────────────────────────────────────────────────────────────

  async #openSession(turn: TurnMode, context?: string, createResponse?: boolean): Promise<RealtimeSession> {
    const { openai } = this.#o.config;
    const transport = this.#factory({
      url: realtimeUrl(openai.base_url, openai.model),
      apiKey: openai.api_key,
      connectTimeoutMs: this.#limits.connectTimeoutMs,
      logger: this.#log,
    });
    const session = new RealtimeSession({
      openai,
      tools: this.#o.tools,
      catalog: this.#catalog,
      approvals: this.#o.approvals,
      logger: this.#log,
      metrics: this.#o.metrics,
      transport,
      turn,
      ...(context ? { context } : {}),
      ...(createResponse !== undefined ? { createResponse } : {}),
      readyTimeoutMs: this.#limits.readyTimeoutMs,
      handshakeTimeoutMs: this.#limits.handshakeTimeoutMs,
      now: this.#now,
      contextTokens: this.#o.config.cost.context_tokens,
    });
    this.#sessions.add(session);
    session.once("closed", (info) => {
      this.#sessions.delete(session);
      // A session that was fine until the upstream turned it away (quota, key) says so for everyone.
      if (info.fatal && info.error && session.openedAt > 0 && this.#upstream.state === "connected")
        this.#markUnavailable(info.error);
    });
    if (this.#upstream.state === "idle") this.#upstream = { state: "connecting" };
    try {
      await session.open();
      this.#markAvailable();
      return session;
    } catch (err) {
      const why = toUpstreamUnavailable(err);
      this.#markUnavailable(why);
      throw why;
    }
  }

  #markAvailable(): void {
    const was = this.#upstream;
    this.#upstream = { state: "connected" };
    if (was.state !== "unreachable") return;
    this.#log.info("OpenAI accepts sessions again");
    // Recovered: refill the pool now instead of at the end of its backoff.
    this.#poolFailures = 0;
    if (this.#poolRetry !== undefined) {
      clearTimeout(this.#poolRetry);
      this.#poolRetry = undefined;
      void this.#fillPool();
    }
  }

  /** Records why the upstream cannot be used; logs a reason once, repeats of it at debug only. */
  #markUnavailable(why: UpstreamUnavailableError): void {
    const was = this.#upstream;
    this.#upstream = {
      state: "unreachable",
      lastError: why.message,
      kind: why.kind,
      ...(why.hint ? { hint: why.hint } : {}),
    };
    if (was.state === "unreachable" && was.lastError === why.message)
      this.#log.debug({ reason: why.message }, "could not open a realtime session");
    else this.#log.warn({ reason: why.message, hint: why.hint }, "could not open a realtime session");
  }

  #fillPool(): Promise<void>[] {
    const started: Promise<void>[] = [];
    const target = this.#o.config.openai.pool_size;
    while (!this.#closed && this.#pool.length + this.#warming < target && this.#poolRetry === undefined) {
      this.#warming++;
      started.push(
        this.#openSession("server_vad").then(
          (s) => {
            this.#warming--;
            this.#poolFailures = 0;
            if (this.#closed) return void s.close(1000, "shutdown");
            this.#addToPool(s);
          },
          () => {
            this.#warming--;
            this.#poolFailures++;
            this.#retryPoolLater();
          },
        ),
      );
    }
    return started;
  }

  #retryPoolLater(): void {
    if (this.#closed || this.#poolRetry !== undefined) return;
    const delay = Math.min(MAX_RETRY_MS, 500 * 2 ** Math.min(5, this.#poolFailures - 1));
    this.#poolRetry = setTimeout(() => {
      this.#poolRetry = undefined;
      void this.#fillPool();
    }, delay);
    this.#poolRetry.unref();
  }

  #addToPool(s: RealtimeSession): void {
    this.#pool.push(s);
    const age = this.#now() - s.openedAt;
    const timer = setTimeout(
      () => {
        const i = this.#pool.indexOf(s);
        if (i < 0) return;
        this.#pool.splice(i, 1);
        this.#recycleTimers.delete(s);
        this.#log.debug("recycling an idle warm session");
        s.close(1000, "recycled");
        void this.#fillPool();
      },
      Math.max(0, this.#limits.idleRecycleMs - age),
    );
    timer.unref();
    this.#recycleTimers.set(s, timer);
    s.once("closed", () => {
      const i = this.#pool.indexOf(s);
      if (i < 0) return;
      this.#pool.splice(i, 1);
      clearTimeout(this.#recycleTimers.get(s));
      this.#recycleTimers.delete(s);
      this.#poolFailures++;
      this.#retryPoolLater();
    });
  }

  #refreshAll(): void {
    for (const s of this.#sessions) s.refreshTools();
  }
}
