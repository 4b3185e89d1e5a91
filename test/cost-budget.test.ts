/**
 * Budgets that hold, through the whole service in this process (every route on loopback, the fake
 * upstream billing realistic usage): a budget crossed mid-conversation lets the answer finish, ends the
 * conversation, and refuses the next one on every route with `budget_exceeded`; a device budget blocks
 * one device while another talks; `/api/cost` and the metrics agree with the prices applied to the
 * usage the upstream reported.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ConfigInput } from "../src/config/model.js";
import { PriceTable, priceResponse, priceTranscription } from "../src/cost/prices.js";
import { DeviceSocket, UZ_ID, UZ_TOKEN } from "./firmware-helpers.js";
import { metricValue } from "./fake-realtime/helpers.js";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { startInProcess, waitFor, type InProcessService } from "./reliability/harness.js";
import { TestSatellite, tonePcm } from "./satellite-helpers.js";
import { WyomingTestClient, chunkPcm, haHandle } from "./wyoming-client.js";

const TOKEN = "budget-test-shared-token";
let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;
const sockets: { close(): void }[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await svc?.close();
  await fake?.close();
  svc = fake = undefined;
});

async function start(cost: ConfigInput["cost"], noSpeechS?: number): Promise<InProcessService> {
  // 2 s of reply: 40 audio output tokens, $0.00256 at gpt-realtime's $64 per million.
  fake = await startFakeRealtime({ replyAudio: tone(2000), audioSpeed: 8 });
  svc = await startInProcess({
    openai: { api_key: "sk-test", base_url: fake.url, pool_size: 0 },
    satellites: {
      token: TOKEN,
      devices: [{ id: UZ_ID, token: UZ_TOKEN }],
      dialects: ["underzenith"],
    },
    listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0, firmware_port: 0 },
    wyoming: { port: 0, ...(noSpeechS ? { no_speech_s: noSpeechS } : {}) },
    cost,
    log_level: "warning",
  });
  return svc;
}

const ingress = (s: InProcessService): string => {
  const addr = s.app.ingress.server.address() as { port: number };
  return `http://127.0.0.1:${addr.port}`;
};

interface CostBody {
  spent_usd: number;
  budget_usd: number | null;
  warn: boolean;
  blocked: boolean;
  devices: {
    device: string;
    route: string;
    spent_usd: number;
    budget_usd: number | null;
    blocked: boolean;
  }[];
}
const costOf = async (s: InProcessService): Promise<CostBody> =>
  (await (await fetch(`${ingress(s)}/api/cost`)).json()) as CostBody;

async function v1(s: InProcessService, clientId: string): Promise<TestSatellite> {
  const sat = await TestSatellite.connect(s.satelliteUrl);
  sockets.push(sat);
  await sat.hello({ client_id: clientId, token: TOKEN, turn: "client" });
  return sat;
}

/** One client turn: speech, turn.end, and the whole answer. Returns the index after the answer. */
async function turn(sat: TestSatellite): Promise<void> {
  const from = sat.frames.length;
  sat.send({ type: "turn.start" });
  sat.sendAudio(tonePcm(800, 16000));
  sat.send({ type: "turn.end" });
  await sat.waitFor((f) => f.json?.type === "response.end", 10_000, from);
}

/** What the fake upstream billed so far, priced with the default table. */
function expectedUsd(f: FakeRealtimeServer): number {
  const table = new PriceTable();
  let usd = 0;
  for (const c of f.connections)
    for (const e of c.sent) {
      if (e.type === "response.done" && e.response.usage)
        usd += priceResponse(table, "gpt-realtime", e.response.usage).usd!;
      if (e.type === "conversation.item.input_audio_transcription.completed")
        usd += priceTranscription(table, "gpt-4o-mini-transcribe", e.usage).usd!;
    }
  return usd;
}

/** The conversation ended by itself (the budget), after its answer. */
const ended = (s: InProcessService): Promise<true> =>
  waitFor(
    () => (s.service.engine.status().conversations === 0 ? true : undefined),
    10_000,
    "the conversation to end",
  );

const SENTENCE = /^Today's voice budget of \$0\.0020 is used up; it resets at midnight\.$/;

