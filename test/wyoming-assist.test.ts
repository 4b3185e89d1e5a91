/**
 * The three Assist programs end to end: a Wyoming client that replays Home Assistant's call sequences
 * (test/wyoming-client.ts) → the Wyoming server → the programs → the realtime engine → the fake Realtime
 * server over loopback, with fixture speech and a real stdio MCP server for client tools.
 */
import { readFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { McpServerSchema, type ConfigInput } from "../src/config/model.js";
import { parseWav } from "../src/audio/wav.js";
import { pcm16Bytes } from "../src/audio/pcm.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { WyomingActivity } from "../src/wyoming/activity.js";
import { createAssistPrograms, type AssistPrograms } from "../src/wyoming/programs.js";
import { WyomingServer } from "../src/wyoming/server.js";
import {
  startFakeRealtime,
  tone,
  type FakeConnection,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";
import { freshMetrics, makeConfig, silentLogger, until } from "./fake-realtime/helpers.js";
import {
  WyomingTestClient,
  chunkPcm,
  haHandle,
  haSttConcurrent,
  haSttLegacy,
  haTts,
  haTtsStreaming,
} from "./wyoming-client.js";

const fixture = (name: string): Buffer =>
  Buffer.from(
    pcm16Bytes(parseWav(readFileSync(new URL(`./fixtures/audio/${name}`, import.meta.url))).samples),
  );
const KITCHEN = fixture("kitchen_light_16k.wav");
const LIVING_ROOM = fixture("living_room_16k.wav");
const silence16k = (ms: number): Buffer => Buffer.alloc(16 * ms * 2);
/** A steady loud hum at 16 kHz: speech to a level-based detector, and it never stops. */
const hum16k = (ms: number): Buffer => {
  const out = Buffer.alloc(16 * ms * 2);
  for (let i = 0; i < out.length / 2; i++) out.writeInt16LE(Math.round(9000 * Math.sin(i / 6)), i * 2);
  return out;
};

/** What the fake "hears": the living-room fixture is the long one. */
const transcribe = (pcm: Buffer): string =>
  pcm.length / 48_000 > 3.4 ? "turn on the living room lights" : "turn on the kitchen light";
/**
 * Out-of-band speech: a tone whose length and pitch follow the text and the voice, so each text in each
 * voice has its own audio.
 */
const VOICE_PITCH: Record<string, number> = { marin: 0, cedar: 40, alloy: 80 };
const speechAudio = (text: string, voice = "marin"): Buffer =>
  tone(80 + 4 * text.length, 180 + 3 * text.length + (VOICE_PITCH[voice] ?? 120));

const EVERYTHING_BIN = new URL("../node_modules/.bin/mcp-server-everything", import.meta.url).pathname;
const everything = McpServerSchema.parse({
  name: "everything",
  mode: "client",
  transport: "stdio",
  command: EVERYTHING_BIN,
  args: ["stdio"],
  require_approval: { echo: "never", "get-sum": "always" },
  timeout: 20,
});

let manager: ClientMcpManager;
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
let assist: AssistPrograms | undefined;
let server: WyomingServer | undefined;

beforeAll(async () => {
  manager = new ClientMcpManager({ servers: [everything], logger: silentLogger(), metrics: freshMetrics() });
  await manager.connectAll();
  await until(() => manager.tools().some((t) => t.name === "echo"), 15_000, "everything's tools");
});

afterAll(async () => {
  await manager.close();
});

afterEach(async () => {
  await server?.close();
  await assist?.close();
  await engine?.close();
  await fake?.close();
  server = undefined;
  assist = undefined;
  engine = undefined;
  fake = undefined;
});

interface Setup {
  fake?: FakeRealtimeOptions;
  openai?: Partial<ConfigInput["openai"]>;
  asrTurnTtlMs?: number;
  approvalTimeoutS?: number;
  wyoming?: Partial<ConfigInput["wyoming"]>;
  maxConversations?: number;
  answerTimeoutMs?: number;
}

async function setup(s: Setup = {}) {
  fake = await startFakeRealtime({ audioSpeed: 50, transcribe, speechAudio, ...s.fake });
  const config = makeConfig(
    fake.url,
    {
      mcp_servers: [everything],
      listen: { host: "127.0.0.1" },
      wyoming: { port: 0, ...s.wyoming },
      ...(s.maxConversations === undefined ? {} : { satellites: { max_conversations: s.maxConversations } }),
    },
    { pool_size: 2, ...s.openai },
  );
  const metrics = freshMetrics();
  const approvals = new ApprovalQueue({ timeoutS: s.approvalTimeoutS ?? 5 });
  engine = new RealtimeEngine({
    config,
    tools: manager,
    approvals,
    logger: silentLogger(),
    metrics,
  });
  await engine.warmUp();
  assist = createAssistPrograms({
    engine,
    config,
    approvals,
    ...(s.answerTimeoutMs === undefined ? {} : { answerTimeoutMs: s.answerTimeoutMs }),
    logger: silentLogger(),
    ...(s.asrTurnTtlMs !== undefined ? { asrTurnTtlMs: s.asrTurnTtlMs, sweepMs: 20 } : {}),
  });
  await assist.warmUp();
  const activity = new WyomingActivity({ metrics });
  server = new WyomingServer({
    config,
    version: "0.0.0-test",
    logger: silentLogger(),
    activity,
    programs: assist.programs,
  });
  const port = await server.listen();
  return { fake, engine, port, activity, approvals };
}

/** The fake connection whose appended audio was committed (the ASR call's conversation). */
const listeners = (f: FakeRealtimeServer): FakeConnection[] =>
  f.connections.filter((c) => c.all("input_audio_buffer.append").length > 0);

describe("speech to text", () => {
  it("concurrent client: the transcript comes when the speaker stops, before audio-stop; the rest is ignored", async () => {
    const { fake, port, activity } = await setup();
    const chunks = chunkPcm(Buffer.concat([KITCHEN, silence16k(3000)]));
    const r = await haSttConcurrent(port, { language: "en", chunks, intervalMs: 4 });
    expect(r.text).toBe("turn on the kitchen light");
    expect(r.events.find((e) => e.type === "transcript")?.data).toEqual({
      text: "turn on the kitchen light",
      language: "en",
    });
    expect(r.chunksSent).toBeLessThan(chunks.length);
    expect(r.events.some((e) => e.type === "error")).toBe(false);
    const [conn] = listeners(fake);
    // Upstream turn detection ended the turn (no client commit) and created no response.
    expect(conn!.all("input_audio_buffer.commit")).toHaveLength(0);
    expect(conn!.all("response.create")).toHaveLength(0);
    await until(() => activity.snapshot().turns.some((t) => t.outcome === "success"), 2000, "turn finished");
    expect(activity.snapshot().turns[0]).toMatchObject({ program: "asr", outcome: "success" });
    expect(activity.snapshot().turns[0]!.stages.transcript).toBeGreaterThanOrEqual(0);
  });

  it("legacy client: audio-stop commits at once and the transcript follows", async () => {
    const { fake, port } = await setup();
    const r = await haSttLegacy(port, { language: "en", chunks: chunkPcm(LIVING_ROOM) });
    expect(r.text).toBe("turn on the living room lights");
    expect(r.chunksSent).toBe(chunkPcm(LIVING_ROOM).length);
    const [conn] = listeners(fake);
    expect(conn!.all("input_audio_buffer.commit")).toHaveLength(1);
    expect(conn!.all("response.create")).toHaveLength(0);
    // The language Home Assistant asked for goes to the upstream transcription.
    const language = conn!
      .all("session.update")
      .map((e) =>
        e.session.type === "realtime" ? e.session.audio?.input?.transcription?.language : undefined,
      )
      .filter(Boolean);
    expect(language).toEqual(["en"]);
  });

  it("hands the upstream 24 kHz mono: 16 kHz is resampled, 24 kHz passes, stereo is mixed down", async () => {
    const heard: number[] = [];
    const { port } = await setup({
      fake: {
        transcribe: (pcm) => {
          heard.push(pcm.length / 48); // ms at 24 kHz mono
          return "ok";
        },
      },
    });
    const tone16k = Buffer.alloc(16_000 * 2);
    for (let i = 0; i < 16_000; i++) tone16k.writeInt16LE(Math.round(8000 * Math.sin(i / 5)), i * 2);
    expect((await haSttLegacy(port, { chunks: chunkPcm(tone16k) })).text).toBe("ok");
    const c = await WyomingTestClient.connect(port);
    const stereo24k = Buffer.alloc(24_000 * 4);
    for (let i = 0; i < 24_000; i++) {
      stereo24k.writeInt16LE(Math.round(8000 * Math.sin(i / 7)), i * 4);
      stereo24k.writeInt16LE(Math.round(8000 * Math.sin(i / 7)), i * 4 + 2);
    }
    const fmt = { rate: 24000, width: 2, channels: 2 };
    await c.write("transcribe", { language: "en" });
    await c.write("audio-start", fmt);
    for (let off = 0; off < stereo24k.length; off += 9600)
      await c.write("audio-chunk", fmt, stereo24k.subarray(off, off + 9600));
    await c.write("audio-stop");
    expect((await c.readUntil(["transcript"]))?.data.text).toBe("ok");
    await c.close();
    expect(heard).toHaveLength(2);
    expect(Math.abs(heard[0]! - 1000)).toBeLessThan(5);
    expect(heard[1]).toBe(1000);
  });

  it("a false wake in a quiet room ends with an empty transcript and frees its conversation", async () => {
    // Home Assistant streams the device's microphone until a transcript comes (no end-of-speech
    // detection of its own: requires_external_vad is false), so only the service can end the call.
    const { fake, port } = await setup({ wyoming: { no_speech_s: 1 }, maxConversations: 2 });
    const quiet = chunkPcm(silence16k(6000));
    const calls = [0, 1].map(() => haSttConcurrent(port, { language: "en", chunks: quiet, intervalMs: 64 }));
    const results = await Promise.all(calls);
    for (const r of results) {
      expect(r.text).toBe("");
      expect(r.events.find((e) => e.type === "transcript")?.data).toEqual({ text: "", language: "en" });
      expect(r.chunksSent).toBeLessThan(quiet.length);
    }
    const silent = listeners(fake);
    expect(silent).toHaveLength(2);
    await until(() => silent.every((c) => c.closed), 5000, "silent calls' conversations ended");
    for (const c of silent) expect(c.all("response.create")).toHaveLength(0);
    // Both places under max_conversations are free again: a real question is answered.
    const next = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    expect(next.text).toBe("turn on the kitchen light");
  });

  it("a turn that never ends on its own is cut at the longest turn and what was heard is transcribed", async () => {
    const heard: number[] = [];
    const { fake, port } = await setup({
      wyoming: { no_speech_s: 1, max_turn_s: 2 },
      fake: {
        transcribe: (pcm) => {
          heard.push(pcm.length / 48); // ms at 24 kHz
          return "a very long story";
        },
      },
    });
    const noisy = chunkPcm(hum16k(6000));
    const r = await haSttConcurrent(port, { language: "en", chunks: noisy, intervalMs: 64 });
    expect(r.text).toBe("a very long story");
    expect(r.chunksSent).toBeLessThan(noisy.length);
    const [conn] = listeners(fake);
    expect(conn!.all("input_audio_buffer.commit")).toHaveLength(1);
    expect(conn!.all("response.create")).toHaveLength(0);
    // The audio up to the cut, at most two seconds of it (it is paced in real time).
    expect(heard).toHaveLength(1);
    expect(heard[0]).toBeGreaterThan(0);
    expect(heard[0]).toBeLessThanOrEqual(2100);
  });

  it("refuses audio it cannot use with a clear error", async () => {
    const { port } = await setup();
    const c = await WyomingTestClient.connect(port);
    await c.write("transcribe", { language: "en" });
    await c.write("audio-start", { rate: 44100, width: 2, channels: 1 });
    const e = await c.readUntil(["error"]);
    expect(e?.data).toMatchObject({ code: "bad_audio" });
    expect(String(e?.data.text)).toMatch(/16 or 24 kHz/);
    await c.close();
  });
});

describe("conversation agent", () => {
  it("answers an ASR turn in the conversation that heard it, then speaks the model's own audio", async () => {
    const { fake, port } = await setup({ fake: { replyTranscript: "The kitchen light is on." } });
    const stt = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    const h = await haHandle(port, {
      text: stt.text!,
      conversationId: "01HCONV",
      satelliteId: "assist_satellite.kitchen",
    });
    expect(h.answer?.type).toBe("handled");
    expect(h.answer?.data).toEqual({
      text: "The kitchen light is on.",
      context: { conversation_id: "01HCONV" },
    });
    const [conn] = listeners(fake);
    expect(conn!.all("response.create")).toHaveLength(1);
    expect(conn!.all("conversation.item.create")).toHaveLength(0);

    const speakers = () =>
      fake.connections.filter((c) =>
        c.all("response.create").some((e) => e.response?.conversation === "none"),
      );
    const plain = await haTts(port, "  The kitchen   light is on. ");
    expect(plain.format).toEqual({ rate: 24000, width: 2, channels: 1 });
    expect(plain.audio!.equals(fake.replyAudio)).toBe(true);
    const streamed = await haTtsStreaming(port, ["The kitchen ", "light is on."]);
    expect(streamed.stopped).toBe(true);
    expect(streamed.audio!.equals(fake.replyAudio)).toBe(true);
    expect(streamed.events.map((e) => e.type).filter((t) => t !== "audio-chunk")).toEqual([
      "audio-start",
      "audio-stop",
      "synthesize-stopped",
    ]);
    // Nothing was spoken out of band: the audio was the answer's own.
    expect(speakers()).toHaveLength(0);
  });

  it("takes typed text as a user message, and the same conversation_id continues the same conversation", async () => {
    const { fake, port } = await setup();
    const first = await haHandle(port, { text: "What is on in the kitchen?", conversationId: "01HTYPED" });
    expect(first.answer?.type).toBe("handled");
    const second = await haHandle(port, { text: "And in the hall?", conversationId: "01HTYPED" });
    expect(second.answer?.type).toBe("handled");
    const typed = fake.connections.filter((c) => c.all("conversation.item.create").length > 0);
    expect(typed).toHaveLength(1);
    expect(
      typed[0]!.all("conversation.item.create").map((e) => e.item.type === "message" && e.item.content),
    ).toEqual([
      [{ type: "input_text", text: "What is on in the kitchen?" }],
      [{ type: "input_text", text: "And in the hall?" }],
    ]);
    const other = await haHandle(port, { text: "Hello", conversationId: "01HOTHER" });
    expect(other.answer?.type).toBe("handled");
    expect(fake.connections.filter((c) => c.all("conversation.item.create").length > 0)).toHaveLength(2);
  });

  it("runs a client MCP tool inside handle and answers after it ran", async () => {
    const { fake, port } = await setup();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"lights"}' });
    const stt = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    const h = await haHandle(port, { text: stt.text!, conversationId: "01HTOOL" });
    expect(h.answer?.type).toBe("handled");
    expect(String(h.answer?.data.text)).toBe("The tool said: Echo: lights");
    const [conn] = listeners(fake);
    const out = await conn!.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
    );
    expect(out.item.type === "function_call_output" && out.item.output).toContain("Echo: lights");
  });

  it("a tool nobody approves in time is a denial the model speaks", async () => {
    const { fake, port, approvals } = await setup({ approvalTimeoutS: 1 });
    fake.script({ kind: "function_call", name: "get-sum", arguments: '{"a":1,"b":2}' });
    const pending = haHandle(port, { text: "add one and two", conversationId: "01HAPPROVE" });
    await until(() => approvals.size === 1, 5000, "approval asked");
    expect(approvals.list()[0]).toMatchObject({ server: "everything", tool: "get-sum", mode: "client" });
    const h = await pending;
    expect(h.answer?.type).toBe("handled");
    expect(String(h.answer?.data.text)).toMatch(/^The tool said: .*not_approved.*Nobody approved get-sum/);
  }, 20_000);

  it("a call Home Assistant stops waiting for denies its pending approval: a later Approve runs nothing", async () => {
    const { fake, port, approvals } = await setup({ approvalTimeoutS: 600 });
    fake.script({ kind: "function_call", name: "get-sum", arguments: '{"a":1,"b":2}' });
    const c = await WyomingTestClient.connect(port);
    await c.write("transcript", {
      text: "add one and two",
      language: "en",
      context: { conversation_id: "01HGAVEUP" },
    });
    await until(() => approvals.size === 1, 5000, "approval asked");
    const [pending] = approvals.list();
    // Home Assistant gives up on the call (its pipeline was cancelled, or it timed out first).
    await c.close();
    await until(() => approvals.size === 0, 5000, "approval settled when the call ended");
    expect(approvals.settled(pending!.id)).toMatchObject({
      approve: false,
      source: "cancelled",
      tool: "get-sum",
      reason: expect.stringMatching(/Home Assistant stopped waiting/),
    });
    expect(approvals.answer(pending!.id, true, "ingress")).toBe(false);
    const [conn] = fake.connections.filter((f) => f.all("conversation.item.create").length > 0);
    const out = await conn!.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
    );
    const output = out.item.type === "function_call_output" ? out.item.output : "";
    expect(output).toContain("not_approved");
    expect(output).not.toMatch(/sum.*is 3/i);
  });

  it("waits for an approval past its own limit: the limit follows the approval's timeout", async () => {
    // The call's own limit is 120 s; the approval may take 600 s. The clock jumps past 120 s while the
    // approval is pending (timers run on as in real time otherwise).
    vi.useFakeTimers({
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
      shouldAdvanceTime: true,
    });
    try {
      const { fake, port, approvals } = await setup({ approvalTimeoutS: 600 });
      fake.script({ kind: "function_call", name: "get-sum", arguments: '{"a":1,"b":2}' });
      const c = await WyomingTestClient.connect(port);
      await c.write("transcript", {
        text: "add one and two",
        language: "en",
        context: { conversation_id: "01HSLOWOK" },
      });
      await until(() => approvals.size === 1, 5000, "approval asked");
      await vi.advanceTimersByTimeAsync(125_000);
      await new Promise((r) => setImmediate(r));
      // Still waiting for the person, not given up on.
      const [still] = approvals.list();
      expect(still).toBeDefined();
      expect(approvals.answer(still!.id, true, "ingress")).toBe(true);
      const answer = await c.readUntil(["handled", "not-handled", "error"]);
      await c.close();
      expect(answer?.type).toBe("handled");
      expect(String(answer?.data.text)).toMatch(/^The tool said: .*3/);
    } finally {
      vi.useRealTimers();
    }
  });

  it("answers error with a sentence when the response fails or the upstream is unreachable", async () => {
    const { fake, port } = await setup();
    fake.script({ kind: "failed" });
    const failed = await haHandle(port, { text: "break", conversationId: "01HFAIL" });
    expect(failed.answer?.type).toBe("error");
    expect(failed.answer?.data).toMatchObject({ code: "response_failed" });
    expect(String(failed.answer?.data.text)).toMatch(/could not come up with an answer/);
    await server!.close();
    await assist!.close();
    await engine!.close();
    await fake.close();

    const down = await setup({ openai: { api_key: "sk-wrong", pool_size: 0 } });
    const h = await haHandle(down.port, { text: "hello", conversationId: "01HDOWN" });
    expect(h.answer?.data).toMatchObject({ code: "upstream_unavailable" });
    // The reason in words, as satellites and /readyz give it.
    expect(String(h.answer?.data.text)).toMatch(/cannot answer right now: OpenAI rejected the API key/);
  });
});

