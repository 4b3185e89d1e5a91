/**
 * The service as a whole, as the real process (`node dist/main.js`, built by `npm run bench`):
 *
 * - start-up: spawn → `/healthz` answers 200 (alive and listening; `/readyz` also waits for the
 *   upstream), versus a bare Node process that starts a Fastify server with one `/healthz` route (same
 *   polling, same run, interleaved); target ≤ 1.5× bare Fastify. The service keeps one data folder
 *   across its starts, as the add-on keeps /data, so every start after the first finds V8's compiled
 *   code in `<data>/cache/node-compile`; the first start (empty cache) is a row of its own;
 * - the import floor: a Node process that imports the dependencies the service needs (fastify,
 *   @fastify/websocket, ws, zod, pino, prom-client, yaml, the MCP SDK client with stdio) and does
 *   nothing else: what no amount of care in our own code can go below;
 * - idle RSS (warm pool of one session against the fake upstream, nobody talking) versus that floor,
 *   target ≤ floor + 8 MiB;
 * - RSS with 1, 10 and 50 satellites talking continuously (speech streamed at real time, replies paced
 *   at real time), and the RSS each active satellite adds (target at 10: ≤ 1.5 MiB each);
 * - end-to-end turn overhead: satellite `turn.end` → first reply audio frame at the satellite, versus a
 *   client talking to the same fake upstream directly (`input_audio_buffer.commit` + `response.create`
 *   → first `response.output_audio.delta`). The fake takes a fixed 250 ms of "thinking" before each
 *   reply (`replyDelayMs`) on both paths, so the difference is what the service adds (commit,
 *   response, resampling, pacing, two extra loopback hops).
 *
 * Every process here (baselines included) runs with the Node options of the add-on's image (`ENV
 * NODE_OPTIONS` in the Dockerfile); `BENCH_NODE_OPTIONS` overrides them (`""` for Node's defaults).
 *
 * Runnable alone: `npx tsx bench/service.ts` (after `npm run build`; BENCH_QUICK=1 for a smoke run).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { WebSocket } from "ws";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../test/fake-realtime/server.js";
import {
  REPO_ROOT,
  TalkingSatellite,
  makeSecrets,
  reliabilityConfig,
  rssOf,
  sleep,
  spawnService,
  tone16k,
  type ServiceChild,
} from "../test/reliability/harness.js";
import { benchNodeOptions } from "./node-options.js";
import { median, percentile, type BenchContext, type BenchRow } from "./types.js";

const GROUP = "service";
const MiB = 2 ** 20;

/** A bare Node process with Fastify and one route: what any Node HTTP service costs at least. */
const BARE_FASTIFY = `
import Fastify from "fastify";
import { writeFileSync } from "node:fs";
const app = Fastify();
app.get("/healthz", async () => ({ alive: true }));
await app.listen({ host: "127.0.0.1", port: 0 });
writeFileSync(process.env.PORT_FILE, JSON.stringify({ satellite: app.server.address().port }));
process.on("SIGTERM", () => app.close().then(() => process.exit(0)));
`;

/**
 * The import floor: the dependencies the service needs at run time, imported and held, nothing
 * built. Idle RSS is measured against this.
 */
const IMPORT_FLOOR = `
import { writeFileSync } from "node:fs";
const held = await Promise.all([
  import("fastify"),
  import("@fastify/websocket"),
  import("ws"),
  import("zod"),
  import("pino"),
  import("prom-client"),
  import("yaml"),
  import("@modelcontextprotocol/sdk/client/index.js"),
  import("@modelcontextprotocol/sdk/client/stdio.js"),
]);
globalThis.held = held;
writeFileSync(process.env.PORT_FILE, "{}");
setInterval(() => undefined, 60_000);
process.on("SIGTERM", () => process.exit(0));
`;

/** What the import floor loads, for the bench's notes. */
const FLOOR_LOADS =
  "the floor imports fastify, @fastify/websocket, ws, zod, pino, prom-client, yaml and the MCP SDK client with its stdio transport from node_modules, holds them and builds nothing";

