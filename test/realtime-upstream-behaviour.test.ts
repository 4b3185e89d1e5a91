/**
 * What the real Realtime API sends that the happy path does not: fatal errors on sessions nobody
 * listens to, an error answering our `session.update`, native MCP calls that need no approval (both
 * event orders), list-tools outcomes before their item, a busy conversation refusing our
 * `response.create`, failed responses, and client tool calls that outlive an upstream drop. Each runs
 * the engine against the fake Realtime server over loopback WebSockets.
 */
import { describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import type { ConfigInput } from "../src/config/model.js";
import type { ToolCallOutcome } from "../src/mcp/types.js";
import type { Conversation } from "../src/realtime/conversation.js";
import type { RealtimeEngine } from "../src/realtime/engine.js";
import { type RealtimeLimits } from "../src/realtime/engine.js";
import type { LiveConversation } from "../src/realtime/live-conversation.js";
import { UpstreamUnavailableError } from "../src/realtime/upstream-error.js";
import { tone, type FakeRealtimeOptions, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { useFakeUpstream } from "./fake-realtime/fixture.js";
import {
  ConversationRecorder,
  RecordingTools,
  clientEverything,
  freshMetrics,
  makeConfig,
  metricValue,
  silentLogger,
  tool,
  until,
} from "./fake-realtime/helpers.js";

const upstream = useFakeUpstream();
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;

interface Setup {
  fakeOpts?: FakeRealtimeOptions;
  config?: Partial<ConfigInput>;
  openai?: Partial<ConfigInput["openai"]>;
  tools?: RecordingTools;
  limits?: Partial<RealtimeLimits>;
}

async function setup(s: Setup = {}) {
  fake = await upstream.start({ audioSpeed: 20, ...s.fakeOpts });
  const tools = s.tools ?? new RecordingTools([tool("everything", "echo")]);
  const metrics = freshMetrics();
  const config = makeConfig(
    fake.url,
    {
      mcp_servers: [clientEverything("never")],
      ...s.config,
    },
    s.openai,
  );
  engine = upstream.engine({
    config,
    tools,
    approvals: new ApprovalQueue({ timeoutS: 5 }),
    logger: silentLogger(),
    metrics,
    limits: { reconnectDelaysMs: [0, 50, 100], ...s.limits },
  });
  return { fake, engine, tools, metrics };
}

async function talk(f: FakeRealtimeServer, e: RealtimeEngine) {
  const conv = await e.start({ turn: "client", satelliteId: "kitchen" });
  const rec = new ConversationRecorder(conv);
  const conn = f.connections.at(-1)!;
  return { conv, rec, conn };
}

function say(conv: Conversation): void {
  conv.appendAudio(tone(200));
  conv.commitAndRespond();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const NATIVE_NEVER: Partial<ConfigInput> = {
  mcp_servers: [
    { name: "ha", mode: "native", server_url: "https://ha.example/mcp", require_approval: "never" },
  ],
};

describe("case 1: fatal upstream errors never take the process down", () => {
  it("insufficient_quota on a warm-pool session: no throw; status says why; the pool backs off", async () => {
    const { fake, engine } = await setup({ openai: { pool_size: 1 } });
    await engine.warmUp();
    expect(engine.status().pool.ready).toBe(1);
    // From now on every new socket is answered with the same error.
    fake.opts.refuseSession = () => ({
      code: "insufficient_quota",
      type: "insufficient_quota",
      message: "You exceeded your current quota.",
    });
    fake.connections[0]!.sendError(
      "insufficient_quota",
      "You exceeded your current quota.",
      "insufficient_quota",
    );
    await until(() => engine.status().upstream.state === "unreachable", 3000, "unreachable");
    expect(engine.status().upstream).toMatchObject({ lastError: "OpenAI quota exceeded", kind: "quota" });
    expect(engine.upstreamProblem()).toMatch(/^OpenAI quota exceeded \(check the plan and billing/);
    // Backoff: 0.5 s, 1 s, 2 s … — a few attempts in 2.5 s, not a hot loop.
    const at = fake.connections.length;
    await sleep(2500);
    const attempts = fake.connections.length - at;
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(3);
    const err = await engine.start({ turn: "client" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamUnavailableError);
    expect(err).toMatchObject({ code: "upstream_unavailable", message: "OpenAI quota exceeded" });
  });

  it("an error as the socket's first event (before session.updated) rejects start() in words", async () => {
    const { engine } = await setup({
      fakeOpts: {
        refuseSession: () => ({ code: "invalid_api_key", message: "Incorrect API key provided." }),
      },
    });
    const t0 = Date.now();
    const err = await engine.start({ turn: "client" }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toMatchObject({
      code: "upstream_unavailable",
      kind: "auth",
      message: "OpenAI rejected the API key",
      hint: "check openai.api_key",
    });
    expect(engine.status().upstream).toMatchObject({
      state: "unreachable",
      lastError: "OpenAI rejected the API key",
    });
  });

  it("the pool retries with backoff and recovers once the upstream accepts sessions again", async () => {
    let refusals = 0;
    const { fake, engine } = await setup({
      openai: { pool_size: 1 },
      fakeOpts: {
        refuseSession: (attempt) => {
          if (attempt > 3) return undefined;
          refusals++;
          return { code: "insufficient_quota", type: "insufficient_quota" };
        },
      },
    });
    await engine.warmUp();
    expect(engine.status().upstream.state).toBe("unreachable");
    await until(() => engine.status().pool.ready === 1, 10_000, "pool refilled after recovery");
    expect(refusals).toBe(3);
    expect(engine.status().upstream).toEqual({ state: "connected" });
    expect(engine.upstreamProblem()).toBeNull();
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    expect(await rec.waitFor("response.end")).toMatchObject({ reason: "done" });
  });
});

describe("case 4: an error answering our session.update", () => {
  it("fails the start at once with the upstream's message, and status shows it", async () => {
    const { engine, fake } = await setup({
      openai: { transcription_model: "whisper-9" },
      limits: { readyTimeoutMs: 5000 },
    });
    const t0 = Date.now();
    const err = await engine.start({ turn: "client" }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toMatchObject({ code: "upstream_unavailable", kind: "config" });
    expect((err as Error).message).toMatch(
      /^OpenAI rejected the session configuration: Invalid value: 'whisper-9'/,
    );
    const update = fake.connections[0]!.all("session.update")[0]!;
    expect(update.event_id).toEqual(expect.any(String));
    expect(engine.status().upstream.lastError).toContain("whisper-9");
  });
});

describe("case 2 and 3: native MCP calls that need no approval", () => {
  for (const order of ["completed_first", "item_first"] as const) {
    it(`speaks the result with exactly one follow-up response (${order})`, async () => {
      const { fake, engine, metrics } = await setup({ config: NATIVE_NEVER });
      fake.script({
        kind: "mcp_call",
        serverLabel: "ha",
        name: "HassTurnOn",
        arguments: "{}",
        output: "Turned on",
        order,
      });
      const { conv, rec, conn } = await talk(fake, engine);
      say(conv);
      const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 3000);
      expect(said.text).toBe("The tool said: Turned on");
      await rec.waitFor("response.end", (e) => e.reason === "done");
      await sleep(200);
      expect(conn.all("response.create")).toHaveLength(2);
      expect(rec.of("tool")).toEqual([
        { name: "HassTurnOn", server: "ha", status: "started" },
        { name: "HassTurnOn", server: "ha", status: "completed" },
      ]);
      expect(
        await metricValue(metrics, "openvoice_tool_calls_total", { mode: "native", outcome: "success" }),
      ).toBe(1);
      expect(rec.of("error")).toEqual([]);
    });
  }

  it("an approved call that the upstream runs only on the next response.create is asked for", async () => {
    const { fake, engine } = await setup({
      config: NATIVE_NEVER,
      fakeOpts: { approvedCallRunsOn: "response.create" },
    });
    fake.script({
      kind: "mcp_approval",
      serverLabel: "ha",
      name: "HassTurnOn",
      arguments: "{}",
      output: "Turned on",
    });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 5000);
    expect(said.text).toBe("The tool said: Turned on");
    // The turn, the one that runs the approved call, the one that speaks its result.
    expect(conn.all("response.create")).toHaveLength(3);
  });

  it("a failed call is spoken about too", async () => {
    const { fake, engine } = await setup({ config: NATIVE_NEVER });
    fake.script({ kind: "mcp_call", serverLabel: "ha", name: "HassTurnOn", arguments: "{}", fail: true });
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 3000);
    expect(said.text).toBe("The tool said: the tool failed");
    expect(rec.of("tool").map((t) => t.status)).toEqual(["started", "failed"]);
  });

  for (const script of [{ order: "outcome_first" }, { itemVia: "done" }] as const) {
    it(`tracks list-tools from any event order (${JSON.stringify(script)})`, async () => {
      const { engine } = await setup({
        config: NATIVE_NEVER,
        fakeOpts: { mcp: { ha: { outcome: "completed", ...script } } },
        limits: { readyTimeoutMs: 4000 },
      });
      const t0 = Date.now();
      const conv = await engine.start({ turn: "client" });
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(engine.status().native[0]!.sessions).toEqual({ listed: 1 });
      await conv.end("done");
    });
  }
});

describe("case 3: conversation_already_has_active_response", () => {
  it("keeps our response.create and sends it once the active response is done", async () => {
    const { fake, engine } = await setup();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}' });
    const { conv, rec, conn } = await talk(fake, engine);
    // The server starts a response of its own just as our tool output arrives.
    conn.on("event", (e) => {
      if (e.type === "conversation.item.create" && e.item.type === "function_call_output")
        conn.startServerResponse({ kind: "speak", transcript: "One moment.", audio: tone(300) });
    });
    say(conv);
    const said = await rec.waitFor(
      "transcript",
      (t) => t.role === "assistant" && t.final && t.text.startsWith("The tool said"),
      1,
      4000,
    );
    expect(said.text).toBe('The tool said: echo ran with {"message":"hi"}');
    const creates = conn.all("response.create");
    expect(creates).toHaveLength(3); // the turn, the refused one, the one sent after "One moment."
    expect(new Set(creates.map((c) => c.event_id)).size).toBe(3);
  });
});

describe("case 3: a response.create refused for another reason", () => {
  it("does not block the next turn's response", async () => {
    const { fake, engine } = await setup();
    fake.script({ kind: "error", code: "invalid_value", message: "Invalid response parameters." });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    await until(() => conn.all("response.create").length === 1, 2000, "first response.create");
    await sleep(100);
    say(conv);
    expect(await rec.waitFor("response.end", () => true, 1, 3000)).toMatchObject({ reason: "done" });
    expect(conn.all("response.create")).toHaveLength(2);
  });
});

describe("case 5: a failed response", () => {
  it("ends the turn with a spoken-friendly error; the next turn works", async () => {
    const { fake, engine } = await setup();
    fake.script({ kind: "failed", status: "failed", error: { type: "server_error", code: "server_error" } });
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    const end = await rec.waitFor("response.end", () => true, 1, 3000);
    expect(end.reason).toBe("failed");
    expect(rec.of("error")).toEqual([
      {
        code: "response_failed",
        message: "Sorry, something went wrong while answering. Please try again.",
        fatal: false,
      },
    ]);
    // The error comes before the end of the turn.
    const order = rec.events.map((e) => e.type).filter((t) => t === "error" || t === "response.end");
    expect(order).toEqual(["error", "response.end"]);
    say(conv);
    expect(await rec.waitFor("response.end", () => true, 2, 3000)).toMatchObject({ reason: "done" });
  });

  it("an incomplete response (max_output_tokens) before any audio says so", async () => {
    const { fake, engine } = await setup();
    fake.script({ kind: "failed", status: "incomplete", reason: "max_output_tokens" });
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    await rec.waitFor("response.end", (e) => e.reason === "failed", 1, 3000);
    expect(rec.of("error")[0]?.message).toBe("Sorry, that answer got too long. Please ask again.");
  });
});

/** Tools whose calls wait for `release()`. */
class GatedTools extends RecordingTools {
  #release: (() => void) | undefined;
  readonly started: Promise<void>;
  #onStart!: () => void;
  constructor() {
    super([tool("everything", "echo")]);
    this.started = new Promise((r) => (this.#onStart = r));
  }
  release(): void {
    this.#release?.();
  }
  override async callTool(name: string, argsJson: string): Promise<ToolCallOutcome> {
    const gate = new Promise<void>((r) => (this.#release = r));
    this.#onStart();
    await gate;
    return super.callTool(name, argsJson);
  }
}

describe("case 8: a client tool call in flight during an upstream reconnect", () => {
  it("its result reaches the new session and is spoken", async () => {
    const tools = new GatedTools();
    const { fake, engine } = await setup({ tools });
    fake.script({
      kind: "function_call",
      name: "echo",
      arguments: '{"message":"slow"}',
      callId: "call_slow",
    });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    await tools.started;
    conn.drop();
    await until(
      () =>
        fake.connections.length === 2 &&
        engine.status().conversations === 1 &&
        fake.connections[1]!.all("session.update").length > 0,
      3000,
      "reconnected",
    );
    const next = fake.connections[1]!;
    await until(() => engine.status().sessions.active === 1, 3000, "new session active");
    tools.release();
    const output = await next.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
    );
    expect(output.item).toMatchObject({ call_id: "call_slow", output: 'echo ran with {"message":"slow"}' });
    // The call itself is an item of the new session first, so the output has something to answer.
    const items = next.all("conversation.item.create").map((e) => e.item.type);
    expect(items.slice(0, 2)).toEqual(["function_call", "function_call_output"]);
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 3000);
    expect(said.text).toBe('The tool said: echo ran with {"message":"slow"}');
    expect(rec.of("tool").map((t) => t.status)).toEqual(["started", "completed"]);
  });
});

describe("case 7: barge-in after a rotation", () => {
  it("truncates in the session that owns the item, and the summary keeps only what was heard", async () => {
    const { fake, engine } = await setup({
      fakeOpts: { audioSpeed: Infinity },
      limits: { sessionMaxMs: 2000, rotateBeforeMs: 1500, idleRecycleMs: 60_000 },
    });
    const words = "one two three four five six seven eight";
    fake.script({ kind: "speak", transcript: words, audio: tone(4000) });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    await rec.waitFor("response.end", (e) => e.reason === "done");
    const itemId = rec.of("audio")[0]!.itemId;
    // The reply arrived at once and plays for 4 s; the rotation swaps sessions meanwhile.
    await until(() => fake.connections.length === 2 && !fake.connections[1]!.closed, 3000, "rotated");
    const next = fake.connections[1]!;
    await until(() => engine.status().sessions.active === 2 || conn.closed, 3000, "swap");
    expect(conn.closed).toBe(false); // kept while its reply plays
    conv.interrupt(itemId, 1000);
    const truncate = await conn.waitFor("conversation.item.truncate");
    expect(truncate).toMatchObject({ item_id: itemId, audio_end_ms: 1000 });
    expect(next.all("conversation.item.truncate")).toEqual([]);
    // A quarter was heard: the history and the new session's instructions keep only that.
    const history = (conv as LiveConversation).history;
    expect(history.filter((t) => t.role === "assistant").at(-1)?.text).toBe("one two…");
    const update = await next.waitFor(
      "session.update",
      (e) => e.session.type === "realtime" && (e.session.instructions ?? "").includes("one two…"),
    );
    expect(update.session.type === "realtime" && update.session.instructions).not.toContain("eight");
    await until(() => conn.closed, 3000, "retired session closed after the barge-in");
  });
});

describe("an abandoned turn (cancelTurn)", () => {
  it("a client call still running hands its output over, and no answer to that turn is asked for", async () => {
    const tools = new GatedTools();
    const { fake, engine } = await setup({ tools });
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"x"}', callId: "call_gone" });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    await tools.started;
    conv.cancelTurn();
    tools.release();
    const output = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
    );
    expect(output.item).toMatchObject({ call_id: "call_gone" });
    await sleep(300);
    expect(conn.all("input_audio_buffer.clear")).toHaveLength(1);
    // Only the turn's own response.create; nothing answers the abandoned turn's call.
    expect(conn.all("response.create")).toHaveLength(1);
    expect(rec.of("audio")).toHaveLength(0);
    expect(conn.responseActive).toBe(false);
  });
});
