/**
 * The fake Realtime server itself, driven by a raw `ws` client: auth, GA shapes, list-tools scripting,
 * VAD, scripted turns, active-response conflicts, drop and expiry.
 */
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";
import { tone, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { useFakeUpstream } from "./fake-realtime/fixture.js";
import { waitFor as until } from "./reliability/harness.js";

const upstream = useFakeUpstream();
let fake: FakeRealtimeServer | undefined;
const clients: WebSocket[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.terminate();
});

interface Client {
  ws: WebSocket;
  events: RealtimeServerEvent[];
  send(ev: object): void;
  waitFor(type: RealtimeServerEvent["type"], n?: number, timeoutMs?: number): Promise<RealtimeServerEvent>;
  closed: Promise<{ code: number; reason: string }>;
}

async function connect(
  url: string,
  headers: Record<string, string> = { Authorization: "Bearer sk-test" },
): Promise<Client> {
  const ws = new WebSocket(`${url}?model=gpt-realtime`, { headers });
  clients.push(ws);
  const events: RealtimeServerEvent[] = [];
  const waiters: (() => void)[] = [];
  ws.on("message", (d) => {
    events.push(JSON.parse((d as Buffer).toString("utf8")) as RealtimeServerEvent);
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const waitFor = (type: string, n = 1, timeoutMs = 3000): Promise<RealtimeServerEvent> =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(
        () => reject(new Error(`no ${n}× ${type}; got ${events.map((e) => e.type).join(",")}`)),
        timeoutMs,
      );
      const check = (): void => {
        const found = events.filter((e) => e.type === type);
        if (found.length >= n) {
          clearTimeout(deadline);
          resolve(found[n - 1]!);
        } else waiters.push(check);
      };
      check();
    });
  return { ws, events, send: (ev) => ws.send(JSON.stringify(ev)), waitFor, closed };
}

