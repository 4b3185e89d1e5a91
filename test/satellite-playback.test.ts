/**
 * Reply audio towards the satellite: resampling to 16 kHz, real-time pacing, response boundaries,
 * barge-in, cancel and slow readers — real WebSockets on 127.0.0.1, the Conversation seam faked.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { createLogger } from "../src/log.js";
import { createMetrics } from "../src/metrics.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import type { SatelliteLink } from "../src/satellite/wires/link.js";
import { V1Wire } from "../src/satellite/wires/v1.js";
import { resolveLimits } from "../src/satellite/limits.js";
import type { ServerMessage } from "../src/satellite/wires/v1-protocol.js";
import {
  FakeConversationSource,
  SHARED_TOKEN,
  TestSatellite,
  sleep,
  startApp,
  tonePcm,
  type FakeConversation,
  type TestApp,
} from "./satellite-helpers.js";

let app: TestApp | null = null;
const sats: TestSatellite[] = [];

afterEach(async () => {
  for (const s of sats.splice(0)) s.close();
  await app?.close();
  app = null;
});

async function talking(
  opts: Parameters<typeof startApp>[0] = {},
  hello: Record<string, unknown> = {},
): Promise<{ s: TestSatellite; conv: FakeConversation }> {
  app = await startApp(opts);
  const s = await TestSatellite.connect(app.url);
  sats.push(s);
  await s.hello(hello);
  s.send({ type: "turn.start" });
  const conv = await app.source.nth(0);
  return { s, conv };
}

/** Emits a reply of `ms` of 24 kHz audio in 100 ms chunks, all at once (faster than real time). */
function speak(conv: FakeConversation, id: string, itemId: string, ms: number, end = true): void {
  conv.emit("response.start", { id });
  const pcm = tonePcm(ms, 24000, 330);
  for (let i = 0; i < pcm.length; i += 4800)
    conv.emit("audio", { responseId: id, itemId, pcm: pcm.subarray(i, i + 4800) });
  if (end) conv.emit("response.end", { id, reason: "done" });
}

const indexOf = (s: TestSatellite, pred: (m: ServerMessage) => boolean): number =>
  s.frames.findIndex((f) => f.json !== undefined && pred(f.json));

describe("reply playback", () => {
  it("arrives at 16 kHz in 20 ms frames, paced at real time with ≈200 ms lead, then response.end", async () => {
    const { s, conv } = await talking();
    conv.emit("speech.stopped");
    await s.waitJson("state", (m) => m.value === "thinking");
    speak(conv, "resp_1", "item_1", 1000);
    const end = await s.waitJson("response.end", () => true, 5000);
    expect(end).toEqual({ type: "response.end", id: "resp_1", reason: "done" });
    const frames = s.audio();
    const bytes = frames.reduce((n, f) => n + f.binary!.length, 0);
    // 24000 samples at 24 kHz → 16000 at 16 kHz, plus the resampler's 32-sample tail.
    expect(bytes).toBe((16000 + 32) * 2);
    expect(frames.slice(0, -1).every((f) => f.binary!.length === 640)).toBe(true);
    // Paced, not dumped: ~200 ms go out at once, the rest over ~800 ms of real time.
    const span = frames.at(-1)!.at - frames[0]!.at;
    expect(span).toBeGreaterThan(650);
    expect(span).toBeLessThan(2000);
    const early = frames.filter((f) => f.at - frames[0]!.at < 50).length;
    expect(early).toBeGreaterThanOrEqual(8); // the lead goes out at once
    // …and then no faster than real time (10 lead frames + 15 in 300 ms, with slack for a loaded machine).
    expect(frames.filter((f) => f.at - frames[0]!.at < 300).length).toBeLessThanOrEqual(32);
    // Order: response.start, state speaking, audio…, response.end, state listening.
    const iStart = indexOf(s, (m) => m.type === "response.start");
    const iSpeaking = indexOf(s, (m) => m.type === "state" && m.value === "speaking");
    const iEnd = indexOf(s, (m) => m.type === "response.end");
    const firstAudio = s.frames.findIndex((f) => f.binary);
    const lastAudio = s.frames.findLastIndex((f) => f.binary);
    expect(iStart).toBeLessThan(firstAudio);
    expect(iSpeaking).toBeLessThan(firstAudio);
    expect(lastAudio).toBeLessThan(iEnd);
    await s.waitJson("state", (m) => m.value === "listening");
    const hist = await app!.metrics.turnFirstAudio.get();
    const count = hist.values.find((v) => (v as { metricName?: string }).metricName?.endsWith("_count"));
    expect(count?.value).toBe(1);
    const out = (await app!.metrics.audioSeconds.get()).values.find((v) => v.labels.direction === "out");
    expect(out?.value).toBeCloseTo(1.002, 3);
  });

  it("plays back-to-back replies in order, each ended before the next one's audio", async () => {
    const { s, conv } = await talking();
    speak(conv, "resp_a", "item_a", 300);
    speak(conv, "resp_b", "item_b", 300);
    await s.waitJson("response.end", (m) => m.id === "resp_b", 5000);
    const iEndA = indexOf(s, (m) => m.type === "response.end" && m.id === "resp_a");
    const audioAfterA = s.frames.slice(iEndA + 1).filter((f) => f.binary).length;
    const audioBeforeA = s.frames.slice(0, iEndA).filter((f) => f.binary).length;
    // Each reply: 4800 samples + the 32-sample resampler tail → 15 full 20 ms frames and a short last one.
    expect(audioBeforeA).toBe(Math.ceil(4832 / 320));
    expect(audioAfterA).toBe(Math.ceil(4832 / 320));
  });

  it("an upstream-stopped response clears playback", async () => {
    const { s, conv } = await talking();
    speak(conv, "resp_1", "item_1", 2000, false);
    await s.waitFor((f) => f.binary !== undefined);
    conv.emit("response.end", { id: "resp_1", reason: "interrupted" });
    await s.waitJson("playback.clear");
    expect(await s.waitJson("response.end")).toEqual({
      type: "response.end",
      id: "resp_1",
      reason: "interrupted",
    });
  });
});

