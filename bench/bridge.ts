/**
 * Bridge overhead: microphone frame sent by a satellite → `input_audio_buffer.append` received by the
 * upstream, p50/p99, for 1, 20 and 100 satellites streaming 20 ms frames in real time.
 *
 * The service runs as its own process (`node dist/main.js`, built by `npm run bench`, pointed at the
 * fake upstream); the satellites and the fake upstream run in this process, so what is measured is
 * the service and not the load generator. Ours, protocol v1: satellite → satellite port (V1Wire and
 * SatelliteCore, 16 → 24 kHz) → RealtimeEngine → fake upstream. Ours, dialect `underzenith`: the same
 * through the firmware port (24 kHz, client turns). Baseline, same run, same upstream, also its own
 * process: a plain `ws` relay that wraps each binary frame into an append (no protocol), greeted and
 * fed like the path it is compared with: the same hello, one text reply to it, the same message
 * after, the same frames. The API takes 24 kHz PCM, so the relay sends 16 kHz frames up converted
 * the cheapest way (each pair of samples (a, b) as (a, a, b)): both sides then send the upstream the
 * same bytes, and the fake upstream and this process do the same work for either; the service's
 * resampler, a 198-tap filter, stays its own cost. (`BENCH_RELAY_AS_IS=1` forwards the 16 kHz bytes
 * unconverted instead, as 0.4.2 and earlier did: two thirds of the bytes, and not audio the API
 * would take.) The reply matters below the protocol: on the Linux
 * this was measured on, a device socket that has answered the device (the service's session_ready)
 * went on to acknowledge every frame, one that never had (a relay that stays silent) every second
 * frame; on loopback each ACK is processed in the sending system call, a few µs a frame at 100
 * satellites (bench/profile.md).
 * A frame counts as arrived when the upstream has received as many samples as the satellite had
 * sent up to and including it (rate-adjusted). Rounds alternate (relay, ours, relay, ours…, nine at
 * 100 satellites); each round gives one p50 and one p99 per side, and the rows are the medians over
 * rounds. Beside the latencies: each process's CPU time per streamed frame (Linux /proc), which
 * load from outside moves far less than the latency tail.
 * Both processes run with the Node options of the add-on's image (bench/node-options.ts;
 * `BENCH_NODE_OPTIONS` overrides them). The fake upstream keeps no appended audio (`keepAppends:
 * false`) and forgets each round's closed connections, and this process runs without V8's
 * pretenuring and with a roomier old generation (see `run`): the load generator's heap stays flat
 * and it collects the whole heap about twice a run instead of every 0.6 s, so its own pauses do not
 * stall the frames of whichever side happens to be running.
 * Runnable alone: `npm run build && npx tsx bench/bridge.ts` (BENCH_QUICK=1 for a short run).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { WebSocket } from "ws";
import {
  startFakeRealtime,
  type FakeConnection,
  type FakeRealtimeServer,
} from "../test/fake-realtime/server.js";
import { REPO_ROOT, spawnService, waitFor, type ServiceChild } from "../test/reliability/harness.js";
import { benchNodeOptions } from "./node-options.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const FRAME_MS = 20;
const TOKEN = "bench-token-0123456789abcdef";
const API_KEY = "sk-test";
/** Frames at the start of each stream that are not measured (connection warm-up, JIT). */
const WARMUP_FRAMES = 25;

/**
 * The plain relay, as its own process: one upstream socket per client, each binary frame an append,
 * and one text reply to a device's hello.
 */
