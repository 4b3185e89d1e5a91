/**
 * An upstream outage in the middle of a conversation (issue 19, item 1), protocol v1 over the real
 * engine and the fake Realtime server: the upstream drops every socket and then refuses every new one
 * (`insufficient_quota`, a rejected key) or leaves it open and silent, for as long as the fault lasts.
 * The device is told why at once and goes back to idle; a turn it starts meanwhile is told at once
 * too; retries do not hammer the upstream; once it accepts sessions again, the next turn is answered.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { RealtimeEngine, type RealtimeLimits } from "../src/realtime/engine.js";
import type { ServerMessage } from "../src/satellite/wires/v1-protocol.js";
import { RecordingTools, freshMetrics, makeConfig, silentLogger, tool } from "./fake-realtime/helpers.js";
import { startFakeRealtime, type FakeFault, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { TestSatellite, sleep, startApp, tonePcm, type TestApp } from "./satellite-helpers.js";

let app: TestApp | null = null;
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
const sats: TestSatellite[] = [];

afterEach(async () => {
  for (const s of sats.splice(0)) s.close();
  await app?.close();
  app = null;
  await engine?.close();
  engine = undefined;
  await fake?.close();
  fake = undefined;
});

async function setup(limits: Partial<RealtimeLimits> = {}): Promise<TestSatellite> {
  fake = await startFakeRealtime({ audioSpeed: 20 });
  engine = new RealtimeEngine({
    config: makeConfig(fake.url),
    tools: new RecordingTools([tool("everything", "echo")]),
    approvals: new ApprovalQueue({ timeoutS: 5 }),
    logger: silentLogger(),
    metrics: freshMetrics(),
    limits,
  });
  app = await startApp({ source: engine });
  const s = await TestSatellite.connect(app.url);
  sats.push(s);
  await s.hello({ turn: "client" });
  return s;
}

/** The next message of `type` after what `s` has received so far. */
function next<T extends ServerMessage["type"]>(
  s: TestSatellite,
  type: T,
  pred: (m: Extract<ServerMessage, { type: T }>) => boolean = () => true,
  timeoutMs = 3000,
  from = s.frames.length,
): Promise<Extract<ServerMessage, { type: T }>> {
  return s
    .waitFor(
      (f) => f.json?.type === type && pred(f.json as Extract<ServerMessage, { type: T }>),
      timeoutMs,
      from,
    )
    .then((f) => f.json as Extract<ServerMessage, { type: T }>);
}

/** One push-to-talk turn; resolves with the reply's end. */
async function talk(
  s: TestSatellite,
  timeoutMs = 3000,
): Promise<Extract<ServerMessage, { type: "response.end" }>> {
  const from = s.frames.length;
  s.send({ type: "turn.start" });
  s.sendAudio(tonePcm(300, 16000));
  s.send({ type: "turn.end" });
  return next(s, "response.end", () => true, timeoutMs, from);
}

const REASONS: [Exclude<FakeFault, "silent">, string][] = [
  ["quota", "OpenAI quota exceeded"],
  ["bad_key", "OpenAI rejected the API key"],
];

describe("an upstream that refuses every session in the middle of a conversation", () => {
  it.each(REASONS)(
    "%s: the device is told at once in words and goes idle; a turn meanwhile is told; it talks again after",
    async (fault, reason) => {
      const s = await setup();
      expect((await talk(s)).reason).toBe("done");

      const from = s.frames.length;
      const t0 = performance.now();
      fake!.fault(fault, { dropOpen: true });
      const told = await next(s, "error", () => true, 3000, from);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(told).toEqual({ type: "error", code: "upstream_unavailable", message: reason, fatal: false });
      await next(s, "state", (m) => m.value === "idle", 1000, from);

      // A turn started during the outage: one attempt at once, refused, told at once.
      const t1 = performance.now();
      const during = s.frames.length;
      s.send({ type: "turn.start" });
      expect(await next(s, "error", () => true, 3000, during)).toMatchObject({ message: reason });
      expect(performance.now() - t1).toBeLessThan(1000);
      await next(s, "state", (m) => m.value === "idle", 1000, during);
      s.send({ type: "turn.end" });

      // Refused for as long as the fault lasts, without a hot loop.
      await sleep(2500);
      expect(fake!.faultAttempts).toBeLessThanOrEqual(4);

      fake!.fault(null);
      const t2 = performance.now();
      expect((await talk(s)).reason).toBe("done");
      expect(performance.now() - t2).toBeLessThan(2000);
      expect(s.closed).toBeNull();
      // The conversation goes on: the new session was given what was said before the outage.
      const instructions = fake!.connections
        .at(-1)!
        .all("session.update")
        .map((e) => (e.session.type === "realtime" ? (e.session.instructions ?? "") : ""));
      expect(instructions.some((i) => i.includes("User: turn on the kitchen light"))).toBe(true);
      expect(instructions.some((i) => i.includes("Assistant: Sure, done."))).toBe(true);
    },
  );

  it("a socket left open and silent counts as refused after the handshake deadline; the waiting device is told", async () => {
    const s = await setup({ handshakeTimeoutMs: 300, reconnectDelaysMs: [0, 10_000] });
    expect((await talk(s)).reason).toBe("done");
    const from = s.frames.length;
    fake!.fault("silent", { dropOpen: true });
    await sleep(50);
    const t0 = performance.now();
    s.send({ type: "turn.start" });
    s.sendAudio(tonePcm(300, 16000));
    s.send({ type: "turn.end" });
    const told = await next(s, "error", () => true, 3000, from);
    expect(told.code).toBe("upstream_unavailable");
    expect(told.message).toMatch(/^OpenAI did not answer/);
    expect(performance.now() - t0).toBeLessThan(1000);
    await next(s, "state", (m) => m.value === "idle", 1000, from);
  });

  it("a turn started while reconnecting cuts the backoff short and is answered once OpenAI accepts again", async () => {
    const s = await setup({ handshakeTimeoutMs: 300, reconnectDelaysMs: [0, 10_000] });
    expect((await talk(s)).reason).toBe("done");
    fake!.fault("silent", { dropOpen: true });
    // The first reconnect attempt meets the silent socket and fails after 300 ms; the next waits 10 s.
    await expect.poll(() => fake!.faultAttempts, { timeout: 2000 }).toBe(1);
    await sleep(500);
    fake!.fault(null);
    const t0 = performance.now();
    const end = await talk(s, 3000);
    expect(end.reason).toBe("done");
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(s.messages().filter((m) => m.type === "error")).toEqual([]);
    // The held turn reached the new session: one commit there.
    const last = fake!.connections.at(-1)!;
    expect(last.all("input_audio_buffer.commit")).toHaveLength(1);
  });
});