describe("text to speech", () => {
  it("streaming: one audio stream for the whole text, from the synthesize copy or else from the chunks", async () => {
    const { fake, port } = await setup();
    const streamed = await haTtsStreaming(port, ["It is ", "seven o'clock."], "cedar");
    expect(streamed.stopped).toBe(true);
    expect(streamed.audio!.equals(speechAudio("It is seven o'clock.", "cedar"))).toBe(true);
    expect(streamed.events.filter((e) => e.type === "audio-start")).toHaveLength(1);
    const creates = fake.connections.flatMap((c) => c.all("response.create"));
    expect(creates).toHaveLength(1);
    expect(creates[0]!.response?.audio?.output?.voice).toBe("cedar");

    // A client that never sends the whole-text copy.
    const c = await WyomingTestClient.connect(port);
    await c.write("synthesize-start");
    await c.write("synthesize-chunk", { text: "Good " });
    await c.write("synthesize-chunk", { text: "morning." });
    await c.write("synthesize-stop");
    expect(await c.readUntil(["synthesize-stopped"])).not.toBeNull();
    const audio = Buffer.concat(c.received.filter((e) => e.type === "audio-chunk").map((e) => e.payload!));
    expect(audio.equals(speechAudio("Good morning."))).toBe(true);
    expect(c.received.map((e) => e.type).filter((t) => t !== "audio-chunk")).toEqual([
      "audio-start",
      "audio-stop",
      "synthesize-stopped",
    ]);
    await c.close();
  });

  it("a voice that is not a Realtime voice falls back to the configured one", async () => {
    const { fake, port } = await setup();
    const r = await haTts(port, "Hello there.", "en_US-lessac-medium");
    expect(r.audio!.equals(speechAudio("Hello there."))).toBe(true);
    const creates = fake.connections.flatMap((c) => c.all("response.create"));
    expect(creates[0]!.response?.audio?.output?.voice).toBe("marin");
  });
});

