/**
 * Bridge overhead: microphone frame sent by a satellite → `input_audio_buffer.append` received by the
 * upstream, p50/p99, for 1, 20 and 100 satellites streaming 20 ms frames (16 kHz) in real time.
 *
 * Ours: satellite `ws` client → satellite route + V1Wire and SatelliteCore (resampling to 24 kHz) →
 * RealtimeEngine → fake Realtime server. Baseline, same run, same upstream: a plain `ws` relay that
 * wraps each binary frame into an append as it is (no protocol, no resampling).
 * Everything runs in this one process on loopback; a frame counts as arrived when the upstream has
 * received as many samples as the satellite had sent up to and including it (rate-adjusted).
 * Runnable alone: `npx tsx bench/bridge.ts` (BENCH_QUICK=1 for a short run).
 */
import Fastify from "fastify";
import { Registry } from "prom-client";
import { WebSocket, WebSocketServer } from "ws";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { ConfigSchema } from "../src/config/model.js";
import { createLogger } from "../src/log.js";
import type { ToolProvider } from "../src/mcp/types.js";
import { createMetrics } from "../src/metrics.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import { satelliteRoute } from "../src/satellite/route.js";
import {
  startFakeRealtime,
  type FakeConnection,
  type FakeRealtimeServer,
} from "../test/fake-realtime/server.js";
import { percentile, type BenchContext, type BenchRow } from "./types.js";

const FRAME_MS = 20;
const IN_RATE = 16_000;
const FRAME_SAMPLES = (IN_RATE * FRAME_MS) / 1000;
const TOKEN = "bench-token-0123456789abcdef";
const API_KEY = "sk-test";
/** Frames at the start of each stream that are not measured (connection warm-up, JIT). */
const WARMUP_FRAMES = 25;

/** Arrival log of one upstream connection: cumulative samples and when they arrived. */
class Arrivals {
  readonly at: number[] = [];
  readonly total: number[] = [];
  #sum = 0;
  constructor(conn: FakeConnection) {
    conn.on("event", (e) => {
      if (e.type !== "input_audio_buffer.append") return;
      this.#sum += Buffer.byteLength(e.audio, "base64") / 2;
      this.at.push(performance.now());
      this.total.push(this.#sum);
    });
  }
  /** When the cumulative count first reached `samples` (binary search), or null. */
  reached(samples: number): number | null {
    let lo = 0;
    let hi = this.total.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.total[mid]! >= samples) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.at.length ? this.at[lo]! : null;
  }
}

/** A quiet, non-constant signal (below the fake's VAD threshold, so no turns are triggered). */
function frame(k: number): Buffer {
  const b = Buffer.alloc(FRAME_SAMPLES * 2);
  for (let i = 0; i < FRAME_SAMPLES; i++) b.writeInt16LE(Math.round(40 * Math.sin((i + k) * 0.3)), i * 2);
  return b;
}

/** Streams `frames` frames in real time on every socket (staggered starts); returns send times. */
async function stream(sockets: WebSocket[], frames: number): Promise<number[][]> {
  const sent = sockets.map(() => [] as number[]);
  const payload = frame(0);
  await Promise.all(
    sockets.map(
      (ws, s) =>
        new Promise<void>((resolve) => {
          const start = performance.now() + (s * FRAME_MS) / sockets.length + 50;
          let j = 0;
          const tick = (): void => {
            sent[s]!.push(performance.now());
            ws.send(payload, { binary: true });
            j++;
            if (j >= frames) return resolve();
            setTimeout(tick, Math.max(0, start + j * FRAME_MS - performance.now()));
          };
          setTimeout(tick, Math.max(0, start - performance.now()));
        }),
    ),
  );
  return sent;
}

/** Per-frame latencies (ms) given send times, upstream arrivals and the upstream/input rate ratio. */
function latencies(sent: number[][], arrivals: Arrivals[], ratio: number, slack: number): number[] {
  const out: number[] = [];
  sent.forEach((times, s) => {
    times.forEach((t, j) => {
      if (j < WARMUP_FRAMES) return;
      const at = arrivals[s]!.reached(Math.round((j + 1) * FRAME_SAMPLES * ratio) - slack);
      if (at !== null) out.push(at - t);
    });
  });
  return out;
}

