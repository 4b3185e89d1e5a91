/**
 * The realtime layer for the Assist pipeline's programs, against the fake Realtime server over loopback:
 * turns detected upstream without a response, explicit commit, respond on demand, typed user messages,
 * the user transcript as its own event in every order the upstream may send it, and out-of-band speech
 * that runs beside other responses and enters no conversation.
 */
import { describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import type { AssistConversation, TurnEvents } from "../src/realtime/conversation.js";
import type { RealtimeEngine } from "../src/realtime/engine.js";
import { LiveConversation } from "../src/realtime/live-conversation.js";
import {
  tone,
  type FakeConnection,
  type FakeRealtimeOptions,
  type FakeRealtimeServer,
} from "./fake-realtime/server.js";
import { useFakeUpstream } from "./fake-realtime/fixture.js";
import {
  ConversationRecorder,
  RecordingTools,
  freshMetrics,
  makeConfig,
  silence,
  silentLogger,
  tool,
  until,
} from "./fake-realtime/helpers.js";

const upstream = useFakeUpstream();
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;

async function setup(fakeOpts: FakeRealtimeOptions = {}, poolSize = 0) {
  fake = await upstream.start({ audioSpeed: 20, ...fakeOpts });
  const tools = new RecordingTools([tool("everything", "echo")]);
  engine = upstream.engine({
    config: makeConfig(
      fake.url,
      {
        mcp_servers: [
          { name: "everything", mode: "client", transport: "stdio", command: "x", require_approval: "never" },
        ],
      },
      { pool_size: poolSize },
    ),
    tools,
    approvals: new ApprovalQueue({ timeoutS: 5 }),
    logger: silentLogger(),
    metrics: freshMetrics(),
  });
  return { fake, engine, tools };
}

/** Records a conversation's turn events in arrival order. */
function turnLog(conv: AssistConversation) {
  const log: { type: keyof TurnEvents; itemId: string; text?: string }[] = [];
  conv.turns.on("input.committed", (e) => log.push({ type: "input.committed", itemId: e.itemId }));
  conv.turns.on("user.transcript", (e) => log.push({ type: "user.transcript", ...e }));
  conv.turns.on("user.transcript.failed", (e) =>
    log.push({ type: "user.transcript.failed", itemId: e.itemId, text: e.message }),
  );
  const next = (type: keyof TurnEvents) =>
    until(() => log.some((e) => e.type === type), 5000, type).then(() => log.find((e) => e.type === type)!);
  return { log, next };
}

/** What the fake sent on this connection, by type (server events are not recorded by the fake). */
function serverTypes(conn: FakeConnection): string[] {
  const sent: string[] = [];
  const orig = conn.send.bind(conn);
  conn.send = (e) => {
    sent.push(e.type);
    orig(e);
  };
  return sent;
}

describe("assist conversations: turns without responses", () => {
  it("ends a spoken turn upstream without a response and delivers the transcript at once", async () => {
    const { fake, engine } = await setup({ userTranscript: "what time is it" });
    const conv = await engine.startAssist({ turn: "server_vad", createResponse: false });
    const rec = new ConversationRecorder(conv);
    const turns = turnLog(conv);
    const conn = await fake.nextConnection();
    await conn.waitFor(
      "session.update",
      (e) =>
        e.session.type === "realtime" &&
        e.session.audio?.input?.turn_detection?.type === "server_vad" &&
        e.session.audio.input.turn_detection.create_response === false,
    );
    conv.appendAudio(silence(100));
    conv.appendAudio(tone(300));
    conv.appendAudio(silence(400));
    const transcript = await turns.next("user.transcript");
    expect(transcript.text).toBe("what time is it");
    expect(turns.log.map((e) => e.type)).toEqual(["input.committed", "user.transcript"]);
    expect(turns.log[0]!.itemId).toBe(transcript.itemId);
    // The fake would have created a response on speech_stopped, before the transcript: none came.
    expect(rec.of("speech.stopped")).toHaveLength(1);
    expect(conn.all("response.create")).toHaveLength(0);
    expect(conn.responseActive).toBe(false);
    expect(rec.of("response.start")).toHaveLength(0);

    conv.respond();
    const end = await rec.waitFor("response.end");
    expect(end.reason).toBe("done");
    expect(rec.audio().equals(fake.replyAudio)).toBe(true);
    expect(conn.all("response.create")).toHaveLength(1);
  });

  it("reconfigures a warm session for turns without responses", async () => {
    const { fake, engine } = await setup({}, 1);
    await engine.warmUp();
    const warm = fake.connections[0]!;
    await engine.startAssist({ turn: "server_vad", createResponse: false });
    const updates = warm
      .all("session.update")
      .map((e) => (e.session.type === "realtime" ? e.session.audio?.input?.turn_detection : undefined));
    // The warm session was opened answering turns itself; taking it switched that off.
    expect(updates[0]).toMatchObject({ create_response: true });
    await warm.waitFor(
      "session.update",
      (e) =>
        e.session.type === "realtime" &&
        e.session.audio?.input?.turn_detection?.type === "server_vad" &&
        e.session.audio.input.turn_detection.create_response === false,
    );
  });

  it("commits on demand (no response), in both transcript orders the upstream uses", async () => {
    for (const order of ["after_item_done", "before_item_done"] as const) {
      const { fake, engine } = await setup({ transcription: { order, delayMs: 20 } });
      const conv = await engine.startAssist({ turn: "server_vad", createResponse: false });
      const turns = turnLog(conv);
      const conn = await fake.nextConnection();
      const sent = serverTypes(conn);
      await conn.waitFor("session.update");
      conv.appendAudio(tone(300));
      conv.commit();
      const t = await turns.next("user.transcript");
      expect(t.text).toBe("turn on the kitchen light");
      await until(() => sent.includes("conversation.item.done"), 2000, "item done");
      const at = (type: string) => sent.indexOf(type);
      if (order === "after_item_done")
        expect(at("conversation.item.done")).toBeLessThan(
          at("conversation.item.input_audio_transcription.completed"),
        );
      else
        expect(at("conversation.item.input_audio_transcription.completed")).toBeLessThan(
          at("conversation.item.done"),
        );
      expect(sent.filter((s) => s === "conversation.item.input_audio_transcription.delta").length).toBe(5);
      expect(conn.all("input_audio_buffer.commit")).toHaveLength(1);
      expect(conn.all("response.create")).toHaveLength(0);
      await engine.close();
      await fake.close();
    }
  });

  it("reports a failed transcription", async () => {
    const { fake, engine } = await setup({ transcription: { fail: true } });
    const conv = await engine.startAssist({ turn: "client" });
    const turns = turnLog(conv);
    const conn = await fake.nextConnection();
    await conn.waitFor("session.update");
    conv.appendAudio(tone(200));
    conv.commit();
    const failed = await turns.next("user.transcript.failed");
    expect(failed.text).toBe("Audio unintelligible.");
    expect(turns.log.some((e) => e.type === "user.transcript")).toBe(false);
  });

  it("answers a typed user message, running a tool on the way", async () => {
    const { fake, engine, tools } = await setup();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}' });
    const conv = await engine.startAssist({ turn: "client" });
    const rec = new ConversationRecorder(conv);
    const conn = await fake.nextConnection();
    conv.sendText("say hi through the tool");
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    const item = await conn.waitFor("conversation.item.create", (e) => e.item.type === "message");
    expect(item.item).toEqual({
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "say hi through the tool" }],
    });
    expect(tools.calls).toEqual([{ name: "echo", args: '{"message":"hi"}' }]);
    expect(said.text).toBe('The tool said: echo ran with {"message":"hi"}');
  });
});

