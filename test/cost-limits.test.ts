/**
 * The defaults that keep the voice cheap, against the fake upstream: a silent client turn asks for no
 * answer, a conversation that never goes quiet ends at `cost.max_conversation_minutes` (compressed),
 * and a Wyoming call that names Home Assistant's device is billed there, its speech-to-text included.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { CostLedger } from "../src/cost/ledger.js";
import { CostMeter } from "../src/cost/meter.js";
import { PriceTable } from "../src/cost/prices.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "./fake-realtime/server.js";
import {
  ConversationRecorder,
  RecordingTools,
  freshMetrics,
  makeConfig,
  silence,
  silentLogger,
} from "./fake-realtime/helpers.js";
import { startInProcess, type InProcessService } from "./reliability/harness.js";
import { haHandle, haSttConcurrent, haSttLegacy, chunkPcm } from "./wyoming-client.js";
import { tonePcm } from "./satellite-helpers.js";

let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
let svc: InProcessService | undefined;
let dir: string | undefined;

afterEach(async () => {
  await engine?.close();
  await svc?.close();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  engine = svc = fake = dir = undefined;
});

async function setup(maxConversationMs = 0) {
  fake = await startFakeRealtime({ audioSpeed: 20, replyAudio: tone(300) });
  dir = await mkdtemp(join(tmpdir(), "openvoice-limits-"));
  const metrics = freshMetrics();
  const logger = silentLogger();
  const cost = new CostMeter({
    budget: { warnPercent: 80 },
    maxConversationMs,
    prices: new PriceTable(),
    ledger: new CostLedger({ dataDir: dir, timeZone: () => "UTC", logger }),
    metrics,
    logger,
  });
  await cost.load();
  engine = new RealtimeEngine({
    config: makeConfig(fake.url),
    tools: new RecordingTools(),
    approvals: new ApprovalQueue({ timeoutS: 5 }),
    logger,
    metrics,
    cost,
  });
  return { fake, engine, cost };
}

/** The whole service in this process, Wyoming on, no budget, against the fake upstream. */
async function startService(): Promise<InProcessService> {
  fake = await startFakeRealtime({ audioSpeed: 20, replyAudio: tone(300) });
  return startInProcess({
    openai: { api_key: "sk-test", base_url: fake.url, pool_size: 0 },
    listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
    wyoming: { port: 0 },
    log_level: "warning",
  });
}

describe("a turn with no speech", () => {
  it("asks for no answer and ends the conversation; a spoken turn is answered", async () => {
    const { fake, engine } = await setup();
    const quiet = await engine.start({ turn: "client", satelliteId: "kitchen" });
    const conn = await fake.nextConnection();
    const rec = new ConversationRecorder(quiet);
    quiet.appendAudio(silence(600));
    quiet.commitAndRespond();
    expect((await rec.waitFor("closed")).reason).toBe("no_speech");
    expect(conn.received.filter((e) => e.type === "response.create")).toEqual([]);
    expect(conn.received.filter((e) => e.type === "input_audio_buffer.commit")).toEqual([]);

    const spoken = await engine.start({ turn: "client", satelliteId: "kitchen" });
    const conn2 = await fake.nextConnection();
    const rec2 = new ConversationRecorder(spoken);
    spoken.appendAudio(silence(200));
    spoken.appendAudio(tone(400));
    spoken.commitAndRespond();
    expect((await rec2.waitFor("response.end")).reason).toBe("done");
    expect(conn2.received.filter((e) => e.type === "response.create")).toHaveLength(1);
    await spoken.end("done");
  });
});

describe("a Wyoming speech-to-text call with no speech", () => {
  it("commits nothing: an empty transcript, so no transcription and no answer are paid for", async () => {
    svc = await startService();
    const port = svc.service.wyoming!.port!;
    // A false wake: a second of a quiet room, then Home Assistant's audio-stop.
    const quiet = await haSttLegacy(port, { chunks: chunkPcm(Buffer.alloc(16 * 1000 * 2)) });
    expect(quiet.text).toBe("");
    const received = fake!.connections.flatMap((c) => c.received);
    expect(received.filter((e) => e.type === "input_audio_buffer.commit")).toEqual([]);
    expect(received.filter((e) => e.type === "response.create")).toEqual([]);
    // Speech is still transcribed on audio-stop.
    const spoken = await haSttLegacy(port, { chunks: chunkPcm(tonePcm(600, 16000)) });
    expect(spoken.text).toBe("turn on the kitchen light");
  });
});

describe("cost.max_conversation_minutes", () => {
  it("ends a conversation that keeps talking after its answer, once it has run that long", async () => {
    const { fake, engine } = await setup(400);
    const conv = await engine.start({ turn: "client", satelliteId: "tv-room" });
    await fake.nextConnection();
    const rec = new ConversationRecorder(conv);
    const started = Date.now();
    // Keep it busy: a new turn as soon as each answer ends.
    const doneAt: number[] = [];
    conv.on("response.end", (e) => {
      if (e.reason === "done") doneAt.push(Date.now());
      conv.appendAudio(tone(200));
      conv.commitAndRespond();
    });
    conv.appendAudio(tone(200));
    conv.commitAndRespond();
    const closed = await rec.waitFor("closed", () => true, 1, 10_000);
    expect(closed.reason).toBe("max_duration");
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    // The answer running at the limit finished ("done" after it) before the conversation ended.
    expect(doneAt.some((t) => t >= started + 400)).toBe(true);
  });
});

describe("Wyoming attribution", () => {
  it("bills the conversation call and its speech-to-text to Home Assistant's device", async () => {
    svc = await startService();
    // No budget configured: the budget series are there anyway (at 0), so dashboards find them.
    const satellitePort = (svc.app.satellite.server.address() as { port: number }).port;
    const scraped = await (await fetch(`http://127.0.0.1:${satellitePort}/metrics`)).text();
    for (const line of [
      "openvoice_budget_usd 0",
      "openvoice_budget_spent_ratio 0",
      "openvoice_budget_warn 0",
    ])
      expect(scraped.split("\n")).toContain(line);
    expect(scraped).toContain("# TYPE openvoice_cost_usd_total counter");
    const port = svc.service.wyoming!.port!;
    const stt = await haSttConcurrent(port, {
      chunks: chunkPcm(Buffer.concat([tonePcm(600, 16000), Buffer.alloc(16 * 1200 * 2)])),
      intervalMs: 0,
    });
    expect(stt.text).toBe("turn on the kitchen light");
    const handled = await haHandle(port, { text: stt.text!, conversationId: "c-7", deviceId: "ha-voice-pe" });
    expect(handled.answer?.type).toBe("handled");
    const addr = svc.app.ingress.server.address() as { port: number };
    const cost = (await (await fetch(`http://127.0.0.1:${addr.port}/api/cost`)).json()) as {
      spent_usd: number;
      devices: { device: string; route: string; spent_usd: number }[];
    };
    expect(cost.spent_usd).toBeGreaterThan(0);
    const device = cost.devices.find((d) => d.device === "ha-voice-pe");
    expect(device).toMatchObject({ route: "wyoming", spent_usd: cost.spent_usd });
    expect(cost.devices.find((d) => d.device === "wyoming")?.spent_usd ?? 0).toBe(0);
    // The speech-to-text's priced item moved with it (the talk page and the UI read these).
    const items = svc.service.cost.recent({ id: "ha-voice-pe", route: "wyoming" });
    expect(new Set(items.map((i) => i.kind))).toEqual(new Set(["response", "transcription"]));
    expect(svc.service.cost.recent({ id: "wyoming", route: "wyoming" })).toEqual([]);
  });
});
