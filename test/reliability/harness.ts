/**
 * Shared pieces of the reliability suite, the soak and the service benchmark: a seeded random
 * generator, the service in-process (`createApp` + `wireService`) or as the real process
 * (`node dist/main.js`) with every log line captured, satellites that talk, `/proc` process trees,
 * and a secret scan over captured logs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { WebSocket } from "ws";
import { stringify } from "yaml";
import { createApp, type App } from "../../src/app.js";
import { ConfigSchema, type ConfigInput } from "../../src/config/model.js";
import { createLogger, type Logger } from "../../src/log.js";
import { wireService, type Service, type ServiceOptions } from "../../src/service.js";
import { ServerMessageSchema, type ServerMessage } from "../../src/satellite/wires/v1-protocol.js";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const MAIN_JS = join(REPO_ROOT, "dist", "main.js");
export const EVERYTHING = join(
  REPO_ROOT,
  "node_modules",
  "@modelcontextprotocol",
  "server-everything",
  "dist",
  "index.js",
);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small, fast, seeded generator; `next()` in [0, 1). Same seed, same sequence. */
export class SeededRandom {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}

/** Resolves once `probe()` is truthy (polling every 20 ms), or rejects after `timeoutMs`. */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Secrets a run uses, all distinct and recognisable; `scanForSecrets` looks for each of them (and
 * for their base64 form, which is how a careless log of a header buffer would show them).
 */
export function makeSecrets(tag: string): {
  apiKey: string;
  satelliteToken: string;
  deviceToken: string;
  mcpAuthorization: string;
  mcpHeader: string;
  mcpEnv: string;
  metricsToken: string;
} {
  const rnd = (): string => Math.random().toString(36).slice(2, 12);
  return {
    apiKey: `sk-${tag}-apikey-${rnd()}`,
    satelliteToken: `${tag}-satellite-token-${rnd()}`,
    deviceToken: `${tag}-device-token-${rnd()}`,
    mcpAuthorization: `Bearer ${tag}-mcp-auth-${rnd()}`,
    mcpHeader: `${tag}-mcp-header-${rnd()}`,
    mcpEnv: `${tag}-mcp-env-${rnd()}`,
    metricsToken: `${tag}-metrics-token-${rnd()}`,
  };
}
export type Secrets = ReturnType<typeof makeSecrets>;

/** Every secret value (an Authorization value also without its `Bearer ` scheme) found in `text`. */
export function scanForSecrets(text: string, secrets: Secrets): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    const bare = value.replace(/^Bearer /, "");
    for (const needle of [bare, Buffer.from(bare).toString("base64")])
      if (text.includes(needle)) found.push(`${name} (${needle === bare ? "plain" : "base64"})`);
  }
  return found;
}

/**
 * A configuration that stays on loopback and carries every kind of secret: the API key, a shared and
 * a device satellite token, the metrics token, an HTTP MCP server with an Authorization value and a
 * secret header (its port is closed, so it fails and is retried: its errors get logged), and, when
 * `stdio` is set, server-everything over stdio with a secret env value.
 */
export function reliabilityConfig(
  upstreamUrl: string,
  secrets: Secrets,
  opts: { stdio?: boolean; poolSize?: number; logLevel?: ConfigInput["log_level"] } = {},
): ConfigInput {
  return {
    openai: { api_key: secrets.apiKey, base_url: upstreamUrl, pool_size: opts.poolSize ?? 1 },
    satellites: {
      token: secrets.satelliteToken,
      devices: [{ id: "hall", token: secrets.deviceToken }],
      conversation_idle_s: 60,
      // The soak and the benchmark talk with up to 50 satellites at once (the default cap is 8).
      max_conversations: 100,
    },
    listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
    wyoming: { port: 0 },
    metrics: { token: secrets.metricsToken },
    log_level: opts.logLevel ?? "debug",
    mcp_servers: [
      {
        name: "locked",
        mode: "client",
        transport: "http",
        server_url: "http://127.0.0.1:9/mcp",
        authorization: secrets.mcpAuthorization,
        headers: { "X-Api-Key": secrets.mcpHeader },
        require_approval: "never",
        timeout: 2,
      },
      ...(opts.stdio
        ? [
            {
              name: "everything",
              mode: "client" as const,
              transport: "stdio" as const,
              command: process.execPath,
              args: [EVERYTHING, "stdio"],
              env: { EVERYTHING_SECRET: secrets.mcpEnv },
              require_approval: "never" as const,
              timeout: 20,
            },
          ]
        : []),
    ],
  };
}

/** A logger built exactly like the service's (redaction included) whose output is kept in `lines`. */
export function capturedLogger(level: ConfigInput["log_level"] = "debug"): {
  logger: Logger;
  lines: string[];
} {
  const lines: string[] = [];
  const logger = createLogger({
    level: level ?? "debug",
    destination: {
      write(s: string) {
        lines.push(s);
      },
    },
  });
  return { logger, lines };
}