const RELAY = `
import { WebSocket, WebSocketServer } from "ws";
import { writeFileSync } from "node:fs";
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("connection", (client, req) => {
  const up = new WebSocket(process.env.UPSTREAM, { headers: { Authorization: "Bearer " + process.env.API_KEY } });
  up.on("error", () => {});
  // Turn detection as the compared path configures it, so the upstream does the same work for both.
  const query = new URL(req.url, "http://relay").searchParams;
  const turn = query.get("turn");
  // The API takes 24 kHz PCM: 16 kHz audio goes up converted the cheapest way there is, each pair of
  // samples (a, b) as (a, a, b), so both sides send the upstream the same bytes per frame.
  const to24k = query.get("rate") === "16000";
  up.on("open", () => up.send(JSON.stringify({ type: "session.update", session: { type: "realtime",
    audio: { input: { turn_detection: turn === "client" ? null : { type: "server_vad" } } } } })));
  // The device opens with a text hello and streams once it has a reply: the relay answers the first
  // text message with one, as any bridge for these devices must (and as the service does).
  let greeted = false;
  client.on("message", (data, isBinary) => {
    if (!isBinary) {
      if (!greeted) client.send('{"type":"session_ready"}');
      greeted = true;
    } else if (up.readyState === up.OPEN) {
      const pcm = to24k ? repeat(data) : data;
      up.send(JSON.stringify({ type: "input_audio_buffer.append", audio: pcm.toString("base64") }));
    }
  });
  client.on("close", () => up.terminate());
});
function repeat(pcm) {
  const out = Buffer.allocUnsafe((pcm.length >> 2) * 6);
  for (let i = 0, o = 0; i + 3 < pcm.length; i += 4, o += 6) {
    out[o] = out[o + 2] = pcm[i];
    out[o + 1] = out[o + 3] = pcm[i + 1];
    out[o + 4] = pcm[i + 2];
    out[o + 5] = pcm[i + 3];
  }
  return out;
}
wss.on("listening", () => writeFileSync(process.env.PORT_FILE, JSON.stringify({ port: wss.address().port })));
process.on("SIGTERM", () => process.exit(0));
`;
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
function frame(rate: number): Buffer {
  const samples = (rate * FRAME_MS) / 1000;
  const b = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) b.writeInt16LE(Math.round(40 * Math.sin(i * 0.3)), i * 2);
  return b;
}