describe("a daily budget", () => {
  it("is crossed mid-conversation: the answer finishes, the conversation ends, every route refuses the next", async () => {
    const s = await start({ daily_budget_usd: 0.002 });
    const kitchen = await v1(s, "kitchen");
    await turn(kitchen);
    const end = kitchen.messages().find((m) => m.type === "response.end");
    expect(end).toMatchObject({ reason: "done" });
    // The whole reply arrived before the conversation ended (16 kHz to the satellite: 32 bytes a ms).
    const replyBytes = kitchen.audio().reduce((n, f) => n + f.binary!.length, 0);
    expect(replyBytes).toBeGreaterThanOrEqual(2000 * 32 * 0.95);
    await ended(s);

    const cost = await costOf(s);
    // The documented shape: today's date (local), the currency, spend against the budget, per device.
    expect(cost).toMatchObject({
      day: new Date().toISOString().slice(0, 10), // the harness runs with TZ unset: UTC
      currency: "USD",
      budget_usd: 0.002,
    });
    expect(cost.blocked).toBe(true);
    expect(cost.warn).toBe(true);
    expect(cost.spent_usd).toBeGreaterThanOrEqual(0.002);
    expect(cost.spent_usd).toBeCloseTo(expectedUsd(fake!), 6);
    expect(cost.devices).toEqual([
      {
        device: "kitchen",
        route: "v1",
        spent_usd: cost.spent_usd,
        budget_usd: null,
        warn: false,
        blocked: true,
      },
    ]);
    const metrics = s.app.metrics;
    expect(
      await metricValue(metrics, "openvoice_cost_usd_total", { device: "kitchen", route: "v1" }),
    ).toBeCloseTo(cost.spent_usd, 6);
    expect(await metricValue(metrics, "openvoice_budget_usd")).toBe(0.002);
    expect(await metricValue(metrics, "openvoice_budget_spent_ratio")).toBeCloseTo(cost.spent_usd / 0.002, 6);

    // Protocol v1: an error, the sentence.
    const from = kitchen.frames.length;
    kitchen.send({ type: "turn.start" });
    const refused = await kitchen.waitFor((f) => f.json?.type === "error", 5000, from);
    expect(refused.json).toMatchObject({ code: "budget_exceeded", fatal: false });
    expect((refused.json as { message: string }).message).toMatch(SENTENCE);

    // A firmware dialect: its own error form.
    const dev = await DeviceSocket.connect(`ws://127.0.0.1:${s.service.firmwarePort}/device/ws`, {
      headers: { authorization: `Bearer ${UZ_TOKEN}` },
    });
    sockets.push({ close: () => dev.ws.terminate() });
    dev.ws.send(
      `{"type":"hello","protocol":1,"client_type":"voice_pe","client_id":"${UZ_ID}","name":"Voice PE"}`,
    );
    await dev.waitFor((f) => f.text?.includes("session_ready") ?? false);
    dev.ws.send('{"type":"ptt_start"}');
    const dialectError = await dev.waitFor((f) => f.text?.includes('"type":"error"') ?? false, 5000);
    expect(JSON.parse(dialectError.text!)).toMatchObject({
      type: "error",
      error: { code: "budget_exceeded", message: expect.stringMatching(SENTENCE) as string },
    });

    // Wyoming: speech-to-text and the conversation agent answer `error` with the sentence.
    const port = s.service.wyoming!.port!;
    const stt = await WyomingTestClient.connect(port);
    await stt.write("transcribe", { language: "en" });
    await stt.write("audio-start", { rate: 16000, width: 2, channels: 1 });
    for (const chunk of chunkPcm(tonePcm(300, 16000)))
      await stt.write("audio-chunk", { rate: 16000, width: 2, channels: 1 }, chunk);
    const sttError = await stt.readUntil(["transcript", "error"], 5000);
    await stt.close();
    expect(sttError).toMatchObject({ type: "error", data: { code: "budget_exceeded" } });
    expect(sttError?.data.text).toMatch(SENTENCE);
    const handled = await haHandle(port, {
      text: "turn on the light",
      conversationId: "c-1",
      deviceId: "ha-device-1",
    });
    expect(handled.answer).toMatchObject({ type: "error", data: { code: "budget_exceeded" } });

    // Allowing more today lets conversations start again.
    const res = await fetch(`${ingress(s)}/api/cost/allow`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ usd: 1 }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as CostBody).budget_usd).toBe(1.002);
    await turn(kitchen);
  });
});