describe("assist conversations: answers and carried context", () => {
  it("reports a failed response and then idle", async () => {
    const { fake, engine } = await setup();
    fake.script({ kind: "failed" });
    const conv = await engine.startAssist({ turn: "client" });
    const failed: string[] = [];
    conv.turns.on("response.failed", (e) => failed.push(e.message));
    const idle = new Promise<void>((resolve) => conv.turns.once("idle", resolve));
    await fake.nextConnection();
    conv.sendText("anything");
    await idle;
    expect(failed).toEqual(["server_error"]);
  });

  it("goes idle only once the tool ran and the spoken answer is done", async () => {
    const { fake, engine, tools } = await setup();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"x"}' });
    const conv = await engine.startAssist({ turn: "client" });
    const rec = new ConversationRecorder(conv);
    await fake.nextConnection();
    const idle = new Promise<void>((resolve) => conv.turns.once("idle", resolve));
    conv.sendText("use the tool");
    await idle;
    expect(tools.calls).toHaveLength(1);
    expect(rec.of("response.end").map((e) => e.reason)).toEqual(["done"]);
    expect(rec.of("transcript").filter((t) => t.role === "assistant" && t.final)).toHaveLength(1);
  });

  it("prepends another conversation's turns and tells the model about them", async () => {
    const { fake, engine } = await setup();
    const conv = await engine.startAssist({ turn: "server_vad", createResponse: false });
    const conn = await fake.nextConnection();
    await conn.waitFor("session.update");
    conv.prependHistory([
      { role: "user", text: "turn on the kitchen light" },
      { role: "assistant", text: "The kitchen light is on." },
    ]);
    const update = await conn.waitFor(
      "session.update",
      (e) => e.session.type === "realtime" && !!e.session.instructions?.includes("User: "),
    );
    expect(update.session.type === "realtime" && update.session.instructions).toMatch(
      /User: turn on the kitchen light\nAssistant: The kitchen light is on\./,
    );
    // Turn detection is left as it was (no response on end of turn).
    expect(update.session.type === "realtime" && update.session.audio).toBeUndefined();
    expect(conv.history.map((t) => t.role)).toEqual(["user", "assistant"]);
  });
});