describe("one assistant, one voice", () => {
  it("an answer asked for in another voice is spoken anew in that voice; the kept audio only in the conversation's own", async () => {
    const { fake, port } = await setup({ fake: { replyTranscript: "The kitchen light is on." } });
    const stt = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    const h = await haHandle(port, { text: stt.text!, conversationId: "01HVOICE" });
    expect(h.answer?.data.text).toBe("The kitchen light is on.");
    const outOfBand = () =>
      fake.connections.flatMap((c) =>
        c.all("response.create").filter((e) => e.response?.conversation === "none"),
      );

    // The pipeline's voice is not the model's (openai.voice is marin): the text is read in cedar.
    const cedar = await haTts(port, "The kitchen light is on.", "cedar");
    expect(cedar.audio!.equals(speechAudio("The kitchen light is on.", "cedar"))).toBe(true);
    expect(cedar.audio!.equals(fake.replyAudio)).toBe(false);
    expect(outOfBand().map((e) => e.response?.audio?.output?.voice)).toEqual(["cedar"]);
    // On a session that had spoken nothing before, so the voice it names is the one it speaks in.
    const speaker = fake.connections.find((c) =>
      c.all("response.create").some((e) => e.response?.audio?.output?.voice === "cedar"),
    )!;
    expect(speaker.all("response.create")).toHaveLength(1);
    const streamed = await haTtsStreaming(port, ["The kitchen ", "light is on."], "cedar");
    expect(streamed.audio!.equals(speechAudio("The kitchen light is on.", "cedar"))).toBe(true);

    // No voice, or the conversation's own: the model's own audio of the answer, nothing spoken anew.
    const plain = await haTts(port, "The kitchen light is on.");
    expect(plain.audio!.equals(fake.replyAudio)).toBe(true);
    const marin = await haTts(port, "The kitchen light is on.", "marin");
    expect(marin.audio!.equals(fake.replyAudio)).toBe(true);
    expect(outOfBand()).toHaveLength(2);
  });
});