export interface InProcessService {
  readonly app: App;
  readonly service: Service;
  readonly satelliteUrl: string;
  readonly baseUrl: string;
  readonly lines: string[];
  close(): Promise<void>;
}

/** Sum of every series of one metric in an in-process service's registry. */
export async function metricTotal(svc: InProcessService, name: string): Promise<number> {
  const m = svc.app.metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

/** The whole service in this process, listening on 127.0.0.1 with ports picked by the OS. */
export async function startInProcess(
  input: ConfigInput,
  opts: ServiceOptions & { env?: Record<string, string> } = {},
): Promise<InProcessService> {
  const config = ConfigSchema.parse(input);
  const { logger, lines } = capturedLogger(input.log_level);
  const dataDir = await mkdtemp(join(tmpdir(), "openvoice-rel-"));
  const app = await createApp({
    config,
    logger,
    env: opts.env ?? { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    registry: new Registry(),
    dataDir,
  });
  const service = await wireService(app, opts);
  const ports = await app.listen();
  app.setReady(true);
  return {
    app,
    service,
    satelliteUrl: `ws://127.0.0.1:${ports.satellitePort}/api/v1/satellite`,
    baseUrl: `http://127.0.0.1:${ports.satellitePort}`,
    lines,
    async close() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// ── the real process ──────────────────────────────────────────────────────────────────────────

export interface ServiceChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly satellitePort: number;
  readonly satelliteUrl: string;
  readonly baseUrl: string;
  /** Milliseconds from spawn to the port file (listening). */
  readonly listeningMs: number;
  /** Everything the process wrote to stdout and stderr so far. */
  log(): string;
  /** Resolves with the exit code and signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  /** SIGTERM, SIGKILL after `graceMs`; removes the temp dir. Idempotent. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node dist/main.js` with `config` (YAML in a temp dir) and waits for its port file. */
export async function spawnService(
  config: ConfigInput,
  opts: {
    env?: Record<string, string>;
    startTimeoutMs?: number;
    nodeArgs?: string[];
    /** Another build's entry point (a benchmark comparing two builds); this checkout's by default. */
    mainJs?: string;
  } = {},
): Promise<ServiceChild> {
  const mainJs = opts.mainJs ?? MAIN_JS;
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: run \`npm run build\` first`);
  const dir = await mkdtemp(join(tmpdir(), "openvoice-rel-proc-"));
  const configFile = join(dir, "openvoice.yaml");
  const portFile = join(dir, "ports.json");
  await writeFile(configFile, stringify(config));
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      mainJs,
      "--config",
      configFile,
      "--port-file",
      portFile,
      "--log-format",
      "json",
    ],
    {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: dir,
        OPENVOICE_DATA_DIR: join(dir, "data"),
        ...opts.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>(
    (resolve) => child.once("exit", (code, signal) => resolve({ code, signal, atMs: performance.now() })),
  );
  let done = false;
  void exited.then(() => (done = true));
  let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = (graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopping ??= (async () => {
      if (!done) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const e = await exited;
      clearTimeout(killer);
      await rm(dir, { recursive: true, force: true });
      return { code: e.code, signal: e.signal };
    })();
    return stopping;
  };
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  try {
    for (;;) {
      if (done) throw new Error(`the service exited before listening:\n${output}`);
      const text = await readFile(portFile, "utf8").catch(() => "");
      const parsed = parsePorts(text);
      if (parsed) {
        return {
          child,
          pid: child.pid!,
          satellitePort: parsed.satellite,
          satelliteUrl: `ws://127.0.0.1:${parsed.satellite}/api/v1/satellite`,
          baseUrl: `http://127.0.0.1:${parsed.satellite}`,
          listeningMs: performance.now() - t0,
          log: () => output,
          exited,
          stop,
        };
      }
      if (Date.now() > deadline) throw new Error(`the service did not listen in time:\n${output}`);
      await sleep(10);
    }
  } catch (err) {
    await stop(2000);
    throw err;
  }
}

/** The ports of a `--port-file`; undefined while it is missing or half written. */
export function parsePorts(text: string): { satellite: number; ingress: number } | undefined {
  try {
    const v = JSON.parse(text) as { satellite?: unknown; ingress?: unknown };
    if (typeof v.satellite === "number" && typeof v.ingress === "number")
      return { satellite: v.satellite, ingress: v.ingress };
  } catch {
    // not written yet
  }
  return undefined;
}

// ── /proc ─────────────────────────────────────────────────────────────────────────────────────

interface ProcEntry {
  pid: number;
  ppid: number;
  state: string;
}

function readProc(pid: number): ProcEntry | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, ppid: Number(rest[1]), state: rest[0] ?? "?" };
  } catch {
    return null;
  }
}

