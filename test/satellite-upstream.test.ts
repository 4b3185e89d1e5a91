/**
 * What a satellite is told when the upstream misbehaves (issue 11 cases 1, 5, 6): the reason a
 * conversation cannot start, in words; a failed answer as an `error` plus `response.end` `failed`; and
 * an idle timer that waits for running tools. The first tests use the in-memory conversation fake; the
 * others run the real engine against the fake Realtime server: a tool slower than the idle timeout, and
 * (issue 19) an outage in the middle of a conversation, where the upstream drops every socket and then
 * refuses every new one (`insufficient_quota`, a rejected key) or leaves it open and silent for as long
 * as the fault lasts: the device is told why at once and goes back to idle, a turn it starts meanwhile
 * is told at once too, retries do not hammer the upstream, and once it accepts sessions again the
 * conversation goes on.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import type { ToolCallOutcome } from "../src/mcp/types.js";
import { RealtimeEngine, type RealtimeLimits } from "../src/realtime/engine.js";
import { UPSTREAM_MESSAGES, UpstreamUnavailableError } from "../src/realtime/upstream-error.js";
import {
  RecordingTools,
  clientEverything,
  freshMetrics,
  makeConfig,
  silentLogger,
  tool,
} from "./fake-realtime/helpers.js";
import type { ServerMessage } from "../src/satellite/wires/v1-protocol.js";
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

async function satellite(): Promise<TestSatellite> {
  const s = await TestSatellite.connect(app!.url);
  sats.push(s);
  await s.hello({ turn: "client" });
  return s;
}

describe("case 1: the upstream is unavailable", () => {
  it("error upstream_unavailable carries the reason in words", async () => {
    app = await startApp();
    app.source.failWith = new UpstreamUnavailableError("quota", UPSTREAM_MESSAGES.quotaExceeded);
    const s = await satellite();
    s.send({ type: "turn.start" });
    expect(await s.waitJson("error")).toEqual({
      type: "error",
      code: "upstream_unavailable",
      message: "OpenAI quota exceeded",
      fatal: false,
    });
    await s.waitJson("state", (m) => m.value === "idle");
    expect(s.closed).toBeNull();
  });

  it("a fatal error in a conversation is told without the internal code", async () => {
    app = await startApp();
    const s = await satellite();
    s.send({ type: "turn.start" });
    const conv = await app.source.nth(0);
    conv.emit("error", { code: "upstream_unavailable", message: "OpenAI rejected the API key", fatal: true });
    expect(await s.waitJson("error")).toMatchObject({
      code: "upstream_unavailable",
      message: "OpenAI rejected the API key",
    });
  });
});

describe("case 5: a failed answer", () => {
  it("error response_failed with a sentence to say, response.end failed, state idle; the next turn works", async () => {
    app = await startApp();
    const s = await satellite();
    s.send({ type: "turn.start" });
    const conv = await app.source.nth(0);
    s.send({ type: "turn.end" });
    await s.waitJson("state", (m) => m.value === "thinking");
    const sorry = "Sorry, something went wrong while answering. Please try again.";
    conv.emit("error", { code: "response_failed", message: sorry, fatal: false });
    conv.emit("response.end", { id: "resp_failed", reason: "failed" });
    expect(await s.waitJson("error")).toEqual({
      type: "error",
      code: "response_failed",
      message: sorry,
      fatal: false,
    });
    expect(await s.waitJson("response.end")).toEqual({
      type: "response.end",
      id: "resp_failed",
      reason: "failed",
    });
    await s.waitJson("state", (m) => m.value === "idle");
    const types = s.messages().map((m) => (m.type === "state" ? `state:${m.value}` : m.type));
    expect(types.slice(types.indexOf("error"))).toEqual([
      "error",
      "response.start",
      "response.end",
      "state:error",
      "state:idle",
    ]);
    // The conversation goes on.
    s.send({ type: "turn.start" });
    await s.waitJson("state", (m) => m.value === "listening");
    expect(app.source.started).toHaveLength(1);
    expect(conv.ended).toBe(false);
  });

  it("a reply that fails after some audio ends with reason failed too", async () => {
    app = await startApp();
    const s = await satellite();
    s.send({ type: "turn.start" });
    const conv = await app.source.nth(0);
    conv.emit("response.start", { id: "r1" });
    conv.emit("audio", { responseId: "r1", itemId: "i1", pcm: tonePcm(200, 24000) });
    conv.emit("response.end", { id: "r1", reason: "failed" });
    expect(await s.waitJson("response.end")).toEqual({ type: "response.end", id: "r1", reason: "failed" });
  });
});

describe("case 6: the idle timer and running tools", () => {
  it("does not end the conversation while a tool runs; re-arms when it ends", async () => {
    app = await startApp({ conversationIdleS: 0.3 });
    const s = await satellite();
    s.send({ type: "turn.start" });
    const conv = await app.source.nth(0);
    conv.emit("tool", { name: "slow", server: "everything", status: "started" });
    await sleep(900);
    expect(conv.ended).toBe(false);
    conv.emit("tool", { name: "slow", server: "everything", status: "completed" });
    await expect.poll(() => conv.ended, { timeout: 2000 }).toBe(true);
    expect(conv.calls).toContainEqual({ kind: "end", reason: "idle" });
  });

  it("a tool slower than conversation_idle_s completes and its result is spoken (real engine)", async () => {
    fake = await startFakeRealtime({ audioSpeed: 20 });
    const tools = new SlowTools(900);
    engine = new RealtimeEngine({
      config: makeConfig(fake.url, {
        mcp_servers: [clientEverything("never")],
      }),
      tools,
      approvals: new ApprovalQueue({ timeoutS: 5 }),
      logger: silentLogger(),
      metrics: freshMetrics(),
    });
    app = await startApp({ conversationIdleS: 0.3, source: engine });
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"slow"}' });
    const s = await satellite();
    s.send({ type: "turn.start" });
    s.sendAudio(tonePcm(200, 16000));
    s.send({ type: "turn.end" });
    const said = await s.waitJson("transcript", (m) => m.role === "assistant" && m.final, 5000);
    expect(said.text).toBe('The tool said: echo ran with {"message":"slow"}');
    expect(await s.waitJson("response.end", (m) => m.reason === "done", 5000)).toBeDefined();
    expect(
      s
        .messages()
        .filter((m) => m.type === "tool")
        .map((m) => m.type === "tool" && m.status),
    ).toEqual(["started", "completed"]);
    expect(fake.connections).toHaveLength(1);
    expect(fake.connections[0]!.closed).toBe(false);
  });
});

/** Client tools whose calls take `ms`. */
class SlowTools extends RecordingTools {
  constructor(readonly ms: number) {
    super([tool("everything", "echo")]);
  }
  override async callTool(name: string, argsJson: string): Promise<ToolCallOutcome> {
    await sleep(this.ms);
    return super.callTool(name, argsJson);
  }
}