describe("multi-turn voice", () => {
  it("a follow-up spoken turn is answered where it was heard, with the earlier turns carried over", async () => {
    const { fake, port } = await setup({ fake: { replyTranscript: "Done." } });
    const first = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    await haHandle(port, { text: first.text!, conversationId: "01HMULTI" });
    const second = await haSttLegacy(port, { language: "en", chunks: chunkPcm(LIVING_ROOM) });
    const h = await haHandle(port, { text: second.text!, conversationId: "01HMULTI" });
    expect(h.answer?.data).toMatchObject({ text: "Done." });
    const [a, b] = listeners(fake);
    expect(a!.all("response.create")).toHaveLength(1);
    expect(b!.all("response.create")).toHaveLength(1);
    // The second conversation was told about the first turn before it answered; the first one ended.
    const told = await b!.waitFor(
      "session.update",
      (e) =>
        e.session.type === "realtime" &&
        !!e.session.instructions?.includes("User: turn on the kitchen light"),
    );
    expect(told.session.type === "realtime" && told.session.instructions).toContain("Assistant: Done.");
    await until(() => a!.closed, 5000, "first conversation ended");
  });
});

describe("the upstream goes away mid-call", () => {
  it("handle answers error at once instead of waiting; speech-to-text too", async () => {
    const { fake, port } = await setup();
    fake.script({ kind: "hang" });
    const pending = haHandle(port, { text: "a question", conversationId: "01HDROP" });
    await until(() => fake.connections.some((c) => c.responseActive), 5000, "response in flight");
    fake.connections.find((c) => c.responseActive)!.drop();
    const h = await pending;
    expect(h.answer?.data).toMatchObject({ code: "upstream_unavailable" });
    expect(String(h.answer?.data.text)).toMatch(/connection to OpenAI was lost/);

    const chunks = chunkPcm(Buffer.concat([KITCHEN, silence16k(2000)]));
    const stt = haSttConcurrent(port, { language: "en", chunks, intervalMs: 5 });
    await until(() => listeners(fake).length > 0, 5000, "audio upstream");
    listeners(fake)[0]!.drop();
    const r = await stt;
    expect(r.text).toBeNull();
    expect(r.error?.data).toMatchObject({ code: "upstream_unavailable" });
  });

  it("a quota error during an answer: handle's error text says why in words", async () => {
    const { fake, port } = await setup();
    fake.script({ kind: "hang" });
    const pending = haHandle(port, { text: "a question", conversationId: "01HQUOTA" });
    await until(() => fake.connections.some((c) => c.responseActive), 5000, "response in flight");
    fake.fault("quota");
    fake.connections
      .find((c) => c.responseActive)!
      .sendError("insufficient_quota", "You exceeded your current quota.", "insufficient_quota");
    const h = await pending;
    expect(h.answer?.data).toMatchObject({ code: "upstream_unavailable" });
    expect(String(h.answer?.data.text)).toBe(
      "The voice assistant cannot answer right now: OpenAI quota exceeded.",
    );
  });

  it("calls in flight when the upstream drops and every reconnect is refused say why in words", async () => {
    const { fake, port } = await setup();
    fake.script({ kind: "hang" });
    const answer = haHandle(port, { text: "a question", conversationId: "01HDROPQUOTA" });
    await until(() => fake.connections.some((c) => c.responseActive), 5000, "response in flight");
    // Home Assistant streams a turn that has not ended yet.
    const chunks = chunkPcm(Buffer.concat([KITCHEN, silence16k(3000)]));
    const stt = haSttConcurrent(port, { language: "en", chunks, intervalMs: 5 });
    await until(() => listeners(fake).length > 0, 5000, "audio upstream");
    fake.fault("quota", { dropOpen: true });
    const [h, r] = await Promise.all([answer, stt]);
    expect(h.answer?.data).toMatchObject({ code: "upstream_unavailable" });
    expect(String(h.answer?.data.text)).toBe(
      "The voice assistant cannot answer right now: OpenAI quota exceeded.",
    );
    expect(r.text).toBeNull();
    expect(r.error?.data).toMatchObject({ code: "upstream_unavailable" });
    expect(String(r.error?.data.text)).toBe(
      "The voice assistant cannot answer right now: OpenAI quota exceeded.",
    );
  });
});