describe("barge-in", () => {
  it("speech during playback: playback.clear at once, queued audio dropped, truncate at the ms played", async () => {
    const { s, conv } = await talking();
    speak(conv, "resp_1", "item_1", 3000, false);
    await s.waitFor((f) => f.binary !== undefined);
    const firstAt = s.audio()[0]!.at;
    await sleep(600);
    const bargeAt = performance.now();
    conv.emit("speech.started");
    const clear = await s.waitFor((f) => f.json?.type === "playback.clear");
    expect(clear.at - bargeAt).toBeLessThan(100);
    expect(await s.waitJson("response.end")).toEqual({
      type: "response.end",
      id: "resp_1",
      reason: "interrupted",
    });
    await s.waitJson("state", (m) => m.value === "listening");
    const interrupt = conv.calls.find((c) => c.kind === "interrupt");
    expect(interrupt).toMatchObject({ kind: "interrupt", itemId: "item_1" });
    const ms = interrupt?.kind === "interrupt" ? interrupt.audioEndMs : -1;
    // The pacing clock starts when the server sent the first frame, the client's clock when it got it:
    // on a loaded machine the two differ by scheduling delays, hence the wide margin.
    const heard = bargeAt - firstAt;
    expect(ms).toBeGreaterThan(heard - 200);
    expect(ms).toBeLessThan(heard + 350);
    // Nothing after the clear: the 2.4 s still queued were dropped.
    await sleep(300);
    const iClear = s.frames.findIndex((f) => f.json?.type === "playback.clear");
    expect(s.frames.slice(iClear).filter((f) => f.binary)).toHaveLength(0);
    const sent = s.audio().reduce((n, f) => n + f.binary!.length, 0) / 32; // ms at 16 kHz
    expect(sent).toBeLessThan(heard + 300);
    // Late audio of the interrupted response is ignored.
    conv.emit("audio", { responseId: "resp_1", itemId: "item_1", pcm: tonePcm(100, 24000) });
    await sleep(100);
    expect(s.frames.slice(iClear).filter((f) => f.binary)).toHaveLength(0);
  });

  it("uses the satellite's playback.done when it reports one in time", async () => {
    const { s, conv } = await talking();
    s.send({ type: "playback.done", played_ms: 0 }); // this satellite reports playback
    speak(conv, "resp_1", "item_1", 3000, false);
    await s.waitFor((f) => f.binary !== undefined);
    await sleep(700);
    s.ws.on("message", (d, isBinary) => {
      if (
        !isBinary &&
        (JSON.parse((d as Buffer).toString("utf8")) as { type: string }).type === "playback.clear"
      )
        s.send({ type: "playback.done", played_ms: 420 });
    });
    conv.emit("speech.started");
    await s.waitJson("playback.clear");
    await expect
      .poll(() => conv.calls.find((c) => c.kind === "interrupt"))
      .toMatchObject({ itemId: "item_1", audioEndMs: 420 });
  });

  it("falls back to the pacing clock when playback.done does not come in time", async () => {
    const { s, conv } = await talking({ limits: { playbackDoneWaitMs: 100 } });
    s.send({ type: "playback.done", played_ms: 0 });
    speak(conv, "resp_1", "item_1", 3000, false);
    await s.waitFor((f) => f.binary !== undefined);
    await sleep(500);
    conv.emit("speech.started");
    await s.waitJson("playback.clear");
    await sleep(30);
    expect(conv.calls.some((c) => c.kind === "interrupt")).toBe(false);
    await expect.poll(() => conv.calls.find((c) => c.kind === "interrupt")).toBeDefined();
    const ms = (conv.calls.find((c) => c.kind === "interrupt") as { audioEndMs: number }).audioEndMs;
    expect(ms).toBeGreaterThan(300);
    expect(ms).toBeLessThan(800);
  });

  it("speech while nothing plays only changes state", async () => {
    const { s, conv } = await talking();
    conv.emit("speech.started");
    await sleep(100);
    expect(s.messages().some((m) => m.type === "playback.clear")).toBe(false);
    expect(conv.calls.filter((c) => c.kind === "interrupt")).toHaveLength(0);
  });

  it("cancel from the satellite stops the response the same way", async () => {
    const { s, conv } = await talking();
    speak(conv, "resp_1", "item_1", 3000, false);
    await s.waitFor((f) => f.binary !== undefined);
    await sleep(400);
    s.send({ type: "cancel", reason: "button" });
    await s.waitJson("playback.clear");
    expect(await s.waitJson("response.end")).toEqual({
      type: "response.end",
      id: "resp_1",
      reason: "cancelled",
    });
    await expect
      .poll(() => conv.calls.find((c) => c.kind === "interrupt"))
      .toMatchObject({ itemId: "item_1" });
  });

  it("cancel before any audio cancels the response upstream", async () => {
    const { s, conv } = await talking();
    conv.emit("response.start", { id: "resp_1" });
    await s.waitJson("response.start");
    s.send({ type: "cancel" });
    await s.waitJson("playback.clear");
    await expect.poll(() => conv.calls.some((c) => c.kind === "cancel")).toBe(true);
    expect(await s.waitJson("response.end")).toMatchObject({ id: "resp_1", reason: "cancelled" });
  });
});