describe("a daily budget crossed by one device", () => {
  it("ends the other devices' running conversations without another answer", async () => {
    // One turn here costs between $0.002 and $0.004 (see the first test): the second crosses $0.005.
    const s = await start({ daily_budget_usd: 0.005 });
    const office = await v1(s, "office");
    await turn(office);
    const afterAnswer = office.frames.length;
    expect((await costOf(s)).blocked).toBe(false);
    // The office's conversation stays open (idle, between turns) while the kitchen spends the rest.
    expect(s.service.engine.status().conversations).toBe(1);
    const kitchen = await v1(s, "kitchen");
    await turn(kitchen);
    expect((await costOf(s)).blocked).toBe(true);
    await ended(s);
    const answers = fake!.connections.flatMap((c) => c.received).filter((e) => e.type === "response.create");
    expect(answers).toHaveLength(2);
    // The office's device was told: its conversation is over (back to idle).
    await office.waitFor((f) => f.json?.type === "state" && f.json.value === "idle", 5000, afterAnswer);
  });

  it("lets a Wyoming speech-to-text call in progress finish; its conversation call is refused", async () => {
    const s = await start({ daily_budget_usd: 0.005 }, 30);
    const office = await v1(s, "office");
    await turn(office);
    const port = s.service.wyoming!.port!;
    const stt = await WyomingTestClient.connect(port);
    sockets.push({ close: () => void stt.close() });
    const format = { rate: 16000, width: 2, channels: 1 };
    await stt.write("transcribe", { language: "en" });
    await stt.write("audio-start", format);
    await stt.write("audio-chunk", format, Buffer.alloc(16 * 200 * 2));
    const conversations = (n: number, what: string): Promise<true> =>
      waitFor(() => (s.service.engine.status().conversations === n ? true : undefined), 10_000, what);
    await conversations(2, "the speech-to-text conversation");
    // Before the speaker starts, the kitchen uses up the day's budget and the office's conversation ends.
    const kitchen = await v1(s, "kitchen");
    await turn(kitchen);
    expect((await costOf(s)).blocked).toBe(true);
    await conversations(1, "only the speech-to-text conversation to be left");
    await new Promise((r) => setTimeout(r, 2000)); // past the 1.5 s an ending conversation waits
    for (const chunk of chunkPcm(tonePcm(600, 16000))) await stt.write("audio-chunk", format, chunk);
    await stt.write("audio-stop", {});
    const transcript = await stt.readUntil(["transcript", "error"], 5000);
    expect(transcript).toMatchObject({ type: "transcript", data: { text: "turn on the kitchen light" } });
    // Home Assistant's conversation call for it gets the budget's sentence.
    const handled = await haHandle(port, {
      text: "turn on the kitchen light",
      conversationId: "c-2",
      deviceId: "ha-device-2",
    });
    expect(handled.answer).toMatchObject({ type: "error", data: { code: "budget_exceeded" } });
    expect(handled.answer?.data.text).toMatch(/^Today's voice budget of \$0\.0050 is used up/);
  });
});

describe("a device budget", () => {
  it("blocks one device while another talks", async () => {
    const s = await start({ device_daily_budget_usd: 0.002 });
    const kitchen = await v1(s, "kitchen");
    const office = await v1(s, "office");
    await turn(kitchen);
    await ended(s);
    const from = kitchen.frames.length;
    kitchen.send({ type: "turn.start" });
    const refused = await kitchen.waitFor((f) => f.json?.type === "error", 5000, from);
    expect(refused.json).toMatchObject({ code: "budget_exceeded" });
    expect((refused.json as { message: string }).message).toBe(
      "Today's voice budget of $0.0020 for this device is used up; it resets at midnight.",
    );
    await turn(office);
    expect(office.messages().filter((m) => m.type === "error")).toEqual([]);
    const cost = await costOf(s);
    expect(cost.blocked).toBe(false);
    expect(cost.devices.find((d) => d.device === "kitchen")).toMatchObject({
      blocked: true,
      budget_usd: 0.002,
    });
    expect(cost.devices.find((d) => d.device === "office")).toMatchObject({ route: "v1" });
    expect(cost.spent_usd).toBeCloseTo(expectedUsd(fake!), 6);
  });
});