describe("nothing done twice", () => {
  it("an ASR turn never followed by handle creates no response, calls no tool, and its conversation ends", async () => {
    const { fake, port } = await setup({ asrTurnTtlMs: 300 });
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"never"}' });
    const stt = await haSttConcurrent(port, {
      language: "en",
      chunks: chunkPcm(Buffer.concat([KITCHEN, silence16k(1000)])),
    });
    expect(stt.text).toBe("turn on the kitchen light");
    const [conn] = listeners(fake);
    await until(() => conn!.closed, 5000, "unclaimed conversation ended");
    expect(conn!.all("response.create")).toHaveLength(0);
    expect(fake.connections.some((c) => c.all("response.create").length > 0)).toBe(false);
    // Home Assistant then speaks its own answer: read out of band, outside every conversation.
    const tts = await haTts(port, "Turned on the light");
    expect(tts.audio!.equals(speechAudio("Turned on the light"))).toBe(true);
    const creates = fake.connections.flatMap((c) => c.all("response.create"));
    expect(creates).toHaveLength(1);
    expect(creates[0]!.response).toMatchObject({ conversation: "none" });
    expect(creates[0]!.response?.input?.[0]).toMatchObject({
      content: [{ type: "input_text", text: "Turned on the light" }],
    });
    expect(fake.connections.flatMap((c) => c.all("conversation.item.create"))).toHaveLength(0);
  });
});

