/**
 * The satellite endpoint over real WebSockets on 127.0.0.1, with the Conversation seam replaced by an
 * in-memory recording fake (the end-to-end tests with the real engine are in satellite-e2e.test.ts).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Resampler } from "../src/audio/resampler.js";
import { LimitError, SATELLITE_ERRORS } from "../src/errors.js";
import {
  DEVICE,
  SHARED_TOKEN,
  TestSatellite,
  sleep,
  startApp,
  tonePcm,
  type TestApp,
} from "./satellite-helpers.js";

let app: TestApp | null = null;
const sats: TestSatellite[] = [];

async function setup(opts: Parameters<typeof startApp>[0] = {}): Promise<TestApp> {
  app = await startApp(opts);
  return app;
}
async function sat(
  url = app!.url,
  opts: ConstructorParameters<typeof TestSatellite>[1] = {},
): Promise<TestSatellite> {
  const s = await TestSatellite.connect(url, opts);
  sats.push(s);
  return s;
}

afterEach(async () => {
  for (const s of sats.splice(0)) s.close();
  await app?.close();
  app = null;
});

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await app!.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe("auth", () => {
  it("accepts a Bearer header", async () => {
    await setup();
    const s = await sat(app!.url, { headers: { Authorization: `Bearer ${SHARED_TOKEN}` } });
    const ready = await s.hello({ token: undefined });
    expect(ready).toMatchObject({
      type: "session_ready",
      protocol: 1,
      audio: { in: { rate: 16000 } },
      turn: "server_vad",
    });
    await s.waitJson("state", (m) => m.value === "idle");
    expect(await metric("openvoice_satellites_connected")).toBe(1);
  });

  it("accepts ?token=", async () => {
    await setup();
    const s = await sat(`${app!.url}?token=${SHARED_TOKEN}`);
    await s.hello({ token: undefined });
  });

  it("accepts hello.token and a device token for its own client_id", async () => {
    await setup();
    const a = await sat();
    await a.hello({ token: SHARED_TOKEN, client_id: "any-device" });
    const b = await sat();
    await b.hello({ token: DEVICE.token, client_id: DEVICE.id });
  });

  it("closes 1008 with unauthorized on a bad header token, before any hello", async () => {
    await setup();
    const s = await sat(app!.url, { headers: { Authorization: "Bearer wrong-token-0123456789" } });
    const err = await s.waitJson("error");
    expect(err).toEqual({
      type: "error",
      code: "unauthorized",
      message: SATELLITE_ERRORS.unauthorized.message,
      fatal: true,
    });
    expect((await s.waitClose()).code).toBe(1008);
    expect(await metric("openvoice_errors_total", { code: "unauthorized" })).toBe(1);
    expect(app!.registry.all()).toHaveLength(0);
  });

  it("closes 1008 on a bad ?token=, a bad hello.token, no token, or another device's token", async () => {
    await setup();
    const viaQuery = await sat(`${app!.url}?token=nope`);
    expect((await viaQuery.waitClose()).code).toBe(1008);
    for (const over of [
      { token: "wrong-token-0123456789" },
      { token: undefined },
      { token: DEVICE.token, client_id: "hall" },
    ]) {
      const s = await sat();
      s.send({
        type: "hello",
        protocol: 1,
        client_id: "kitchen",
        audio: { in: { rate: 16000 }, out: { rate: 16000 } },
        ...over,
      });
      expect(await s.waitJson("error")).toMatchObject({ code: "unauthorized", fatal: true });
      expect((await s.waitClose()).code).toBe(1008);
    }
    expect(await metric("openvoice_satellites_connected")).toBe(0);
  });
});

describe("handshake and bad input", () => {
  it("closes 1002 with hello_timeout when no hello comes in time", async () => {
    await setup({ limits: { helloTimeoutMs: 200 } });
    const s = await sat();
    const t0 = performance.now();
    expect(await s.waitJson("error")).toMatchObject({ code: "hello_timeout", fatal: true });
    expect((await s.waitClose()).code).toBe(1002);
    expect(performance.now() - t0).toBeGreaterThan(150);
  });

  it("binary before hello → bad_hello, close 1002", async () => {
    await setup();
    const s = await sat();
    s.sendAudio(Buffer.alloc(640));
    expect(await s.waitJson("error")).toMatchObject({ code: "bad_hello", fatal: true });
    expect((await s.waitClose()).code).toBe(1002);
  });

  it("a first message that is not a valid hello → bad_hello; another protocol → unsupported_protocol", async () => {
    await setup();
    const a = await sat();
    a.send({ type: "turn.start" });
    expect(await a.waitJson("error")).toMatchObject({ code: "bad_hello" });
    expect((await a.waitClose()).code).toBe(1002);
    const b = await sat();
    b.send({ type: "hello", protocol: 1, client_id: "x", token: SHARED_TOKEN });
    expect(await b.waitJson("error")).toMatchObject({
      code: "bad_hello",
      message: expect.stringMatching(/audio/),
    });
    const c = await sat();
    c.send("{oops");
    expect(await c.waitJson("error")).toMatchObject({ code: "bad_hello" });
    const d = await sat();
    d.send({ type: "hello", protocol: 2, client_id: "x", token: SHARED_TOKEN, audio: {} });
    expect(await d.waitJson("error")).toMatchObject({ code: "unsupported_protocol", fatal: true });
    expect((await d.waitClose()).code).toBe(1002);
  });

  it("odd byte counts → bad_audio, non-fatal; the connection keeps working", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.sendAudio(Buffer.alloc(641));
    expect(await s.waitJson("error")).toMatchObject({ code: "bad_audio", fatal: false });
    s.send({ type: "turn.start" });
    await s.waitJson("state", (m) => m.value === "listening");
    expect(s.closed).toBeNull();
  });

  it("frames over 64 KiB → frame_too_large, close 1009 (text and binary)", async () => {
    await setup();
    const a = await sat();
    await a.hello();
    a.sendAudio(Buffer.alloc(64 * 1024 + 2));
    expect(await a.waitJson("error")).toMatchObject({ code: "frame_too_large", fatal: true });
    expect((await a.waitClose()).code).toBe(1009);
    const b = await sat();
    b.send(JSON.stringify({ type: "turn.start", wake_word: "x".repeat(70_000) }));
    expect(await b.waitJson("error")).toMatchObject({ code: "frame_too_large" });
    expect((await b.waitClose()).code).toBe(1009);
    // Exactly 64 KiB is fine.
    const c = await sat();
    await c.hello({ client_id: "c" });
    c.sendAudio(Buffer.alloc(64 * 1024));
    await sleep(100);
    expect(c.closed).toBeNull();
  });

  it("invalid JSON and unknown types → bad_message, non-fatal until more than 5 in 10 s, then close 1007", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send("{broken");
    s.send({ type: "teleport" });
    s.send({
      type: "hello",
      protocol: 1,
      client_id: "kitchen",
      token: SHARED_TOKEN,
      audio: { in: { rate: 16000 }, out: { rate: 16000 } },
    });
    s.send({ type: "approval.reply", id: 3 });
    s.send({ type: "playback.done", played_ms: "lots" });
    await s.waitFor(() => s.messages().filter((m) => m.type === "error").length === 5);
    expect(
      s
        .messages()
        .filter((m) => m.type === "error")
        .every((m) => m.type === "error" && !m.fatal && m.code === "bad_message"),
    ).toBe(true);
    expect(s.closed).toBeNull();
    s.send("[]");
    const last = await s.waitJson("error", (m) => m.fatal);
    expect(last.code).toBe("bad_message");
    expect((await s.waitClose()).code).toBe(1007);
  });

  it("a flood is rate-limited (close 1008) without affecting another satellite", async () => {
    await setup({ limits: { framesPerSecond: 100, frameBurst: 100 } });
    const calm = await sat();
    await calm.hello({ client_id: "calm" });
    calm.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    const flood = await sat();
    await flood.hello({ client_id: "flood" });
    for (let i = 0; i < 300; i++) flood.sendAudio(Buffer.alloc(64));
    expect(await flood.waitJson("error")).toMatchObject({ code: "rate_limited", fatal: true });
    expect((await flood.waitClose()).code).toBe(1008);
    // The calm one streams on and is heard.
    const before = conv.appendedBytes();
    for (let i = 0; i < 5; i++) {
      calm.sendAudio(tonePcm(20, 16000));
      await sleep(20);
    }
    await expect.poll(() => conv.appendedBytes() - before, { timeout: 2000 }).toBeGreaterThan(4000);
    expect(calm.closed).toBeNull();
  });

  it("byte floods are rate-limited too", async () => {
    await setup({ limits: { bytesPerSecond: 64 * 1024, byteBurst: 128 * 1024 } });
    const s = await sat();
    await s.hello();
    for (let i = 0; i < 4; i++) s.sendAudio(Buffer.alloc(60_000));
    expect(await s.waitJson("error")).toMatchObject({ code: "rate_limited" });
    expect((await s.waitClose()).code).toBe(1008);
  });
});

describe("keepalive", () => {
  it("pings; a satellite that answers stays, one that does not is terminated", async () => {
    await setup({ limits: { pingIntervalMs: 100, pongTimeoutMs: 150 } });
    const good = await sat();
    let pings = 0;
    good.ws.on("ping", () => pings++);
    await good.hello({ client_id: "good", name: "Good one" });
    const mute = await sat(app!.url, { autoPong: false });
    await mute.hello({ client_id: "mute" });
    const closed = await mute.waitClose(3000);
    expect(closed.code).toBe(1006);
    await sleep(300);
    expect(good.closed).toBeNull();
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(app!.registry.connected()).toEqual([
      { clientId: "good", name: "Good one", sessionId: expect.any(String), state: "idle" },
    ]);
  });
});

describe("conversation lifecycle", () => {
  it("turn.start starts a conversation; mic audio goes up at 24 kHz with the right length", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start", wake_word: "ok nabu" });
    await s.waitJson("state", (m) => m.value === "listening");
    const conv = await app!.source.nth(0);
    expect(conv.opts).toEqual({
      turn: "server_vad",
      satelliteId: "kitchen",
      device: { id: "kitchen", route: "v1" },
    });

    const sent = tonePcm(1000, 16000); // 32000 bytes
    for (let i = 0; i < sent.length; i += 640) s.sendAudio(sent.subarray(i, i + 640));
    // 16000 samples in → 24000 out, minus at most one 3-sample cycle still in the resampler.
    await expect.poll(() => conv.appendedBytes(), { timeout: 3000 }).toBeGreaterThanOrEqual(48000 - 6);
    expect(conv.appendedBytes()).toBeLessThanOrEqual(48000);
    expect(await metric("openvoice_audio_seconds_total", { direction: "in" })).toBeCloseTo(1, 3);
  });

  it("a 24 kHz satellite skips resampling both ways", async () => {
    await setup();
    const s = await sat();
    await s.hello({ audio: { in: { rate: 24000 }, out: { rate: 24000 } } });
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    const sent = tonePcm(100, 24000, 300);
    s.sendAudio(sent);
    await expect.poll(() => conv.appendedBytes()).toBe(sent.length);
    expect(Buffer.concat(conv.appended).equals(sent)).toBe(true);
    const reply = tonePcm(200, 24000, 500);
    conv.emit("response.start", { id: "r1" });
    conv.emit("audio", { responseId: "r1", itemId: "i1", pcm: reply });
    conv.emit("response.end", { id: "r1", reason: "done" });
    await s.waitJson("response.end");
    expect(Buffer.concat(s.audio().map((f) => f.binary!)).equals(reply)).toBe(true);
  });

  it("with server VAD, audio alone starts a conversation; mic audio sent while it starts is kept", async () => {
    await setup();
    app!.source.delayMs = 150;
    const s = await sat();
    await s.hello();
    for (let i = 0; i < 5; i++) s.sendAudio(tonePcm(20, 16000));
    await s.waitJson("state", (m) => m.value === "listening");
    const conv = await app!.source.nth(0);
    await expect.poll(() => conv.appendedBytes(), { timeout: 2000 }).toBeGreaterThanOrEqual(4800 - 6);
  });

  it("mic audio kept while the conversation starts goes up sample for sample as resampled", async () => {
    await setup();
    app!.source.delayMs = 150;
    const s = await sat();
    await s.hello();
    const sent = tonePcm(100, 16000);
    for (let i = 0; i < sent.length; i += 640) s.sendAudio(sent.subarray(i, i + 640));
    await s.waitJson("state", (m) => m.value === "listening");
    const conv = await app!.source.nth(0);
    const samples = new Int16Array(sent.buffer, sent.byteOffset, sent.byteLength / 2);
    const whole = new Resampler({ inRate: 16000, outRate: 24000 }).process(samples);
    const expected = Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength);
    await expect.poll(() => conv.appendedBytes(), { timeout: 2000 }).toBe(expected.byteLength);
    expect(Buffer.concat(conv.appended).equals(expected)).toBe(true);
  });

  it("with client turns, audio alone starts nothing and turn.end commits", async () => {
    await setup();
    const s = await sat();
    await s.hello({ turn: "client" });
    s.sendAudio(tonePcm(20, 16000));
    await sleep(100);
    expect(app!.source.started).toHaveLength(0);
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    expect(conv.opts.turn).toBe("client");
    s.send({ type: "turn.end" });
    await s.waitJson("state", (m) => m.value === "thinking");
    expect(conv.calls).toContainEqual({ kind: "commit" });
  });

  it("with client turns, a turn.end that arrives while the conversation starts commits once it is up", async () => {
    await setup();
    app!.source.delayMs = 200;
    const s = await sat();
    await s.hello({ turn: "client" });
    s.send({ type: "turn.start" });
    for (let i = 0; i < 5; i++) s.sendAudio(tonePcm(20, 16000));
    s.send({ type: "turn.end" });
    await s.waitJson("state", (m) => m.value === "thinking");
    const conv = await app!.source.nth(0);
    await expect.poll(() => conv.calls.filter((c) => c.kind === "commit").length, { timeout: 2000 }).toBe(1);
    // The audio sent while starting went up before the commit.
    expect(conv.appendedBytes()).toBeGreaterThanOrEqual(4800 - 6);
  });

  it("forwards transcripts and tool events", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    conv.emit("transcript", { role: "user", text: "turn on the light", final: true });
    conv.emit("tool", { name: "HassTurnOn", server: "home_assistant", status: "started" });
    expect(await s.waitJson("transcript")).toEqual({
      type: "transcript",
      role: "user",
      text: "turn on the light",
      final: true,
    });
    expect(await s.waitJson("tool")).toEqual({
      type: "tool",
      name: "HassTurnOn",
      server: "home_assistant",
      status: "started",
    });
  });

  it("ends the conversation after conversation_idle_s without speech; follow-ups inside the window keep it", async () => {
    await setup({ conversationIdleS: 0.4 });
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    await sleep(250);
    s.send({ type: "turn.start" }); // follow-up inside the window: same conversation
    conv.emit("speech.started");
    await sleep(250);
    expect(conv.ended).toBe(false);
    expect(app!.source.started).toHaveLength(1);
    await expect.poll(() => conv.ended, { timeout: 2000 }).toBe(true);
    expect(conv.calls).toContainEqual({ kind: "end", reason: "idle" });
    await s.waitJson("state", (m) => m.value === "idle", 2000);

    s.send({ type: "turn.start" });
    await app!.source.nth(1);
  });

  it("client turns: a long push-to-talk that streams audio is not cut by the idle timer; a silent device still is", async () => {
    await setup({ conversationIdleS: 0.4 });
    const s = await sat();
    await s.hello({ turn: "client" });
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    // The button is held for three idle periods while the microphone streams.
    for (let i = 0; i < 24; i++) {
      s.sendAudio(tonePcm(20, 16000));
      await sleep(50);
    }
    expect(conv.ended).toBe(false);
    s.send({ type: "turn.end" });
    await expect.poll(() => conv.calls.some((c) => c.kind === "commit"), { timeout: 2000 }).toBe(true);
    expect(conv.ended).toBe(false);
    // Nothing more from the device: the conversation ends after the idle period.
    await expect.poll(() => conv.ended, { timeout: 2000 }).toBe(true);
    expect(conv.calls).toContainEqual({ kind: "end", reason: "idle" });
  });

  it("an unreachable upstream gives upstream_unavailable (non-fatal) and state error → idle", async () => {
    await setup();
    app!.source.failWith = new Error("connect ECONNREFUSED");
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    expect(await s.waitJson("error")).toMatchObject({ code: "upstream_unavailable", fatal: false });
    await s.waitJson("state", (m) => m.value === "error");
    await s.waitJson("state", (m) => m.value === "idle");
    // Streamed audio right after the failure does not hammer the upstream with new attempts.
    let attempts = 0;
    const start = app!.source.start.bind(app!.source);
    app!.source.start = (o) => (attempts++, start(o));
    for (let i = 0; i < 10; i++) s.sendAudio(tonePcm(20, 16000));
    await sleep(200);
    expect(attempts).toBe(0);
    app!.source.failWith = null;
    s.send({ type: "turn.start" });
    await app!.source.nth(0);
    expect(attempts).toBe(1);
    expect(s.closed).toBeNull();
  });

  it("a conversation refused by the cap gives too_many_conversations (non-fatal) and the satellite stays usable", async () => {
    await setup();
    app!.source.failWith = new LimitError("too_many_conversations", "8 conversations are running");
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    expect(await s.waitJson("error")).toEqual({
      type: "error",
      code: "too_many_conversations",
      message: "8 conversations are running",
      fatal: false,
    });
    await s.waitJson("state", (m) => m.value === "idle");
    app!.source.failWith = null;
    s.send({ type: "turn.start" });
    await app!.source.nth(0);
    expect(s.closed).toBeNull();
  });

  it("a conversation closed upstream returns the satellite to idle and the next turn starts a new one", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    conv.emit("error", { code: "session_expired", message: "gone", fatal: true });
    conv.emit("closed", { reason: "session_expired" });
    expect(await s.waitJson("error")).toMatchObject({ code: "upstream_unavailable" });
    await s.waitJson("state", (m) => m.value === "idle");
    s.send({ type: "turn.start" });
    expect((await app!.source.nth(1)).id).not.toBe(conv.id);
  });

  it("a disconnect ends the conversation and updates the gauges", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    s.ws.close(1000);
    await expect.poll(() => conv.ended).toBe(true);
    await expect.poll(() => metric("openvoice_satellites_connected")).toBe(0);
    expect(app!.registry.all()).toHaveLength(0);
  });

  it("a newer connection with the same client_id replaces the older one", async () => {
    await setup();
    const old = await sat();
    await old.hello();
    const fresh = await sat();
    await fresh.hello();
    expect(await old.waitJson("session.end")).toEqual({ type: "session.end", reason: "replaced" });
    expect((await old.waitClose()).code).toBe(1000);
    expect(app!.registry.connected()).toHaveLength(1);
    expect(fresh.closed).toBeNull();
  });

  it("shutdown sends session.end and closes 1001, ending conversations", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    const closing = app!.close();
    expect(await s.waitJson("session.end")).toEqual({ type: "session.end", reason: "shutdown" });
    expect((await s.waitClose()).code).toBe(1001);
    await closing;
    app = null;
    expect(conv.ended).toBe(true);
  });
});

describe("failures stay local", () => {
  it("a handler that throws closes only that satellite with internal (1011)", async () => {
    await setup();
    const other = await sat();
    await other.hello({ client_id: "other" });
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    // Not a Buffer, and reading it throws: stands in for any bug on the audio path.
    const poisoned = Object.defineProperty({}, "byteLength", {
      get() {
        throw new Error("boom");
      },
    }) as Buffer;
    conv.emit("audio", { responseId: "r", itemId: "i", pcm: poisoned });
    expect(await s.waitJson("error")).toMatchObject({ code: "internal", fatal: true });
    expect((await s.waitClose()).code).toBe(1011);
    await expect.poll(() => conv.ended).toBe(true);
    other.send({ type: "turn.start" });
    await other.waitJson("state", (m) => m.value === "listening");
    expect(other.closed).toBeNull();
  });
});

describe("approvals", () => {
  it("shows this conversation's approval requests and answers them through the queue", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    const req = app!.approvals.request({
      server: "ha",
      tool: "unlock_door",
      arguments: '{"door":"front"}',
      mode: "client",
      satelliteId: "kitchen",
    });
    conv.emit("approval.request", app!.approvals.get(req.id)!);
    const shown = await s.waitJson("approval.request");
    expect(shown).toEqual({
      type: "approval.request",
      id: req.id,
      server: "ha",
      tool: "unlock_door",
      arguments: '{"door":"front"}',
      timeout_s: 30,
    });
    s.send({ type: "approval.reply", id: req.id, approve: true });
    expect(await req.decision).toEqual({ approve: true, source: "satellite" });
  });

  it("an unknown id, or one not shown to this satellite, is approval_unknown (non-fatal)", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    const other = app!.approvals.request({
      server: "ha",
      tool: "unlock_door",
      arguments: "{}",
      mode: "client",
      satelliteId: "hall",
    });
    s.send({ type: "approval.reply", id: "nope", approve: true });
    expect(await s.waitJson("error")).toMatchObject({ code: "approval_unknown", fatal: false });
    s.send({ type: "approval.reply", id: other.id, approve: true });
    await s.waitFor(() => s.messages().filter((m) => m.type === "error").length === 2);
    expect(app!.approvals.get(other.id)).toBeDefined();
    expect(s.closed).toBeNull();
  });
});

describe("connections per device token", () => {
  const device = { headers: { Authorization: `Bearer ${DEVICE.token}` } };

  it("refuses connections beyond the cap with too_many_connections (1008); a closed one frees its place", async () => {
    await setup({ limits: { maxConnectionsPerDeviceToken: 2 } });
    const a = await sat(app!.url, device);
    const b = await sat(app!.url, device);
    const c = await sat(app!.url, device);
    expect(await c.waitJson("error")).toMatchObject({ code: "too_many_connections", fatal: true });
    expect((await c.waitClose()).code).toBe(1008);
    // Through hello.token as well.
    const d = await sat();
    d.send({
      type: "hello",
      protocol: 1,
      client_id: DEVICE.id,
      token: DEVICE.token,
      audio: { in: { rate: 16000 }, out: { rate: 16000 } },
    });
    expect(await d.waitJson("error")).toMatchObject({ code: "too_many_connections" });
    expect((await d.waitClose()).code).toBe(1008);
    expect(a.closed).toBeNull();
    expect(b.closed).toBeNull();
    a.close();
    await a.waitClose();
    await expect.poll(() => app!.registry.all().length).toBe(1);
    const e = await sat(app!.url, device);
    await e.hello({ client_id: DEVICE.id });
    expect(e.closed).toBeNull();
  });

  it("the shared token is not capped per token", async () => {
    await setup({ limits: { maxConnectionsPerDeviceToken: 1 } });
    const all = await Promise.all([1, 2, 3].map(() => sat()));
    await Promise.all(all.map((s, i) => s.hello({ client_id: `room-${i}` })));
    expect(all.every((s) => s.closed === null)).toBe(true);
  });
});

describe("approval.done", () => {
  async function shown(s: TestSatellite) {
    s.send({ type: "turn.start" });
    const conv = await app!.source.nth(0);
    const ask = () => {
      const req = app!.approvals.request({
        server: "ha",
        tool: "unlock_door",
        arguments: "{}",
        mode: "client",
        satelliteId: "kitchen",
      });
      conv.emit("approval.request", app!.approvals.get(req.id)!);
      return req;
    };
    return { conv, ask };
  }

  it("tells the satellite how each approval it was shown ended, wherever it was answered", async () => {
    await setup();
    const s = await sat();
    await s.hello();
    const { ask } = await shown(s);
    const elsewhere = ask();
    await s.waitJson("approval.request", (m) => m.id === elsewhere.id);
    app!.approvals.answer(elsewhere.id, false, "ingress");
    expect(await s.waitJson("approval.done", (m) => m.id === elsewhere.id)).toEqual({
      type: "approval.done",
      id: elsewhere.id,
      outcome: "denied",
    });
    // A stale prompt answered on the device afterwards is approval_unknown, as before.
    s.send({ type: "approval.reply", id: elsewhere.id, approve: true });
    expect(await s.waitJson("error")).toMatchObject({ code: "approval_unknown" });

    const here = ask();
    await s.waitJson("approval.request", (m) => m.id === here.id);
    s.send({ type: "approval.reply", id: here.id, approve: true });
    expect(await s.waitJson("approval.done", (m) => m.id === here.id)).toMatchObject({ outcome: "approved" });

    const dropped = ask();
    await s.waitJson("approval.request", (m) => m.id === dropped.id);
    app!.approvals.cancel((p) => p.id === dropped.id, "The conversation ended.");
    expect(await s.waitJson("approval.done", (m) => m.id === dropped.id)).toMatchObject({
      outcome: "cancelled",
    });
    // One approval.done per approval.request, and none for approvals this satellite never saw.
    app!.approvals.answer(
      app!.approvals.request({ server: "ha", tool: "x", arguments: "{}", mode: "client" }).id,
      true,
      "ingress",
    );
    await sleep(100);
    expect(s.messages().filter((m) => m.type === "approval.done")).toHaveLength(3);
  });

  it("a prompt nobody answers ends with outcome timeout", async () => {
    await setup({ approvalTimeoutS: 0.3 });
    const s = await sat();
    await s.hello();
    const { ask } = await shown(s);
    const req = ask();
    await s.waitJson("approval.request");
    expect(await s.waitJson("approval.done")).toEqual({
      type: "approval.done",
      id: req.id,
      outcome: "timeout",
    });
    expect((await req.decision).source).toBe("timeout");
  });
});