describe("slow consumer", () => {
  class FakeLink implements SatelliteLink {
    readonly texts: string[] = [];
    readonly binaries: Buffer[] = [];
    bufferedAmount = 0;
    closed: { code: number; reason: string } | null = null;
    sendText(t: string): void {
      if (!this.closed) this.texts.push(t);
    }
    sendBinary(b: Buffer): void {
      if (!this.closed) this.binaries.push(b);
    }
    ping(): void {}
    close(code: number, reason: string): void {
      this.closed ??= { code, reason };
    }
    terminate(): void {
      this.closed ??= { code: 1006, reason: "" };
    }
  }

  it("drops reply frames while the send buffer is full, and closes 1013 beyond the bound", async () => {
    const source = new FakeConversationSource();
    const link = new FakeLink();
    const bridge = new V1Wire(link, {
      conversations: source,
      approvals: new ApprovalQueue({ timeoutS: 30 }),
      auth: new SatelliteAuth({ token: SHARED_TOKEN }),
      logger: createLogger({ level: "fatal" }),
      metrics: createMetrics(new Registry(), { defaults: false }),
      limits: resolveLimits({ sendBufferDropBytes: 10_000, sendBufferCloseBytes: 100_000 }),
      conversationIdleS: 30,
    });
    const hello = {
      type: "hello",
      protocol: 1,
      client_id: "slow",
      token: SHARED_TOKEN,
      audio: { in: { rate: 16000 }, out: { rate: 16000 } },
    };
    bridge.handleText(JSON.stringify(hello));
    bridge.handleText(JSON.stringify({ type: "turn.start" }));
    const conv = await source.nth(0);
    link.bufferedAmount = 50_000; // above the drop mark
    speak(conv, "resp_1", "item_1", 1000, false);
    expect(link.binaries).toHaveLength(0);
    expect(link.closed).toBeNull();
    link.bufferedAmount = 0; // it caught up: frames flow again
    await expect.poll(() => link.binaries.length, { timeout: 2000 }).toBeGreaterThan(0);
    link.bufferedAmount = 200_000; // far behind: closed
    await expect.poll(() => link.closed, { timeout: 2000 }).toEqual({ code: 1013, reason: "slow_consumer" });
    expect(
      link.texts.map((t) => JSON.parse(t) as ServerMessage).find((m) => m.type === "error"),
    ).toMatchObject({ code: "slow_consumer", fatal: true });
    await expect.poll(() => conv.ended).toBe(true);
    bridge.handleClosed();
  });
});