/** The import floor's settled RSS: one process, started, measured, stopped. */
async function floorRss(nodeOptions: string): Promise<number> {
  const floorProc = await startFloor(nodeOptions);
  try {
    await sleep(1500);
    return await settledRss(floorProc.pid, 3000);
  } finally {
    await floorProc.stop();
  }
}

/** Starts the import-floor process; resolves once every import finished. */
async function startFloor(nodeOptions: string): Promise<{ pid: number; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "openvoice-bench-floor-"));
  const doneFile = join(dir, "done");
  const child = spawn(process.execPath, ["--input-type=module", "-e", IMPORT_FLOOR], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", PORT_FILE: doneFile, NODE_OPTIONS: nodeOptions },
    stdio: "ignore",
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 20_000;
  while ((await readFile(doneFile, "utf8").catch(() => null)) === null) {
    if (Date.now() > deadline) throw new Error("the import-floor process did not finish importing");
    await sleep(5);
  }
  return {
    pid: child.pid!,
    async stop() {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

interface Bare {
  pid: number;
  readyMs: number;
  stop(): Promise<void>;
}

async function pollReady(base: string, deadline: number, path = "/healthz"): Promise<void> {
  for (;;) {
    const ok = await fetch(`${base}${path}`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${base}${path} never answered 200`);
    await sleep(2);
  }
}

async function startBare(nodeOptions: string): Promise<Bare> {
  const dir = await mkdtemp(join(tmpdir(), "openvoice-bench-bare-"));
  const portFile = join(dir, "port.json");
  const t0 = performance.now();
  const child = spawn(process.execPath, ["--input-type=module", "-e", BARE_FASTIFY], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", PORT_FILE: portFile, NODE_OPTIONS: nodeOptions },
    stdio: "ignore",
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 20_000;
  let port: number | undefined;
  while (port === undefined) {
    const text = await readFile(portFile, "utf8").catch(() => "");
    if (text) port = (JSON.parse(text) as { satellite: number }).satellite;
    else if (Date.now() > deadline) throw new Error("the bare Fastify process did not listen");
    else await sleep(2);
  }
  await pollReady(`http://127.0.0.1:${port}`, deadline);
  const readyMs = performance.now() - t0;
  return {
    pid: child.pid!,
    readyMs,
    async stop() {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startOurs(
  upstream: string,
  secrets: ReturnType<typeof makeSecrets>,
  poolSize: number,
  nodeOptions: string,
  dataDir?: string,
) {
  const t0 = performance.now();
  const svc = await spawnService(reliabilityConfig(upstream, secrets, { poolSize, logLevel: "warning" }), {
    env: { NODE_OPTIONS: nodeOptions, ...(dataDir === undefined ? {} : { OPENVOICE_DATA_DIR: dataDir }) },
  });
  await pollReady(svc.baseUrl, Date.now() + 20_000);
  return { svc, readyMs: performance.now() - t0 };
}

/** Median RSS over `ms`, sampled every 250 ms. */
async function settledRss(pid: number, ms: number): Promise<number> {
  const xs: number[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    xs.push(rssOf(pid));
    await sleep(250);
  }
  return median(xs);
}

/** `n` satellites talking in a loop until `stop()`; resolves the loops when stopped. */
function talk(
  svc: ServiceChild,
  token: string,
  n: number,
): { stop: () => Promise<number>; sats: TalkingSatellite[] } {
  let running = true;
  let turns = 0;
  const sats: TalkingSatellite[] = [];
  const loops = Array.from({ length: n }, async (_, i) => {
    const s = await TalkingSatellite.connect(svc.satelliteUrl, token, `bench-${n}-${i}`);
    sats.push(s);
    await sleep((i * 37) % 1000);
    while (running) {
      await s.turn({ speechMs: 1000, frameGapMs: 20, timeoutMs: 30_000 });
      turns++;
      await sleep(1000);
    }
  });
  return {
    sats,
    async stop() {
      running = false;
      await Promise.allSettled(loops);
      for (const s of sats) s.close();
      return turns;
    },
  };
}

/** A client straight to the fake: commit + response.create → first audio delta, `count` times. */
async function directTurns(fake: FakeRealtimeServer, apiKey: string, count: number): Promise<number[]> {
  const ws = new WebSocket(`${fake.url}?model=gpt-realtime`, {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  const times: number[] = [];
  let waiting: ((t: number) => void) | null = null;
  let created: () => void = () => undefined;
  const ready = new Promise<void>((r) => (created = r));
  ws.on("message", (data) => {
    const e = JSON.parse((data as Buffer).toString("utf8")) as { type: string };
    if (e.type === "session.created") created();
    if (e.type === "response.output_audio.delta" && waiting) {
      const w = waiting;
      waiting = null;
      w(performance.now());
    }
  });
  await ready;
  ws.send(
    JSON.stringify({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: null } } },
    }),
  );
  const audio = tone(200).toString("base64");
  for (let i = 0; i < count; i++) {
    ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio }));
    const first = new Promise<number>((r) => (waiting = r));
    const t0 = performance.now();
    ws.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    ws.send(JSON.stringify({ type: "response.create" }));
    times.push((await first) - t0);
    await sleep(700); // let the reply finish (the fake refuses a second active response)
  }
  ws.close();
  return times;
}

/** Through the service: `turn.end` → first reply audio frame at the satellite. */
async function serviceTurns(svc: ServiceChild, token: string, count: number): Promise<number[]> {
  const s = await TalkingSatellite.connect(svc.satelliteUrl, token, "bench-turns");
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const from = s.frames.length;
      s.ws.send(JSON.stringify({ type: "turn.start" }));
      for (let k = 0; k < 10; k++) s.ws.send(tone16k(20), { binary: true });
      const t0 = performance.now();
      s.ws.send(JSON.stringify({ type: "turn.end" }));
      const first = await s.waitFor((f) => f.binary !== undefined, 10_000, from);
      times.push(first.at - t0);
      await s.waitFor((f) => f.json?.type === "response.end", 10_000, from);
      await sleep(200);
    }
  } finally {
    s.close();
  }
  return times;
}

/** The fake upstream's fixed time to first reply output in the turn-overhead measurement. */
const REPLY_DELAY_MS = 250;

export async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const secrets = makeSecrets("bench");
  const { value: nodeOptions, label: flags } = await benchNodeOptions();
  // Replies of 400 ms sent 4× faster than real time and paced at real time at the satellite.
  const fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 4, replyAudio: tone(400) });
  // One data folder for every start of the service, as the add-on's /data: the first start fills
  // the compile cache, and every later one (the idle and talking measurements too) reads it.
  const dataDir = await mkdtemp(join(tmpdir(), "openvoice-bench-data-"));
  try {
    // ── start-up to /healthz, and idle RSS ──────────────────────────────────────────────────
    const starts = ctx.quick ? 3 : 9;
    const oursReady: number[] = [];
    const bareReady: number[] = [];
    const bareRss: number[] = [];
    let firstStart: number | undefined;
    for (let i = 0; i < starts; i++) {
      const bare = await startBare(nodeOptions);
      bareReady.push(bare.readyMs);
      if (i === 0) bareRss.push(await settledRss(bare.pid, 2000));
      await bare.stop();
      const { svc, readyMs } = await startOurs(fake.url, secrets, 0, nodeOptions, dataDir);
      if (firstStart === undefined) firstStart = readyMs;
      else oursReady.push(readyMs);
      await svc.stop();
    }
    const o = median(oursReady);
    const b = median(bareReady);
    rows.push({
      group: GROUP,
      name: `start-up: spawn → /healthz 200 (${starts - 1} starts with the compile cache, ${starts} bare, alternating)`,
      unit: "ms",
      ours: o,
      baseline: b,
      baselineName: "bare Node + Fastify",
      ratio: o / b,
      target: "≤ 1.5× bare Fastify",
      met: o <= 1.5 * b,
      note: `node dist/main.js --config FILE (bundled); p90 ${percentile(oursReady, 90).toFixed(0)} ms vs ${percentile(bareReady, 90).toFixed(0)} ms; ${flags}`,
    });
    rows.push({
      group: GROUP,
      name: "start-up: first start, empty compile cache",
      unit: "ms",
      ours: firstStart!,
      baseline: b,
      baselineName: "bare Node + Fastify",
      ratio: firstStart! / b,
      note: "one start: what the add-on's first start after an install or update takes",
    });

    // ── idle RSS against the import floor: alternating processes, medians ──────────────────────
    const rounds = ctx.quick ? 2 : 4;
    const floors: number[] = [];
    const idles: number[] = [];
    let svc: ServiceChild | undefined;
    for (let i = 0; i < rounds; i++) {
      floors.push(await floorRss(nodeOptions));
      await svc?.stop();
      svc = (await startOurs(fake.url, secrets, 1, nodeOptions, dataDir)).svc;
      // Idle means the warm session is open: wait for /readyz, then let it settle.
      await pollReady(svc.baseUrl, Date.now() + 20_000, "/readyz");
      await sleep(1500);
      idles.push(await settledRss(svc.pid, 3000));
    }
    const running = svc!;
    const floor = median(floors);
    const idle = median(idles);
    const bareIdle = bareRss[0]!;
    rows.push({
      group: GROUP,
      name: `import floor RSS (the service's dependencies imported, nothing else; median of ${rounds})`,
      unit: "MiB",
      ours: floor / MiB,
      baseline: bareIdle / MiB,
      baselineName: "bare Node + Fastify",
      ratio: floor / bareIdle,
      note: `${FLOOR_LOADS}; ${flags}`,
    });
    try {
      rows.push({
        group: GROUP,
        name: `idle RSS (warm pool of 1, no satellite; median of ${rounds}, alternating with the floor)`,
        unit: "MiB",
        ours: idle / MiB,
        baseline: floor / MiB,
        baselineName: "import floor",
        ratio: idle / floor,
        target: "≤ import floor + 8 MiB",
        met: idle <= floor + 8 * MiB,
        note: `${((idle - floor) / MiB).toFixed(1)} MiB above the floor; ${(bareIdle / MiB).toFixed(1)} MiB for bare Node + Fastify; same Node options for both: ${flags}`,
      });

      // ── RSS per active satellite ──────────────────────────────────────────────────────────
      for (const n of ctx.quick ? [1, 10] : [1, 10, 50]) {
        const t = talk(running, secrets.satelliteToken, n);
        await sleep(ctx.quick ? 3000 : 5000);
        const rss = await settledRss(running.pid, ctx.quick ? 2000 : 4000);
        const turns = await t.stop();
        const per = (rss - idle) / n;
        rows.push({
          group: GROUP,
          name: `RSS with ${n} satellite${n > 1 ? "s" : ""} talking`,
          unit: "MiB",
          ours: rss / MiB,
          baseline: idle / MiB,
          baselineName: "idle service",
          ratio: rss / idle,
          ...(n === 10 ? { target: "≤ 1.5 MiB per active satellite", met: per <= 1.5 * MiB } : {}),
          note: `${(per / MiB).toFixed(2)} MiB per active satellite; ${turns} turns completed while measuring`,
        });
        await sleep(2000);
      }

      // ── end-to-end turn overhead ──────────────────────────────────────────────────────────
      // A fixed upstream delay on both paths, as a real model takes time before it speaks.
      fake.opts.replyDelayMs = REPLY_DELAY_MS;
      const count = ctx.quick ? 8 : 30;
      const direct = await directTurns(fake, secrets.apiKey, count);
      const through = await serviceTurns(running, secrets.satelliteToken, count);
      const d = median(direct);
      const s = median(through);
      rows.push({
        group: GROUP,
        name: `turn: end of speech → first reply audio (${count} turns, upstream replies after ${REPLY_DELAY_MS} ms)`,
        unit: "ms",
        ours: s,
        baseline: d,
        baselineName: "client straight to the fake upstream",
        ratio: s / d,
        note: `the service adds ${(s - d).toFixed(2)} ms (median); p90 ${percentile(through, 90).toFixed(2)} vs ${percentile(direct, 90).toFixed(2)} ms`,
      });
    } finally {
      await running.stop();
    }
  } finally {
    await fake.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await run({ quick: process.env.BENCH_QUICK === "1" });
  for (const r of rows)
    console.log(
      `${r.name}: ${r.ours.toFixed(2)} ${r.unit} | ${r.baseline?.toFixed(2)} (${r.baselineName}) | ×${r.ratio?.toFixed(2)} | ${r.note ?? ""}`,
    );
}