function refusal(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?model=gpt-realtime`, { headers });
    clients.push(ws);
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("open", () => reject(new Error("should have been refused")));
    ws.on("error", () => undefined);
  });
}

describe("fake realtime server", () => {
  it("refuses a wrong key and a beta header, accepts a bearer key", async () => {
    fake = await upstream.start({ apiKey: "sk-right" });
    expect(await refusal(fake.url, { Authorization: "Bearer sk-wrong" })).toBe(401);
    expect(await refusal(fake.url, { Authorization: "Bearer sk-right", "OpenAI-Beta": "realtime=v1" })).toBe(
      400,
    );
    const c = await connect(fake.url, { Authorization: "Bearer sk-right" });
    const created = await c.waitFor("session.created");
    expect(created.type === "session.created" && created.session.type).toBe("realtime");
    expect(fake.rejected.map((r) => r.status)).toEqual([401, 400]);
    const conn = await fake.nextConnection();
    expect(conn.model).toBe("gpt-realtime");
  });

  it("delays session.created by sessionSetupDelayMs", async () => {
    fake = await upstream.start({ sessionSetupDelayMs: 150 });
    const t0 = performance.now();
    const c = await connect(fake.url);
    await c.waitFor("session.created");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it("holds a spoken reply's output for replyDelayMs after response.created; a cancel in between silences it", async () => {
    fake = await upstream.start({ replyDelayMs: 150 });
    const c = await connect(fake.url);
    await c.waitFor("session.created");
    c.send({ type: "response.create" });
    await c.waitFor("response.created");
    const created = performance.now();
    await c.waitFor("response.output_audio.delta");
    expect(performance.now() - created).toBeGreaterThanOrEqual(140);
    await c.waitFor("response.done");

    c.send({ type: "response.create" });
    await c.waitFor("response.created", 2);
    c.send({ type: "response.cancel" });
    const done = await c.waitFor("response.done", 2);
    expect(done.type === "response.done" && done.response.status).toBe("cancelled");
    await new Promise((r) => setTimeout(r, 250));
    const cancelledId = done.type === "response.done" ? done.response.id : "";
    expect(
      c.events.some((e) => e.type === "response.output_audio.delta" && e.response_id === cancelledId),
    ).toBe(false);
    expect(c.events.filter((e) => e.type === "response.output_item.added")).toHaveLength(1);
  });

  it("answers session.update and lists mcp tools per server_label as scripted", async () => {
    fake = await upstream.start({
      mcp: {
        bad: { outcome: "failed", delayMs: 20 },
        good: { outcome: "completed", tools: [{ name: "x", input_schema: {} }] },
      },
    });
    const c = await connect(fake.url);
    c.send({
      type: "session.update",
      session: {
        type: "realtime",
        instructions: "hi",
        tools: [
          {
            type: "mcp",
            server_label: "good",
            server_url: "https://a.example/mcp",
            require_approval: "never",
          },
          { type: "mcp", server_label: "bad", server_url: "https://b.example/mcp" },
        ],
      },
    });
    const updated = await c.waitFor("session.updated");
    expect(
      updated.type === "session.updated" &&
        updated.session.type === "realtime" &&
        updated.session.instructions,
    ).toBe("hi");
    await c.waitFor("mcp_list_tools.completed");
    await c.waitFor("mcp_list_tools.failed");
    const added = c.events.filter((e) => e.type === "conversation.item.added");
    const labels = added.map((e) =>
      e.type === "conversation.item.added" && e.item.type === "mcp_list_tools" ? e.item.server_label : "",
    );
    expect(labels).toEqual(["good", "bad"]);
  });

  it("rejects a seed-form per-tool approval map", async () => {
    fake = await upstream.start();
    const c = await connect(fake.url);
    c.send({
      type: "session.update",
      session: {
        type: "realtime",
        tools: [
          {
            type: "mcp",
            server_label: "s",
            server_url: "https://s.example",
            require_approval: { turn_on: "never" },
          },
        ],
      },
    });
    const err = await c.waitFor("error");
    expect(err.type === "error" && err.error.code).toBe("unknown_parameter");
  });

  it("simulates server VAD from appended audio and replies with audio", async () => {
    fake = await upstream.start({ audioSpeed: Infinity, replyAudio: tone(300) });
    const c = await connect(fake.url);
    c.send({ type: "input_audio_buffer.append", audio: Buffer.alloc(4800 * 2).toString("base64") }); // 200 ms silence
    c.send({ type: "input_audio_buffer.append", audio: tone(400).toString("base64") });
    await c.waitFor("input_audio_buffer.speech_started");
    c.send({ type: "input_audio_buffer.append", audio: Buffer.alloc(24000).toString("base64") }); // 500 ms silence
    await c.waitFor("input_audio_buffer.speech_stopped");
    const tr = await c.waitFor("conversation.item.input_audio_transcription.completed");
    expect(tr.type === "conversation.item.input_audio_transcription.completed" && tr.transcript).toBe(
      "turn on the kitchen light",
    );
    const done = await c.waitFor("response.done");
    expect(done.type === "response.done" && done.response.status).toBe("completed");
    const pcm = Buffer.concat(
      c.events.flatMap((e) =>
        e.type === "response.output_audio.delta" ? [Buffer.from(e.delta, "base64")] : [],
      ),
    );
    expect(pcm.equals(tone(300))).toBe(true);
    const started = c.events.find((e) => e.type === "input_audio_buffer.speech_started");
    expect(
      started?.type === "input_audio_buffer.speech_started" && started.audio_start_ms,
    ).toBeGreaterThanOrEqual(190);
  });

  it("with keepAppends false, emits and VADs every append but keeps neither the event nor its audio", async () => {
    let heard: number | undefined;
    fake = await upstream.start({
      keepAppends: false,
      audioSpeed: Infinity,
      transcribe: (pcm) => ((heard = pcm.length), "heard"),
    });
    const c = await connect(fake.url);
    const conn = await fake.nextConnection();
    const appends: string[] = [];
    conn.on("event", (e: { type: string; audio?: string }) => {
      if (e.type === "input_audio_buffer.append") appends.push(e.audio!);
    });
    const loud = tone(400).toString("base64");
    c.send({ type: "input_audio_buffer.append", audio: loud });
    await c.waitFor("input_audio_buffer.speech_started");
    c.send({ type: "input_audio_buffer.append", audio: Buffer.alloc(24000).toString("base64") });
    await c.waitFor("input_audio_buffer.speech_stopped");
    await c.waitFor("conversation.item.input_audio_transcription.completed");
    expect(appends).toHaveLength(2);
    expect(appends[0]).toBe(loud);
    expect(conn.received.map((e) => e.type)).not.toContain("input_audio_buffer.append");
    expect(heard).toBe(0);
    // Other client events are still kept.
    c.send({ type: "response.cancel" });
    await conn.waitFor("response.cancel");
  });

  it("forgets closed connections it has handed out, and only those", async () => {
    fake = await upstream.start();
    const first = await connect(fake.url);
    const firstConn = await fake.nextConnection();
    const second = await connect(fake.url);
    const secondConn = await fake.nextConnection();
    const third = await connect(fake.url); // not handed out yet
    await until(() => fake!.connections.length === 3, 3000, "the third connection");
    first.ws.close();
    await until(() => firstConn.closed, 3000, "the first connection closed");
    third.ws.close();
    await until(() => fake!.connections[2]!.closed, 3000, "the third connection closed");
    expect(fake.forgetClosed()).toBe(1);
    expect(fake.connections).toHaveLength(2);
    expect(fake.connections[0]).toBe(secondConn);
    // The next one handed out is still the third, closed or not.
    expect((await fake.nextConnection()).closed).toBe(true);
    second.ws.close();
  });

  it("plays a function call, then speaks the output; flags a second active response", async () => {
    fake = await upstream.start();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}', callId: "call_1" });
    const c = await connect(fake.url);
    c.send({ type: "response.create" });
    const args = await c.waitFor("response.function_call_arguments.done");
    expect(args).toMatchObject({ call_id: "call_1", name: "echo", arguments: '{"message":"hi"}' });
    await c.waitFor("response.done");
    c.send({
      type: "conversation.item.create",
      item: { type: "function_call_output", call_id: "call_1", output: "Echo: hi" },
    });
    c.send({ type: "response.create" });
    c.send({ type: "response.create" });
    const err = await c.waitFor("error");
    expect(err.type === "error" && err.error.code).toBe("conversation_already_has_active_response");
    const said = await c.waitFor("response.output_audio_transcript.done");
    expect(said.type === "response.output_audio_transcript.done" && said.transcript).toBe(
      "The tool said: Echo: hi",
    );
    const conn = await fake.nextConnection();
    expect(conn.all("response.create")).toHaveLength(3);
  });

  it("runs an approved mcp_call after an approval request", async () => {
    fake = await upstream.start({ audioSpeed: Infinity });
    fake.script({
      kind: "mcp_approval",
      serverLabel: "ha",
      name: "HassTurnOn",
      arguments: "{}",
      output: "done",
    });
    const c = await connect(fake.url);
    c.send({ type: "response.create" });
    const item = await c.waitFor("conversation.item.done");
    if (item.type !== "conversation.item.done" || item.item.type !== "mcp_approval_request")
      throw new Error("no approval request");
    c.send({
      type: "conversation.item.create",
      previous_item_id: item.item.id,
      item: { type: "mcp_approval_response", approval_request_id: item.item.id, approve: true },
    });
    await c.waitFor("response.mcp_call.completed");
    await c.waitFor("response.done", 2);
    c.send({ type: "response.create" });
    const said = await c.waitFor("response.output_audio_transcript.done");
    expect(said.type === "response.output_audio_transcript.done" && said.transcript).toBe(
      "The tool said: done",
    );
  });

  it("drops and expires sockets on command", async () => {
    fake = await upstream.start();
    const a = await connect(fake.url);
    const b = await connect(fake.url);
    const ca = await fake.nextConnection();
    const cb = await fake.nextConnection();
    ca.drop();
    expect((await a.closed).code).toBe(1006);
    cb.expire("error");
    const closed = await b.closed;
    expect(closed.code).toBe(1001);
    const err = b.events.find((e) => e.type === "error");
    expect(err?.type === "error" && err.error.code).toBe("session_expired");
  });
});