describe("the right turn", () => {
  it("handle continues the newest transcript of its text; the older one, answered elsewhere, is never answered", async () => {
    // Two speech-to-text calls hear the same words: the first was answered locally by Home Assistant
    // (no conversation call), the second goes to the conversation agent.
    const { fake, port } = await setup({ asrTurnTtlMs: 1500, fake: { transcribe: () => "what time is it" } });
    const older = await haSttLegacy(port, { language: "en", chunks: chunkPcm(KITCHEN) });
    const newer = await haSttLegacy(port, { language: "en", chunks: chunkPcm(LIVING_ROOM) });
    expect([older.text, newer.text]).toEqual(["what time is it", "what time is it"]);
    const h = await haHandle(port, { text: "what time is it", conversationId: "01HNEWEST" });
    expect(h.answer?.type).toBe("handled");
    const appended = (c: FakeConnection): number =>
      c.all("input_audio_buffer.append").reduce((n, e) => n + e.audio.length, 0);
    const [a, b] = listeners(fake);
    const [heardOlder, heardNewer] = appended(a!) < appended(b!) ? [a!, b!] : [b!, a!];
    expect(heardNewer.all("response.create")).toHaveLength(1);
    expect(heardOlder.all("response.create")).toHaveLength(0);
    // The older turn was not consumed by the call: it expires unclaimed and its conversation ends.
    await until(() => heardOlder.closed, 5000, "older turn's conversation ended");
    expect(heardOlder.all("response.create")).toHaveLength(0);
    expect(heardNewer.closed).toBe(false);
  });
});