/** Streams `frames` frames in real time on every socket (staggered starts); returns send times. */
async function stream(sockets: WebSocket[], payload: Buffer, frames: number): Promise<number[][]> {
  const sent = sockets.map(() => [] as number[]);
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
function latencies(
  sent: number[][],
  arrivals: Arrivals[],
  frameSamples: number,
  ratio: number,
  slack: number,
): number[] {
  const out: number[] = [];
  sent.forEach((times, s) => {
    times.forEach((t, j) => {
      if (j < WARMUP_FRAMES) return;
      const at = arrivals[s]!.reached(Math.round((j + 1) * frameSamples * ratio) - slack);
      if (at !== null) out.push(at - t);
    });
  });
  return out;
}

function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Resolves once a text frame containing `needle` arrives on `ws`. */
function textFrame(ws: WebSocket, needle: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench: no ${needle}`)), timeoutMs);
    const on = (d: Buffer, isBinary: boolean): void => {
      if (isBinary || !d.toString("utf8").includes(needle)) return;
      clearTimeout(timer);
      ws.off("message", on);
      resolve();
    };
    ws.on("message", on);
  });
}

/** How one satellite of a path connects; its upstream connection is the fake's next one. */
interface Path {
  rate: number;
  /** Who ends turns on the path's upstream session: server VAD, or the client (no VAD). */
  turn: "server_vad" | "client";
  /** Upstream samples per input sample, and samples the resampler may hold back. */
  ratio: number;
  slack: number;
  /** The process that does the path's work, for its CPU time. */
  pid: number;
  /** What satellite `s` says before it streams (the relay is greeted the same way). */
  opening: (s: number) => Opening;
  connect(s: number): Promise<WebSocket>;
}

interface Opening {
  hello: string;
  /** A piece of the reply the device waits for. */
  ready: string;
  then: string;
}

/** CPU time (user + system, ms) a process has used so far, from /proc; null where there is none. */
async function cpuMs(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  // Fields after the parenthesised command: state is field 3, utime 14 and stime 15 (clock ticks, USER_HZ 100).
  const fields = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields === undefined || fields.length < 13) return null;
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** One round of one path: per-frame latencies, and the path's CPU time per streamed frame (µs). */
interface Measured {
  latencies: number[];
  cpuPerFrameUs: number | null;
}

async function measure(fake: FakeRealtimeServer, path: Path, n: number, frames: number): Promise<Measured> {
  const sockets: WebSocket[] = [];
  const arrivals: Arrivals[] = [];
  // The upstream connections of earlier rounds are closed by now: the load generator lets them go.
  fake.forgetClosed();
  try {
    for (let s = 0; s < n; s++) {
      sockets.push(await path.connect(s));
      // pool_size 0: each satellite connects exactly one new upstream session, so the mapping is 1:1.
      arrivals.push(new Arrivals(await fake.nextConnection(10_000)));
    }
    await new Promise((r) => setTimeout(r, 300));
    const payload = frame(path.rate);
    const cpu0 = await cpuMs(path.pid);
    const sent = await stream(sockets, payload, frames);
    await new Promise((r) => setTimeout(r, 300));
    const cpu1 = await cpuMs(path.pid);
    return {
      latencies: latencies(sent, arrivals, payload.length / 2, path.ratio, path.slack),
      cpuPerFrameUs: cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) * 1000) / (n * frames),
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Protocol v1 on the service's satellite port. */
function v1Path(svc: ServiceChild): Path {
  return {
    pid: svc.pid,
    rate: 16_000,
    turn: "server_vad",
    ratio: 1.5,
    slack: 3,
    opening: (s) => ({
      hello: JSON.stringify({
        type: "hello",
        protocol: 1,
        client_id: `bench-${s}`,
        audio: { in: { rate: 16_000 }, out: { rate: 16_000 } },
      }),
      ready: '"session_ready"',
      then: JSON.stringify({ type: "turn.start" }),
    }),
    async connect(s) {
      const ws = await openWs(svc.satelliteUrl, { Authorization: `Bearer ${TOKEN}` });
      return greet(ws, this.opening(s));
    },
  };
}

/** Dialect `underzenith` on the service's firmware port: hello, session_ready, ptt_start. */
function underzenithPath(svc: ServiceChild, port: number): Path {
  return {
    pid: svc.pid,
    rate: 24_000,
    turn: "client",
    ratio: 1,
    slack: 0,
    opening: (s) => ({
      hello: `{"type":"hello","protocol":1,"client_type":"voice_pe","client_id":"bench-uz-${s}","name":"Bench ${s}"}`,
      ready: '"type":"session_ready"',
      then: '{"type":"ptt_start"}',
    }),
    async connect(s) {
      const ws = await openWs(`ws://127.0.0.1:${port}/device/ws`, { Authorization: `Bearer ${TOKEN}` });
      return greet(ws, this.opening(s));
    },
  };
}

/** A device's opening: its hello, then (once the reply containing `ready` is in) what it sends before streaming. */
async function greet(ws: WebSocket, opening: Opening): Promise<WebSocket> {
  const ready = textFrame(ws, opening.ready);
  ws.send(opening.hello);
  await ready;
  ws.send(opening.then);
  return ws;
}

/**
 * The relay fed like `path`: same opening, same rate, and its upstream session set to the same turn
 * detection (the fake upstream runs its VAD on every append of a server-VAD session, on neither side
 * otherwise).
 */
