/**
 * Soak: the real process (`node dist/main.js`) with 10 satellites talking continuously (speech streamed
 * at real time, then a reply paced at real time, again and again) for `SOAK_MINUTES` (default 2 in the
 * reliability suite; `npm run soak` runs 10). Every 5 s it samples the service's RSS and V8 heap right
 * after a full collection (gc-probe.mjs, preloaded with --expose-gc) and its event-loop delay (the service's `nodejs_eventloop_lag_*` metrics, which prom-client takes
 * from perf_hooks `monitorEventLoopDelay`, reset at each scrape), plus this driver's own loop delay.
 * Asserts: every turn completed, RSS growth after warm-up (the first 30 %) below 5 %.
 * `SOAK_REPORT=FILE` writes the samples as a Markdown table.
 */
import { writeFile } from "node:fs/promises";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  spawnService,
  type ServiceChild,
} from "./harness.js";

const MINUTES = Number(process.env.SOAK_MINUTES ?? 2);
const SATELLITES = 10;
const SAMPLE_MS = 5000;
const secrets = makeSecrets("soak");
let fake: FakeRealtimeServer | undefined;
let svc: ServiceChild | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.stop();
  await fake?.close();
});

interface Sample {
  t: number;
  /** RSS and V8 heap right after a full collection in the service. */
  rssMiB: number;
  heapMiB: number;
  lagP99Ms: number;
  lagMaxMs: number;
  driverLagP99Ms: number;
  turns: number;
}

async function serviceLag(): Promise<{ p99: number; max: number }> {
  const res = await fetch(`${svc!.baseUrl}/metrics`, {
    headers: { authorization: `Bearer ${secrets.metricsToken}` },
  });
  const text = await res.text();
  const read = (name: string): number => {
    const m = new RegExp(`^(?:openvoice_)?${name} ([0-9.eE+-]+)`, "m").exec(text);
    return m ? Number(m[1]) * 1000 : NaN;
  };
  return { p99: read("nodejs_eventloop_lag_p99_seconds"), max: read("nodejs_eventloop_lag_max_seconds") };
}

const GC_PROBE = fileURLToPath(new URL("./gc-probe.mjs", import.meta.url));

/** Asks the service for a full GC and its memory right after (see gc-probe.mjs). */
async function probeMemory(): Promise<{ rss: number; heapUsed: number }> {
  const count = (): number => svc!.log().split('{"gcProbe":').length;
  const before = count();
  svc!.child.kill("SIGUSR2");
  const end = Date.now() + 5000;
  while (count() === before) {
    if (Date.now() > end) throw new Error("the service did not answer the memory probe");
    await sleep(20);
  }
  const last = svc!.log().split('{"gcProbe":').at(-1)!;
  return JSON.parse(last.slice(0, last.indexOf("}") + 1)) as { rss: number; heapUsed: number };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("soak", () => {
  it(
    `${SATELLITES} satellites talking for ${MINUTES} min: RSS growth after warm-up < 5 %, loop delay reported`,
    async () => {
      fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 4, replyAudio: tone(1500) });
      svc = await spawnService(reliabilityConfig(fake.url, secrets, { poolSize: 2, logLevel: "info" }), {
        nodeArgs: ["--expose-gc", "--import", GC_PROBE],
      });
      const durationMs = MINUTES * 60_000;
      const driverLag = monitorEventLoopDelay({ resolution: 10 });
      driverLag.enable();
      let turns = 0;
      const failures: string[] = [];
      const stopAt = Date.now() + durationMs;
      const talkers = Array.from({ length: SATELLITES }, async (_, i) => {
        const s = await TalkingSatellite.connect(svc!.satelliteUrl, secrets.satelliteToken, `soak-${i}`);
        sats.push(s);
        await sleep(i * 150);
        while (Date.now() < stopAt) {
          try {
            const r = await s.turn({ speechMs: 1000, frameGapMs: 20, timeoutMs: 20_000 });
            if (r.end.type !== "response.end" || r.end.reason !== "done" || r.audioBytes === 0)
              failures.push(`soak-${i}: ${JSON.stringify(r.end)} ${r.audioBytes} bytes`);
            turns++;
            // Wait for the reply to finish playing at the satellite, as a speaker would.
            await sleep(1200);
          } catch (err) {
            failures.push(`soak-${i}: ${(err as Error).message}`);
            return;
          }
        }
      });

      const samples: Sample[] = [];
      const t0 = Date.now();
      await serviceLag(); // resets the service's histogram
      while (Date.now() < stopAt) {
        await sleep(Math.min(SAMPLE_MS, Math.max(0, stopAt - Date.now())));
        const lag = await serviceLag();
        const mem = await probeMemory();
        samples.push({
          t: (Date.now() - t0) / 1000,
          rssMiB: mem.rss / 2 ** 20,
          heapMiB: mem.heapUsed / 2 ** 20,
          lagP99Ms: lag.p99,
          lagMaxMs: lag.max,
          driverLagP99Ms: driverLag.percentile(99) / 1e6,
          turns,
        });
        driverLag.reset();
        // The fake keeps every event it receives: forget them, only the service is measured.
        for (const c of fake.connections) c.received.length = 0;
      }
      await Promise.all(talkers);
      driverLag.disable();

      const warm = samples.filter((s) => s.t >= (durationMs / 1000) * 0.3);
      const head = mean(warm.slice(0, 3).map((s) => s.rssMiB));
      const tail = mean(warm.slice(-3).map((s) => s.rssMiB));
      const growth = (tail - head) / head;
      const heapHead = mean(warm.slice(0, 3).map((s) => s.heapMiB));
      const heapTail = mean(warm.slice(-3).map((s) => s.heapMiB));
      const table = [
        "| t (s) | service RSS (MiB) | heap used (MiB) | service loop delay p99 (ms) | max (ms) | driver p99 (ms) | turns |",
        "|---|---|---|---|---|---|---|",
        ...samples.map(
          (s) =>
            `| ${s.t.toFixed(0)} | ${s.rssMiB.toFixed(1)} | ${s.heapMiB.toFixed(1)} | ${s.lagP99Ms.toFixed(1)} | ${s.lagMaxMs.toFixed(1)} | ` +
            `${s.driverLagP99Ms.toFixed(1)} | ${s.turns} |`,
        ),
        "",
        `RSS after warm-up: ${head.toFixed(1)} → ${tail.toFixed(1)} MiB (${(growth * 100).toFixed(2)} %), ` +
          `heap used ${heapHead.toFixed(1)} → ${heapTail.toFixed(1)} MiB, ` +
          `${turns} turns by ${SATELLITES} satellites in ${MINUTES} min, ${failures.length} failed`,
      ].join("\n");
      process.stdout.write(`\n${table}\n`);
      if (process.env.SOAK_REPORT) await writeFile(process.env.SOAK_REPORT, `${table}\n`);

      expect(failures).toEqual([]);
      expect(turns).toBeGreaterThanOrEqual(SATELLITES * Math.floor(durationMs / 6000));
      expect(warm.length).toBeGreaterThanOrEqual(4);
      expect(samples.every((s) => Number.isFinite(s.lagP99Ms))).toBe(true);
      expect(growth).toBeLessThan(0.05);
      expect(svc.child.exitCode).toBeNull();
    },
    MINUTES * 60_000 + 120_000,
  );

  it("the logs of this run contain no secret", async () => {
    expect((await svc!.stop()).code).toBe(0);
    expect(scanForSecrets(svc!.log(), secrets)).toEqual([]);
  });
});