describe("two satellites at once", () => {
  it("interleaved turns each get their own transcript, answer and audio", async () => {
    const answers = { a: "Kitchen light on.", b: "Living room lights on." };
    const { fake, port } = await setup({ fake: { audioSpeed: 5 } });
    fake.script(
      { kind: "speak", transcript: answers.a, audio: tone(300, 500) },
      { kind: "speak", transcript: answers.b, audio: tone(500, 700) },
    );
    const audioOf: Record<string, Buffer> = { [answers.a]: tone(300, 500), [answers.b]: tone(500, 700) };
    const [sttA, sttB] = await Promise.all([
      haSttConcurrent(port, {
        language: "en",
        chunks: chunkPcm(Buffer.concat([KITCHEN, silence16k(1000)])),
        intervalMs: 2,
      }),
      haSttLegacy(port, { language: "en", chunks: chunkPcm(LIVING_ROOM), intervalMs: 3 }),
    ]);
    expect(sttA.text).toBe("turn on the kitchen light");
    expect(sttB.text).toBe("turn on the living room lights");
    const [hA, hB] = await Promise.all([
      haHandle(port, { text: sttA.text!, conversationId: "01HSATA" }),
      haHandle(port, { text: sttB.text!, conversationId: "01HSATB" }),
    ]);
    const textA = String(hA.answer?.data.text);
    const textB = String(hB.answer?.data.text);
    expect(new Set([textA, textB])).toEqual(new Set([answers.a, answers.b]));
    // Each answer came from the conversation that heard that satellite.
    for (const conn of listeners(fake)) expect(conn.all("response.create")).toHaveLength(1);
    const [ttsA, ttsB] = await Promise.all([haTts(port, textA), haTtsStreaming(port, [textB])]);
    expect(ttsA.audio!.equals(audioOf[textA]!)).toBe(true);
    expect(ttsB.audio!.equals(audioOf[textB]!)).toBe(true);
  });
});