function relayPath(relay: { port: number; pid: number }, path: Path, asIs: boolean): Path {
  return {
    pid: relay.pid,
    rate: path.rate,
    turn: path.turn,
    // It repeats samples up to 24 kHz: nothing held back.
    ratio: asIs ? 1 : 24_000 / path.rate,
    slack: 0,
    opening: path.opening,
    connect: async (s) =>
      greet(
        await openWs(`ws://127.0.0.1:${relay.port}/?turn=${path.turn}&rate=${asIs ? "as-is" : path.rate}`),
        path.opening(s),
      ),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function startService(
  fake: FakeRealtimeServer,
  firmwarePort: number,
  nodeOptions: string,
  profileDir: string | undefined,
  mainJs?: string,
): Promise<ServiceChild> {
  const nodeArgs = profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`];
  return spawnService(
    {
      openai: { api_key: API_KEY, base_url: fake.url, pool_size: 0 },
      satellites: {
        token: TOKEN,
        conversation_idle_s: 600,
        dialects: ["underzenith"],
        // Up to 100 satellites talk at once here; the default cap is 8.
        max_conversations: 100,
      },
      listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0, firmware_port: firmwarePort },
      wyoming: { port: 0 },
      log_level: "warning",
    },
    { nodeArgs, env: { NODE_OPTIONS: nodeOptions }, ...(mainJs === undefined ? {} : { mainJs }) },
  );
}

async function startRelay(
  fake: FakeRealtimeServer,
  nodeOptions: string,
  profileDir: string | undefined,
): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "openvoice-bench-relay-"));
  const portFile = join(dir, "port.json");
  const profile =
    profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, "relay")}`];
  const child = spawn(process.execPath, [...profile, "--input-type=module", "-e", RELAY], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      PORT_FILE: portFile,
      UPSTREAM: `${fake.url}?model=gpt-realtime`,
      API_KEY,
      NODE_OPTIONS: nodeOptions,
    },
    stdio: "ignore",
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const text = await readFile(portFile, "utf8").catch(() => "");
    if (text !== "") {
      const { port } = JSON.parse(text) as { port: number };
      return {
        port,
        pid: child.pid!,
        async stop() {
          child.kill("SIGTERM");
          await exited;
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    if (Date.now() > deadline) throw new Error("bench: the relay did not start");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The figures of one round of one side: p50 and p99 of its frames, how many were measured, CPU per frame. */
interface Round {
  p50: number;
  p99: number;
  frames: number;
  cpuPerFrameUs: number | null;
}

function round({ latencies, cpuPerFrameUs }: Measured): Round {
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    frames: latencies.length,
    cpuPerFrameUs,
  };
}

/**
 * Knobs for a focused run (all optional): `BENCH_BRIDGE_PATHS=v1,underzenith`, `BENCH_BRIDGE_SIZES=100`,
 * `BENCH_BRIDGE_ROUNDS=7` (at every size), `BENCH_CPU_PROF=DIR`, which runs the service and the
 * relay with `--cpu-prof` and leaves their profiles in DIR and DIR/relay (DIR/before for the
 * build below) when they stop, and
 * `BENCH_BRIDGE_BEFORE=FILE`, another build's `dist/main.js` (say, main's, in a second checkout),
 * run as a third process in the same alternation (relay, before, ours…) and reported in rows of its
 * own, named after `BENCH_BRIDGE_BEFORE_LABEL` (default "before"), and `BENCH_RELAY_AS_IS=1` (above).
 */
function knobs(ctx: BenchContext): {
  paths: string[];
  sizes: number[];
  rounds: (n: number) => number;
  profileDir: string | undefined;
  before: { mainJs: string; label: string } | undefined;
  relayAsIs: boolean;
} {
  const list = (v: string | undefined): string[] | undefined => v?.split(",").filter(Boolean);
  const fixedRounds = Number(process.env.BENCH_BRIDGE_ROUNDS ?? "") || undefined;
  return {
    paths: list(process.env.BENCH_BRIDGE_PATHS) ?? ["v1", "underzenith"],
    sizes: list(process.env.BENCH_BRIDGE_SIZES)?.map(Number) ?? [1, 20, 100],
    // Nine alternating rounds where the target is judged (the issue asks for five at least): the
    // relay's own p99 moves from 0.5 to 12 ms between rounds on a shared machine, and a median of
    // five still follows a single noisy round.
    rounds: (n) => fixedRounds ?? (ctx.quick ? 1 : n >= 100 ? 9 : 3),
    profileDir: process.env.BENCH_CPU_PROF || undefined,
    before: process.env.BENCH_BRIDGE_BEFORE
      ? { mainJs: process.env.BENCH_BRIDGE_BEFORE, label: process.env.BENCH_BRIDGE_BEFORE_LABEL || "before" }
      : undefined,
    relayAsIs: process.env.BENCH_RELAY_AS_IS === "1",
  };
}

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  // This process is the load generator: it timestamps every frame sent and every append received,
  // so its own pauses land in whichever side's round they fall. With V8's defaults it collected the
  // whole heap every ~0.6 s while streaming (old space filling at ~25 MB/s, although what it parses
  // dies young: V8 had pretenured it), each time 10–18 ms of marking and finalising on this thread,
  // and the p99 rows followed those pauses. Without pretenuring, and with the old generation allowed
  // to grow 4× between collections, it collects the whole heap about twice a run (`--trace-gc`).
  setFlagsFromString("--no-allocation-site-pretenuring");
  setFlagsFromString("--heap-growing-percent=300");
  try {
    return await measureAll(ctx);
  } finally {
    setFlagsFromString("--allocation-site-pretenuring");
    setFlagsFromString("--heap-growing-percent=0");
  }
}

async function measureAll(ctx: BenchContext): Promise<BenchRow[]> {
  const seconds = ctx.quick ? 2 : 4;
  const frames = (seconds * 1000) / FRAME_MS;
  const opts = knobs(ctx);
  const nodeOptions = await benchNodeOptions();
  const rows: BenchRow[] = [];
  const fake = await startFakeRealtime({ apiKey: API_KEY, vad: { threshold: 0.5 }, keepAppends: false });
  const firmwarePort = await freePort();
  const firmwarePorts = [firmwarePort, ...(opts.before === undefined ? [] : [await freePort()])];
  const [svc, before] = await Promise.all(
    firmwarePorts.map((port, i) =>
      startService(
        fake,
        port,
        nodeOptions.value,
        i === 0 || opts.profileDir === undefined ? opts.profileDir : join(opts.profileDir, "before"),
        i === 0 ? undefined : opts.before?.mainJs,
      ),
    ),
  );
  if (svc === undefined) throw new Error("bench: the service did not start");
  // Readiness needs one upstream session (with pool_size 0 a probe opens and closes one): once
  // ready, every upstream connection made so far is a probe's, and each satellite's is the next.
  for (const s of [svc, before])
    if (s !== undefined)
      await waitFor(
        () =>
          fetch(`${s.baseUrl}/readyz`).then(
            (r) => r.status === 200,
            () => false,
          ),
        20_000,
        "the service's /readyz",
      );
  for (let i = fake.connections.length; i > 0; i--) await fake.nextConnection();
  const relay = await startRelay(fake, nodeOptions.value, opts.profileDir);
  const paths = (s: ServiceChild, port: number): Record<string, Path> => ({
    v1: v1Path(s),
    underzenith: underzenithPath(s, port),
  });
  const compared = [
    { key: "v1", label: "protocol v1" },
    { key: "underzenith", label: "dialect underzenith" },
  ]
    .filter((c) => opts.paths.includes(c.key))
    .map((c) => {
      const ours = paths(svc, firmwarePort)[c.key]!;
      const prior = before && paths(before, firmwarePorts[1]!)[c.key];
      return { ...c, ours, before: prior, base: relayPath(relay, ours, opts.relayAsIs) };
    });
  const relayName = opts.relayAsIs
    ? "plain ws relay process, 16 kHz forwarded as is"
    : "plain ws relay process";
  try {
    for (const { label, ours: oursPath, base: basePath, before: beforePath } of compared)
      for (const n of opts.sizes) {
        // Alternating rounds (relay, ours, relay, ours…): load from outside these processes hits
        // both sides alike. Each round gives one p50/p99 per side; the rows are medians over rounds.
        const rounds = opts.rounds(n);
        const base: Round[] = [];
        const ours: Round[] = [];
        const prior: Round[] = [];
        for (let r = 0; r < rounds; r++) {
          base.push(round(await measure(fake, basePath, n, frames)));
          if (beforePath) prior.push(round(await measure(fake, beforePath, n, frames)));
          ours.push(round(await measure(fake, oursPath, n, frames)));
        }
        const expected = rounds * n * (frames - WARMUP_FRAMES);
        const measured = (rs: Round[]): number => rs.reduce((sum, r) => sum + r.frames, 0);
        const sides = [
          { rs: ours, who: "service process" },
          ...(beforePath ? [{ rs: prior, who: `service process, ${opts.before!.label}` }] : []),
        ];
        for (const { rs, who } of sides)
          for (const p of [50, 99] as const) {
            const pick = (r: Round): number => (p === 50 ? r.p50 : r.p99);
            const o = median(rs.map(pick));
            const b = median(base.map(pick));
            // Targets are judged for this build only; the other build's rows are for comparison.
            const target =
              n !== 100 || rs !== ours
                ? {}
                : p === 50
                  ? { target: "p50 added ≤ 0.5 ms at 100", met: o - b <= 0.5 }
                  : { target: "p99 ≤ 1.15 × relay at 100", met: o / b <= 1.15 };
            rows.push({
              group: "bridge",
              name: `mic frame → upstream append p${p}, ${label}, ${n} satellite${n > 1 ? "s" : ""} (${who}, 20 ms frames, median of ${rounds} alternating rounds × ${seconds} s)`,
              unit: "ms",
              ours: o,
              baseline: b,
              baselineName: relayName,
              ratio: o / b,
              ...target,
              note:
                `ours adds ${(o - b).toFixed(2)} ms; rounds ours ${rs.map((r) => pick(r).toFixed(1)).join("/")}, ` +
                `relay ${base.map((r) => pick(r).toFixed(1)).join("/")}; ${measured(rs)}/${expected} frames measured (relay ${measured(base)}); both processes: ${nodeOptions.label}`,
            });
          }
        const cpu = (rs: Round[]): number | null =>
          rs.some((r) => r.cpuPerFrameUs === null) ? null : median(rs.map((r) => r.cpuPerFrameUs!));
        const bc = cpu(base);
        for (const { rs, who } of sides) {
          const oc = cpu(rs);
          // One satellite streams 200 frames a round: too few for /proc's 10 ms ticks to say anything.
          if (oc === null || bc === null || n * frames < 2000) continue;
          rows.push({
            group: "bridge",
            name: `CPU time per mic frame, ${label}, ${n} satellite${n > 1 ? "s" : ""} (${who === "service process" ? "" : `${who}; `}user + system of the process, while streaming)`,
            unit: "µs",
            ours: oc,
            baseline: bc,
            baselineName: relayName,
            ratio: oc / bc,
            note: `median of ${rounds} rounds (ours ${rs.map((r) => r.cpuPerFrameUs!.toFixed(0)).join("/")}, relay ${base.map((r) => r.cpuPerFrameUs!.toFixed(0)).join("/")}); /proc clock ticks (10 ms) over ${n * frames} frames a round`,
          });
        }
      }
  } finally {
    await relay.stop();
    await before?.stop();
    await svc.stop();
    await fake.close();
  }
  return rows;
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(2)} ${r.unit} vs ${r.baseline?.toFixed(2)} ${r.unit} (×${r.ratio?.toFixed(2)})` +
        `${r.target ? ` | ${r.target} ${r.met ? "✔" : "✘"}` : ""} | ${r.note ?? ""}`,
    );
}