/** Whether `pid` is alive (exists and is not a zombie). */
export function alive(pid: number): boolean {
  const p = readProc(pid);
  return p !== null && p.state !== "Z";
}

/** Every living descendant of `root` (children, grandchildren, …). */
export function descendants(root: number): number[] {
  const all: ProcEntry[] = [];
  for (const name of readdirSync("/proc"))
    if (/^\d+$/.test(name)) {
      const p = readProc(Number(name));
      if (p && p.state !== "Z") all.push(p);
    }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const p of all)
      if (p.ppid === parent) {
        out.push(p.pid);
        queue.push(p.pid);
      }
  }
  return out;
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// ── satellites ────────────────────────────────────────────────────────────────────────────────

export interface Frame {
  at: number;
  json?: ServerMessage;
  binary?: Buffer;
}

/**
 * A satellite that talks: a `ws` client recording frames, with a client-committed turn helper.
 * Frames that do not parse as server messages are kept in `invalid` (the suite asserts there are none).
 */
export class TalkingSatellite {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly invalid: string[] = [];
  closed: { code: number; reason: string } | null = null;
  readonly opened: Promise<void>;
  #wake: (() => void)[] = [];

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.ws.on("error", () => undefined);
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#notify();
    });
    this.ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      if (isBinary) this.frames.push({ at: performance.now(), binary: buf });
      else {
        let parsed;
        try {
          parsed = ServerMessageSchema.safeParse(JSON.parse(buf.toString("utf8")));
        } catch {
          parsed = undefined;
        }
        if (parsed?.success) this.frames.push({ at: performance.now(), json: parsed.data });
        else this.invalid.push(buf.toString("utf8"));
      }
      this.#notify();
    });
  }

  #notify(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  static async connect(
    url: string,
    token: string,
    clientId: string,
    turn: "client" | "server_vad" = "client",
  ): Promise<TalkingSatellite> {
    const s = new TalkingSatellite(url);
    await s.opened;
    s.ws.send(
      JSON.stringify({
        type: "hello",
        protocol: 1,
        client_id: clientId,
        token,
        audio: { in: { rate: 16000 }, out: { rate: 16000 } },
        turn,
      }),
    );
    await s.waitFor((f) => f.json?.type === "session_ready", 10_000, 0);
    return s;
  }

  /** Waits for a frame at index ≥ `from` matching `pred`. */
  async waitFor(pred: (f: Frame) => boolean, timeoutMs: number, from: number): Promise<Frame> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.frames.length; i++) if (pred(this.frames[i]!)) return this.frames[i]!;
      if (this.closed) throw new Error(`satellite closed (${this.closed.code} ${this.closed.reason})`);
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(
          `timed out; last messages ${JSON.stringify(
            this.frames
              .slice(from)
              .flatMap((f) => (f.json ? [f.json] : []))
              .slice(-8),
          )}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.#wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * One client-committed turn: `turn.start`, `speechMs` of a 16 kHz tone in 20 ms frames (sent as
   * fast as `frameGapMs` allows), `turn.end`; resolves with what came back once `response.end` arrives.
   */
  async turn(
    opts: { speechMs?: number; frameGapMs?: number; timeoutMs?: number } = {},
  ): Promise<{ end: ServerMessage; audioBytes: number; transcripts: string[]; endAt: number; from: number }> {
    const from = this.frames.length;
    this.ws.send(JSON.stringify({ type: "turn.start" }));
    const frame = tone16k(20);
    const frames = Math.max(1, Math.round((opts.speechMs ?? 200) / 20));
    for (let i = 0; i < frames; i++) {
      this.ws.send(frame, { binary: true });
      if (opts.frameGapMs) await sleep(opts.frameGapMs);
    }
    this.ws.send(JSON.stringify({ type: "turn.end" }));
    const endAt = performance.now();
    const end = await this.waitFor((f) => f.json?.type === "response.end", opts.timeoutMs ?? 15_000, from);
    const slice = this.frames.slice(from);
    return {
      end: end.json!,
      audioBytes: slice.reduce((n, f) => n + (f.binary?.length ?? 0), 0),
      transcripts: slice.flatMap((f) =>
        f.json?.type === "transcript" && f.json.role === "assistant" && f.json.final ? [f.json.text] : [],
      ),
      endAt,
      from,
    };
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)
      this.ws.terminate();
  }
}

const TONE_CACHE = new Map<number, Buffer>();
/** A 440 Hz tone, PCM16 16 kHz mono, loud enough for any VAD. */
export function tone16k(ms: number): Buffer {
  let b = TONE_CACHE.get(ms);
  if (!b) {
    const n = Math.round(16 * ms);
    b = Buffer.alloc(n * 2);
    for (let i = 0; i < n; i++)
      b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * i) / 16000) * 0.3 * 32767), i * 2);
    TONE_CACHE.set(ms, b);
  }
  return b;
}

/** Counts of `process.getActiveResourcesInfo()` by type. */
export function activeResources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}