async function waitUntil(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Ours: satellites through the real route, bridge and engine. */
async function runOurs(fake: FakeRealtimeServer, n: number, frames: number): Promise<number[]> {
  const config = ConfigSchema.parse({ openai: { api_key: API_KEY, base_url: fake.url, pool_size: 0 } });
  const logger = createLogger({ level: "fatal" });
  const metrics = createMetrics(new Registry(), { defaults: false });
  const approvals = new ApprovalQueue({ timeoutS: 30 });
  const tools: ToolProvider = {
    tools: () => [],
    callTool: () =>
      Promise.resolve({ ok: false, output: "no tools", durationMs: 0, outcome: "unknown_tool" }),
    onToolsChanged: () => () => undefined,
    status: () => [],
  };
  const engine = new RealtimeEngine({ config, tools, approvals, logger, metrics });
  const app = Fastify();
  await app.register(satelliteRoute, {
    conversations: engine,
    approvals,
    auth: new SatelliteAuth({ token: TOKEN }),
    logger,
    metrics,
    conversationIdleS: 600,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const sockets: WebSocket[] = [];
  const arrivals: Arrivals[] = [];
  try {
    for (let s = 0; s < n; s++) {
      const ws = await openWs(`ws://127.0.0.1:${port}/api/v1/satellite`, {
        Authorization: `Bearer ${TOKEN}`,
      });
      sockets.push(ws);
      let ready = false;
      ws.on("message", (d, isBinary) => {
        if (
          !isBinary &&
          (JSON.parse((d as Buffer).toString("utf8")) as { type: string }).type === "session_ready"
        )
          ready = true;
      });
      ws.send(
        JSON.stringify({
          type: "hello",
          protocol: 1,
          client_id: `bench-${s}`,
          audio: { in: { rate: IN_RATE }, out: { rate: IN_RATE } },
        }),
      );
      await waitUntil(() => ready, 5000, "session_ready");
      ws.send(JSON.stringify({ type: "turn.start" }));
      // pool_size 0: this turn connects exactly one new upstream session, so the mapping is 1:1.
      arrivals.push(new Arrivals(await fake.nextConnection(10_000)));
    }
    await new Promise((r) => setTimeout(r, 200));
    const sent = await stream(sockets, frames);
    await new Promise((r) => setTimeout(r, 300));
    // 16→24 kHz; the resampler holds back under one 3-sample cycle per stream.
    return latencies(sent, arrivals, 1.5, 3);
  } finally {
    for (const ws of sockets) ws.terminate();
    await app.close();
    await engine.close();
  }
}

/** Baseline: a plain ws relay that forwards each frame as an append to an upstream socket. */
async function runRelay(fake: FakeRealtimeServer, n: number, frames: number): Promise<number[]> {
  const upstreams: WebSocket[] = [];
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  wss.on("connection", (client) => {
    const up = new WebSocket(`${fake.url}?model=gpt-realtime`, {
      headers: { Authorization: `Bearer ${API_KEY}` },
    });
    upstreams.push(up);
    client.on("message", (data, isBinary) => {
      if (isBinary && up.readyState === up.OPEN)
        up.send(
          JSON.stringify({ type: "input_audio_buffer.append", audio: (data as Buffer).toString("base64") }),
        );
    });
  });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  const port = (wss.address() as { port: number }).port;
  const sockets: WebSocket[] = [];
  const arrivals: Arrivals[] = [];
  try {
    for (let s = 0; s < n; s++) {
      sockets.push(await openWs(`ws://127.0.0.1:${port}`));
      arrivals.push(new Arrivals(await fake.nextConnection(10_000)));
    }
    await waitUntil(() => upstreams.every((u) => u.readyState === u.OPEN), 5000, "relay upstreams");
    await new Promise((r) => setTimeout(r, 200));
    const sent = await stream(sockets, frames);
    await new Promise((r) => setTimeout(r, 300));
    return latencies(sent, arrivals, 1, 0);
  } finally {
    for (const ws of [...sockets, ...upstreams]) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const seconds = ctx.quick ? 2 : 4;
  const rounds = ctx.quick ? 1 : 3;
  const frames = (seconds * 1000) / FRAME_MS;
  const rows: BenchRow[] = [];
  const fake = await startFakeRealtime({ apiKey: API_KEY, vad: { threshold: 0.5 } });
  try {
    for (const n of [1, 20, 100]) {
      // Interleaved rounds, pooled: load from outside this process hits both sides alike.
      const base: number[] = [];
      const ours: number[] = [];
      for (let r = 0; r < rounds; r++) {
        base.push(...(await runRelay(fake, n, frames)));
        ours.push(...(await runOurs(fake, n, frames)));
      }
      const expected = rounds * n * (frames - WARMUP_FRAMES);
      for (const p of [50, 99]) {
        const o = percentile(ours, p);
        const b = percentile(base, p);
        rows.push({
          group: "bridge",
          name: `mic frame → upstream append p${p}, ${n} satellite${n > 1 ? "s" : ""} (20 ms frames, ${rounds}×${seconds} s)`,
          unit: "ms",
          ours: o,
          baseline: b,
          baselineName: "plain ws relay",
          ratio: o / b,
          note: `ours adds ${(o - b).toFixed(2)} ms (resampling, protocol, engine); ${ours.length}/${expected} frames measured (relay ${base.length})`,
        });
      }
    }
  } finally {
    await fake.close();
  }
  return rows;
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  console.table(
    rows.map((r) => ({
      name: r.name,
      ours: r.ours.toFixed(2),
      baseline: r.baseline?.toFixed(2),
      ratio: r.ratio?.toFixed(2),
    })),
  );
}