describe("out-of-band speech", () => {
  const speechAudio = (text: string): Buffer => tone(100 + 10 * text.length, 200 + text.length * 7);

  it("speaks text verbatim through one warm speaker session, concurrently, outside every conversation", async () => {
    const { fake, engine } = await setup({ speechAudio }, 1);
    await engine.warmUp();
    const warm = fake.connections[0]!;
    const sent = serverTypes(warm);
    const a: Buffer[] = [];
    const b: Buffer[] = [];
    await Promise.all([
      engine.speak("The kitchen light is on.", { onAudio: (pcm) => a.push(pcm) }),
      engine.speak("Good night.", { voice: "marin", onAudio: (pcm) => b.push(pcm) }),
    ]);
    expect(Buffer.concat(a).equals(speechAudio("The kitchen light is on."))).toBe(true);
    expect(Buffer.concat(b).equals(speechAudio("Good night."))).toBe(true);
    // Both on the warm session (the pool refilled with a second socket).
    const creates = warm.all("response.create");
    expect(creates).toHaveLength(2);
    expect(creates[0]!.response).toMatchObject({
      conversation: "none",
      output_modalities: ["audio"],
      audio: { output: { voice: "marin" } },
      tool_choice: "none",
      input: [
        {
          type: "message",
          role: "user",
          content: [{ type: "input_text", text: "The kitchen light is on." }],
        },
      ],
    });
    expect(creates[0]!.response?.instructions).toMatch(/exactly as written/);
    expect(sent).not.toContain("conversation.item.added");
    expect(sent.filter((s) => s === "response.done")).toHaveLength(2);
    // The speaker session does not listen.
    const off = await warm.waitFor(
      "session.update",
      (e) => e.session.type === "realtime" && e.session.audio?.input?.turn_detection === null,
    );
    expect(off).toBeDefined();
    await engine.speak("again", { onAudio: () => undefined });
    expect(fake.connections.filter((c) => c.all("response.create").length > 0)).toHaveLength(1);
  });

  it("runs beside a conversation's own response on the same upstream without touching it", async () => {
    const { fake } = await setup({ speechAudio, audioSpeed: 2 });
    const conv = await engine!.startAssist({ turn: "client" });
    const rec = new ConversationRecorder(conv);
    const conn = await fake.nextConnection();
    conv.sendText("hello");
    await rec.waitFor("response.start");
    if (!(conv instanceof LiveConversation) || !conv.session) throw new Error("no live session");
    const heard: Buffer[] = [];
    await conv.session.speak("Beside you.", { onAudio: (pcm) => heard.push(pcm) });
    expect(Buffer.concat(heard).equals(speechAudio("Beside you."))).toBe(true);
    const end = await rec.waitFor("response.end");
    expect(end.reason).toBe("done");
    expect(rec.audio().equals(fake.replyAudio)).toBe(true);
    expect(conn.all("response.create")).toHaveLength(2);
  });

  it("speaks again on a new session when the speaker session goes away before any audio", async () => {
    const { fake, engine } = await setup({ speechAudio, replyDelayMs: 200 });
    const heard: Buffer[] = [];
    const speaking = engine.speak("Still here.", { onAudio: (pcm) => heard.push(pcm) });
    const first = await fake.nextConnection();
    await first.waitFor("response.create");
    first.drop();
    await speaking;
    expect(Buffer.concat(heard).equals(speechAudio("Still here."))).toBe(true);
    expect(fake.connections).toHaveLength(2);
  });

  it("rejects when the speech is cancelled or the upstream goes away", async () => {
    const { fake, engine } = await setup({ speechAudio, audioSpeed: 1 });
    const ac = new AbortController();
    const first: Buffer[] = [];
    const cancelled = engine.speak("A long sentence to cut short.", {
      onAudio: (pcm) => {
        first.push(pcm);
        ac.abort();
      },
      signal: ac.signal,
    });
    await expect(cancelled).rejects.toThrow(/cancelled/);
    const conn = fake.connections[0]!;
    await conn.waitFor("response.cancel");
    expect(first.length).toBeGreaterThan(0);

    const dropped = engine.speak("Never finished.", { onAudio: () => conn.drop() });
    await expect(dropped).rejects.toThrow(/ended/);
    // A new speaker session serves the next request.
    const ok: Buffer[] = [];
    await engine.speak("Back again.", { onAudio: (pcm) => ok.push(pcm) });
    expect(Buffer.concat(ok).equals(speechAudio("Back again."))).toBe(true);
    expect(fake.connections).toHaveLength(2);
  });
});