async function outageSetup(limits: Partial<RealtimeLimits> = {}): Promise<TestSatellite> {
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

const REASONS: [Exclude<FakeFault, "silent" | "unavailable">, string][] = [
  ["quota", "OpenAI quota exceeded"],
  ["bad_key", "OpenAI rejected the API key"],
];

describe("an upstream that refuses every session in the middle of a conversation", () => {
  it.each(REASONS)(
    "%s: the device is told at once in words and goes idle; a turn meanwhile is told; it talks again after",
    async (fault, reason) => {
      const s = await outageSetup();
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
    const s = await outageSetup({ handshakeTimeoutMs: 300, reconnectDelaysMs: [0, 10_000] });
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

  it("a silent socket counts as refused for an idle device too: told after the handshake deadline, not the whole backoff", async () => {
    const s = await outageSetup({ handshakeTimeoutMs: 300, reconnectDelaysMs: [0, 10_000] });
    expect((await talk(s)).reason).toBe("done");
    const from = s.frames.length;
    const t0 = performance.now();
    fake!.fault("silent", { dropOpen: true });
    // Nobody talks: the first reconnect meets the silent socket; a refusal is told without the 10 s wait.
    const told = await next(s, "error", () => true, 3000, from);
    expect(told.message).toMatch(/^OpenAI did not answer/);
    expect(performance.now() - t0).toBeLessThan(2000);
    await next(s, "state", (m) => m.value === "idle", 1000, from);
  });

  it("a turn started while reconnecting cuts the backoff short and is answered once OpenAI accepts again", async () => {
    const s = await outageSetup({ handshakeTimeoutMs: 300, reconnectDelaysMs: [0, 10_000] });
    expect((await talk(s)).reason).toBe("done");
    fake!.fault("unavailable", { dropOpen: true });
    // The first reconnect attempt is refused with 503 (a passing failure); the next waits 10 s.
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
