/**
 * The realtime engine against the fake Realtime server over real loopback WebSockets: voice turns,
 * warm pool, client function calls with approvals, native approvals, failover, reconnect with context,
 * expiry, proactive rotation, tolerated and fatal errors, runtime tool changes.
 */
import { describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import type { ConfigInput, McpServerConfig } from "../src/config/model.js";
import { McpServerSchema } from "../src/config/model.js";
import { LimitError } from "../src/errors.js";
import type { Conversation } from "../src/realtime/conversation.js";
import type { RealtimeEngine } from "../src/realtime/engine.js";
import { type RealtimeEngineOptions } from "../src/realtime/engine.js";
import { UpstreamConnectError } from "../src/realtime/transport.js";
import { UpstreamUnavailableError } from "../src/realtime/upstream-error.js";
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
  clientEverything,
  freshMetrics,
  makeConfig,
  metricValue,
  silence,
  silentLogger,
  tool,
  until,
} from "./fake-realtime/helpers.js";

const upstream = useFakeUpstream();
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;

const CLIENT_EVERYTHING = clientEverything({ echo: "never" });

interface Setup {
  fakeOpts?: FakeRealtimeOptions;
  config?: Partial<ConfigInput>;
  openai?: Partial<ConfigInput["openai"]>;
  tools?: RecordingTools;
  approvalTimeoutS?: number;
  engine?: Partial<RealtimeEngineOptions>;
}

async function setup(s: Setup = {}) {
  fake = await upstream.start({ audioSpeed: 20, ...s.fakeOpts });
  const tools = s.tools ?? new RecordingTools([tool("everything", "echo"), tool("everything", "add")]);
  const approvals = new ApprovalQueue({ timeoutS: s.approvalTimeoutS ?? 5 });
  const metrics = freshMetrics();
  const config = makeConfig(fake.url, { mcp_servers: [CLIENT_EVERYTHING], ...s.config }, s.openai);
  engine = upstream.engine({ config, tools, approvals, logger: silentLogger(), metrics, ...s.engine });
  return { fake, engine, tools, approvals, metrics, config };
}

async function talk(
  fake: FakeRealtimeServer,
  engine: RealtimeEngine,
  turn: "server_vad" | "client" = "client",
) {
  const conv = await engine.start({ turn, satelliteId: "kitchen" });
  const rec = new ConversationRecorder(conv);
  const conn = await fake.nextConnection();
  return { conv, rec, conn };
}

/** One client-committed user turn. */
function say(conv: Conversation): void {
  conv.appendAudio(tone(200));
  conv.commitAndRespond();
}

const sessionUpdates = (conn: FakeConnection) => conn.all("session.update").map((e) => e.session);
const toolNames = (conn: FakeConnection, i: number): string[] => {
  const s = sessionUpdates(conn)[i];
  if (!s || s.type !== "realtime") return [];
  return (s.tools ?? []).map((t) => (t.type === "mcp" ? `mcp:${t.server_label}` : `function:${t.name}`));
};

describe("realtime engine: turns and pool", () => {
  it("runs a server-VAD voice turn end to end and counts usage", async () => {
    const { fake, engine, metrics } = await setup();
    const { conv, rec, conn } = await talk(fake, engine, "server_vad");
    const update = await conn.waitFor("session.update");
    expect(update.session.type).toBe("realtime");
    expect(toolNames(conn, 0)).toEqual(["function:add", "function:echo"]);
    expect(conn.headers["openai-beta"]).toBeUndefined();
    expect(conn.model).toBe("gpt-realtime");

    conv.appendAudio(silence(100));
    conv.appendAudio(tone(300));
    conv.appendAudio(silence(400));
    const end = await rec.waitFor("response.end");
    expect(end.reason).toBe("done");
    expect(rec.of("speech.started")).toHaveLength(1);
    expect(rec.of("speech.stopped")).toHaveLength(1);
    expect(rec.audio().equals(fake.replyAudio)).toBe(true);
    expect(rec.of("response.start")[0]!.id).toBe(end.id);
    expect(rec.of("audio")[0]!.responseId).toBe(end.id);
    expect(rec.of("transcript").filter((t) => t.final)).toEqual(
      expect.arrayContaining([
        { role: "assistant", text: "Sure, done.", final: true },
        { role: "user", text: "turn on the kitchen light", final: true },
      ]),
    );
    // The fake bills the committed turn at 10 audio tokens a second and the reply at 20.
    expect(
      await metricValue(metrics, "openvoice_tokens_total", { kind: "input_audio" }),
    ).toBeGreaterThanOrEqual(4);
    expect(await metricValue(metrics, "openvoice_tokens_total", { kind: "output_audio" })).toBe(
      fake.replyAudio.length / 2400,
    );
    expect(await metricValue(metrics, "openvoice_realtime_connects_total", { outcome: "ok" })).toBe(1);
    expect(await metricValue(metrics, "openvoice_realtime_sessions", { state: "active" })).toBe(1);
    await conv.end("done");
    expect(rec.of("closed")).toEqual([{ reason: "done" }]);
    await until(() => conn.closed, 2000, "upstream socket closed");
    expect(await metricValue(metrics, "openvoice_realtime_sessions")).toBe(0);
  });

  it("takes a warm session (tools listed ahead of use) and refills the pool", async () => {
    const { fake, engine } = await setup({
      openai: { pool_size: 1 },
      config: {
        mcp_servers: [
          CLIENT_EVERYTHING,
          { name: "wiki", mode: "native", server_url: "https://wiki.example/mcp" },
        ],
      },
      fakeOpts: { mcp: { wiki: { outcome: "completed", delayMs: 50 } } },
    });
    await engine.warmUp();
    expect(fake.connections).toHaveLength(1);
    const warm = fake.connections[0]!;
    expect(warm.listed.has("wiki")).toBe(true);
    expect(engine.status().pool.ready).toBe(1);
    expect(engine.status().native[0]!.sessions).toEqual({ listed: 1 });

    const conv = await engine.start({ turn: "client" });
    const rec = new ConversationRecorder(conv);
    await until(() => fake.connections.length === 2 && engine.status().pool.ready === 1, 3000, "pool refill");
    // The conversation took the warm socket; client turns switch its VAD off.
    const turnOff = await warm.waitFor(
      "session.update",
      (e) => e.session.type === "realtime" && e.session.audio?.input?.turn_detection === null,
    );
    expect(turnOff).toBeDefined();
    say(conv);
    await rec.waitFor("response.end");
    expect(warm.all("input_audio_buffer.commit")).toHaveLength(1);
    expect(fake.connections[1]!.all("input_audio_buffer.append")).toHaveLength(0);
    expect(engine.status().sessions).toMatchObject({ active: 1, ready: 1 });
  });

  it("rejects a start with a typed error when the key is refused", async () => {
    const { engine, metrics } = await setup({ openai: { api_key: "sk-wrong" } });
    const err = await engine.start({ turn: "client" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamUnavailableError);
    expect(err).toMatchObject({
      code: "upstream_unavailable",
      message: "OpenAI rejected the API key",
      status: 401,
    });
    expect((err as Error).cause).toBeInstanceOf(UpstreamConnectError);
    expect(await metricValue(metrics, "openvoice_realtime_connects_total", { outcome: "refused" })).toBe(1);
    expect(engine.status().upstream.state).toBe("unreachable");
  });
});

describe("realtime engine: the conversation cap (satellites.max_conversations)", () => {
  it("refuses a start beyond the cap with a typed error, counting starts still connecting, and admits again once one ends", async () => {
    const { engine, fake } = await setup({
      config: { satellites: { max_conversations: 2 } },
      fakeOpts: { sessionSetupDelayMs: 300 },
    });
    // Two starts in flight at once take both places before either has a session.
    const first = engine.start({ turn: "client", satelliteId: "a" });
    const second = engine.start({ turn: "client", satelliteId: "b" });
    const refused = await engine.start({ turn: "client", satelliteId: "c" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(LimitError);
    expect((refused as LimitError).code).toBe("too_many_conversations");
    expect((refused as LimitError).message).toContain("2");
    const [a, b] = await Promise.all([first, second]);
    expect(engine.status().conversations).toBe(2);
    expect(await engine.start({ turn: "client" }).catch((e: unknown) => e)).toBeInstanceOf(LimitError);
    // Nothing was opened upstream for the refused starts.
    expect(fake.connections.length).toBe(2);
    await a.end("done");
    const c = await engine.start({ turn: "client", satelliteId: "c" });
    expect(engine.status().conversations).toBe(2);
    await Promise.all([b.end("done"), c.end("done")]);
  });

  it("a start that fails upstream gives its place back", async () => {
    const { engine } = await setup({
      config: { satellites: { max_conversations: 1 } },
      openai: { api_key: "sk-wrong" },
    });
    // Each refusal is the upstream's (not the cap's): the failed start gave its place back.
    for (let i = 0; i < 3; i++)
      expect(await engine.start({ turn: "client" }).catch((e: unknown) => e)).toBeInstanceOf(
        UpstreamUnavailableError,
      );
  });
});

describe("realtime engine: client tools and approvals", () => {
  it("routes a function call to the client tools and speaks the answer (policy never)", async () => {
    const { fake, engine, tools } = await setup();
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}' });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(tools.calls).toEqual([{ name: "echo", args: '{"message":"hi"}' }]);
    const out = await conn.waitFor("conversation.item.create", (e) => e.item.type === "function_call_output");
    expect(out.item).toMatchObject({
      type: "function_call_output",
      output: 'echo ran with {"message":"hi"}',
    });
    expect(said.text).toBe('The tool said: echo ran with {"message":"hi"}');
    expect(rec.of("tool")).toEqual([
      { name: "echo", server: "everything", status: "started" },
      { name: "echo", server: "everything", status: "completed" },
    ]);
    expect(rec.of("approval.request")).toHaveLength(0);
  });

  it("asks a person before a client tool under `always`, and runs it once approved", async () => {
    const { fake, engine, tools, approvals } = await setup();
    fake.script({ kind: "function_call", name: "add", arguments: '{"a":1,"b":2}' });
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    const req = await rec.waitFor("approval.request");
    expect(req).toMatchObject({
      server: "everything",
      tool: "add",
      mode: "client",
      satelliteId: "kitchen",
      arguments: '{"a":1,"b":2}',
    });
    expect(tools.calls).toHaveLength(0);
    // Waiting for a person is not running: no "started" before the answer.
    expect(rec.of("tool")).toEqual([]);
    expect(approvals.list().map((p) => p.id)).toEqual([req.id]);
    expect(approvals.answer(req.id, true, "satellite")).toBe(true);
    expect(approvals.answer(req.id, false, "ingress")).toBe(false); // first answer wins
    await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(tools.calls.map((c) => c.name)).toEqual(["add"]);
    expect(
      rec.events
        .filter((e) => e.type === "approval.request" || e.type === "tool")
        .map((e) => (e.type === "tool" ? `tool:${(e.args[0] as { status: string }).status}` : e.type)),
    ).toEqual(["approval.request", "tool:started", "tool:completed"]);
  });

  it("answers the model with the reason when a person declines or nobody answers", async () => {
    const { fake, engine, tools, approvals, metrics } = await setup({ approvalTimeoutS: 0.3 });
    fake.script(
      { kind: "function_call", name: "add", arguments: "{}" },
      { kind: "function_call", name: "add", arguments: "{}" },
    );
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    const req = await rec.waitFor("approval.request");
    approvals.answer(req.id, false, "ingress");
    const first = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
    );
    expect(first.item.type === "function_call_output" && first.item.output).toContain(
      "A person declined add",
    );
    await rec.waitFor("response.end", () => true, 1);
    say(conv);
    await rec.waitFor("approval.request", () => true, 2);
    const second = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output" && e.item.output.includes("Nobody approved"),
      3000,
    );
    expect(second.item.type === "function_call_output" && second.item.output).toContain("within 0.3 seconds");
    expect(tools.calls).toHaveLength(0);
    // A denied call never ran: it fails without having "started", as a denied native call does.
    expect(rec.of("tool").map((t) => t.status)).toEqual(["failed", "failed"]);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", { outcome: "denied", mode: "client" }),
    ).toBe(2);
  });
});

describe("realtime engine: native approvals", () => {
  const native = (require_approval: McpServerConfig["require_approval"]): Partial<ConfigInput> => ({
    mcp_servers: [
      CLIENT_EVERYTHING,
      { name: "ha", mode: "native", server_url: "https://ha.example/mcp", require_approval },
    ],
  });
  const approvalResponses = (conn: FakeConnection) =>
    conn
      .all("conversation.item.create")
      .flatMap((e) => (e.item.type === "mcp_approval_response" ? [e.item] : []));

  it("`never`: approves at once, then asks for the spoken answer after the mcp_call", async () => {
    const { fake, engine, metrics } = await setup({ config: native("never") });
    fake.script({
      kind: "mcp_approval",
      serverLabel: "ha",
      name: "HassTurnOn",
      arguments: '{"name":"kitchen"}',
      output: "Turned on",
    });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(said.text).toBe("The tool said: Turned on");
    expect(approvalResponses(conn)).toEqual([expect.objectContaining({ approve: true })]);
    expect(rec.of("approval.request")).toHaveLength(0);
    expect(rec.of("tool")).toEqual([
      { name: "HassTurnOn", server: "ha", status: "started" },
      { name: "HassTurnOn", server: "ha", status: "completed" },
    ]);
    expect(
      await metricValue(metrics, "openvoice_approvals_total", { source: "policy", decision: "approved" }),
    ).toBe(1);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", {
        server: "ha",
        mode: "native",
        outcome: "success",
      }),
    ).toBe(1);
  });

  it("`always`: waits for a person; the answer is relayed upstream", async () => {
    const { fake, engine, approvals } = await setup({ config: native("always") });
    fake.script({
      kind: "mcp_approval",
      serverLabel: "ha",
      name: "HassTurnOn",
      arguments: "{}",
      output: "ok",
    });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    const req = await rec.waitFor("approval.request");
    expect(req).toMatchObject({ server: "ha", tool: "HassTurnOn", mode: "native" });
    await new Promise((r) => setTimeout(r, 100));
    expect(approvalResponses(conn)).toHaveLength(0); // nothing approved by itself
    approvals.answer(req.id, true, "ingress");
    await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(approvalResponses(conn)).toEqual([
      expect.objectContaining({ approval_request_id: req.id, approve: true }),
    ]);
  });

  it("`always` with no answer: denies with a reason and lets the model speak", async () => {
    const { fake, engine } = await setup({ config: native("always"), approvalTimeoutS: 0.3 });
    fake.script({ kind: "mcp_approval", serverLabel: "ha", name: "HassUnlock", arguments: "{}" });
    const { conv, rec, conn } = await talk(fake, engine);
    say(conv);
    await rec.waitFor("approval.request");
    await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 3000);
    const [resp] = approvalResponses(conn);
    expect(resp).toMatchObject({ approve: false });
    expect(resp!.reason).toContain("Nobody approved HassUnlock within 0.3 seconds");
    expect(conn.all("response.create").length).toBe(2);
  });

  it("per-tool map: listed `never` tools pass, the rest are asked", async () => {
    const { fake, engine, approvals } = await setup({ config: native({ HassTurnOn: "never" }) });
    fake.script(
      { kind: "mcp_approval", serverLabel: "ha", name: "HassTurnOn", arguments: "{}" },
      { kind: "mcp_approval", serverLabel: "ha", name: "HassUnlock", arguments: "{}" },
    );
    const { conv, rec, conn } = await talk(fake, engine);
    const update = sessionUpdates(conn)[0];
    const ha = update?.type === "realtime" ? update.tools?.find((t) => t.type === "mcp") : undefined;
    expect(ha?.type === "mcp" && ha.require_approval).toEqual({ never: { tool_names: ["HassTurnOn"] } });
    say(conv);
    await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(rec.of("approval.request")).toHaveLength(0);
    say(conv);
    const req = await rec.waitFor("approval.request");
    expect(req.tool).toBe("HassUnlock");
    approvals.answer(req.id, false, "satellite");
    await until(() => approvalResponses(conn).length === 2, 2000, "second approval response");
    expect(approvalResponses(conn).map((r) => r.approve)).toEqual([true, false]);
  });
});

describe("realtime engine: failover and runtime changes", () => {
  it("moves a native server whose tools cannot be listed to its client route, for that session", async () => {
    const tools = new RecordingTools([tool("everything", "echo")]);
    const route = McpServerSchema.parse({
      name: "ha",
      mode: "client",
      transport: "http",
      server_url: "http://supervisor/core/api/mcp",
      authorization: "Bearer supervisor-token",
      require_approval: "never",
    });
    const { fake, engine, metrics } = await setup({
      tools,
      config: {
        mcp_servers: [
          CLIENT_EVERYTHING,
          { name: "ha", mode: "native", server_url: "https://ha.example/mcp", require_approval: "never" },
        ],
      },
      fakeOpts: { mcp: { ha: { outcome: "failed", delayMs: 20 } } },
      engine: { failoverRoutes: new Map([["ha", route]]) },
    });
    fake.script({ kind: "function_call", name: "HassTurnOn", arguments: "{}" });
    const { conv, rec, conn } = await talk(fake, engine);
    expect(toolNames(conn, 0)).toEqual(["mcp:ha", "function:echo"]);
    await until(
      () => !toolNames(conn, sessionUpdates(conn).length - 1).includes("mcp:ha"),
      2000,
      "tools re-sent",
    );
    expect(toolNames(conn, sessionUpdates(conn).length - 1)).toEqual([
      "function:echo",
      "function:HassTurnOn",
    ]);
    // Never offered both ways at once.
    for (let i = 0; i < sessionUpdates(conn).length; i++)
      expect(toolNames(conn, i).filter((n) => n.endsWith("ha") || n.endsWith("HassTurnOn"))).toHaveLength(1);
    expect(tools.added.map((c) => [c.name, c.mode, c.server_url])).toEqual([
      ["ha", "client", "http://supervisor/core/api/mcp"],
    ]);
    expect(await metricValue(metrics, "openvoice_mcp_failovers_total", { server: "ha" })).toBe(1);
    expect(await metricValue(metrics, "openvoice_mcp_server_up", { server: "ha", mode: "native" })).toBe(0);
    expect(engine.status().native[0]).toMatchObject({
      name: "ha",
      failedOver: true,
      sessions: { failed_over: 1 },
    });
    say(conv);
    await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final);
    expect(tools.calls.map((c) => c.name)).toEqual(["HassTurnOn"]);
  });

  it("a native server with no client route stays out, and the session is still usable", async () => {
    const { fake, engine, metrics } = await setup({
      config: { mcp_servers: [{ name: "wiki", mode: "native", server_url: "https://wiki.example/mcp" }] },
      fakeOpts: { mcp: { wiki: { outcome: "failed" } } },
    });
    const { conv, rec } = await talk(fake, engine);
    say(conv);
    await rec.waitFor("response.end");
    expect(await metricValue(metrics, "openvoice_mcp_failovers_total")).toBe(0);
    expect(engine.status().native[0]!.sessions).toEqual({ failed: 1 });
    expect(engine.serverTarget.status()[0]).toMatchObject({ name: "wiki", mode: "native", state: "down" });
  });

  it("re-sends session.update when a native server is toggled or the client tools change", async () => {
    const tools = new RecordingTools([tool("everything", "echo")]);
    const { fake, engine } = await setup({
      tools,
      config: {
        mcp_servers: [
          CLIENT_EVERYTHING,
          { name: "wiki", mode: "native", server_url: "https://wiki.example/mcp" },
        ],
      },
    });
    const { conn } = await talk(fake, engine);
    expect(toolNames(conn, 0)).toEqual(["mcp:wiki", "function:echo"]);
    expect(engine.setServerEnabled("wiki", false)).toBe(true);
    await until(() => sessionUpdates(conn).length === 2, 2000, "update after disable");
    expect(toolNames(conn, 1)).toEqual(["function:echo"]);
    tools.setTools([tool("everything", "echo"), tool("everything", "sum")]);
    await until(() => sessionUpdates(conn).length === 3, 2000, "update after tools change");
    expect(toolNames(conn, 2)).toEqual(["function:echo", "function:sum"]);
    engine.setServerEnabled("wiki", true);
    await until(() => sessionUpdates(conn).length === 4, 2000, "update after enable");
    expect(toolNames(conn, 3)).toEqual(["mcp:wiki", "function:echo", "function:sum"]);
    expect(engine.setServerEnabled("nope", true)).toBe(false);
    expect(engine.serverTarget.status()).toEqual([expect.objectContaining({ name: "wiki", enabled: true })]);
  });
});

describe("realtime engine: reconnect, expiry, rotation, errors", () => {
  async function firstTurn(conv: Conversation, rec: ConversationRecorder): Promise<void> {
    say(conv);
    await rec.waitFor("response.end");
    await rec.waitFor("transcript", (t) => t.role === "user");
  }

  it("carries the conversation over an upstream drop mid-turn, with the recent turns as context", async () => {
    const { fake, engine, metrics } = await setup({ fakeOpts: { audioSpeed: 2 } });
    const { conv, rec, conn } = await talk(fake, engine);
    await firstTurn(conv, rec);
    fake.script({ kind: "speak", audio: tone(3000) });
    say(conv);
    await rec.waitFor("response.start", () => true, 2);
    await rec.waitFor("audio", () => true, rec.of("audio").length + 1);
    conn.drop();
    const failed = await rec.waitFor("response.end", (e) => e.reason === "failed");
    expect(failed.id).toBe(rec.of("response.start")[1]!.id);
    const next = await fake.nextConnection();
    const update = await next.waitFor("session.update");
    const instructions = update.session.type === "realtime" ? (update.session.instructions ?? "") : "";
    expect(instructions).toContain("User: turn on the kitchen light");
    expect(instructions).toContain("Assistant: Sure, done.");
    await until(
      async () => (await metricValue(metrics, "openvoice_realtime_reconnects_total")) === 1,
      2000,
      "reconnect",
    );
    say(conv);
    await rec.waitFor("response.end", (e) => e.reason === "done", 2);
    expect(next.all("input_audio_buffer.commit")).toHaveLength(1);
    expect(rec.of("closed")).toHaveLength(0);
  });

  for (const how of ["close", "error"] as const) {
    it(`reconnects after expiry (${how === "close" ? "close 1001" : "session_expired"})`, async () => {
      const { fake, engine, metrics } = await setup();
      const { conv, rec, conn } = await talk(fake, engine);
      await firstTurn(conv, rec);
      conn.expire(how);
      const next = await fake.nextConnection();
      const update = await next.waitFor("session.update");
      expect(update.session.type === "realtime" && update.session.instructions).toContain(
        "User: turn on the kitchen light",
      );
      await until(
        async () => (await metricValue(metrics, "openvoice_realtime_reconnects_total")) === 1,
        2000,
        "reconnect",
      );
      say(conv);
      await rec.waitFor("response.end", () => true, 2);
      expect(rec.of("closed")).toHaveLength(0);
      expect(rec.of("error")).toHaveLength(0);
    });
  }

  it("rotates proactively before the limit, between turns", async () => {
    const { fake, engine, metrics } = await setup({
      engine: { limits: { sessionMaxMs: 1600, rotateBeforeMs: 1000 } },
      fakeOpts: { audioSpeed: 1 },
    });
    const { conv, rec, conn } = await talk(fake, engine);
    await firstTurn(conv, rec);
    // A long reply is playing when rotation is due: the swap waits for the end of the turn.
    fake.script({ kind: "speak", audio: tone(1500) });
    say(conv);
    const next = await fake.nextConnection(3000);
    await next.waitFor("session.update");
    await new Promise((r) => setTimeout(r, 50));
    expect(conn.closed).toBe(false);
    await rec.waitFor("response.end", () => true, 2, 5000);
    await until(() => conn.closed, 2000, "old session closed");
    expect(conn.closeInfo?.code).toBe(1000);
    const instructions = sessionUpdates(next)[0];
    expect(instructions?.type === "realtime" && instructions.instructions).toContain(
      "Assistant: Sure, done.",
    );
    expect(await metricValue(metrics, "openvoice_realtime_session_rotations_total")).toBeGreaterThanOrEqual(
      1,
    );
    expect(await metricValue(metrics, "openvoice_realtime_reconnects_total")).toBe(0);
    say(conv);
    await rec.waitFor("response.end", () => true, 3);
    expect(conn.all("input_audio_buffer.commit")).toHaveLength(2);
    expect(fake.connections.reduce((n, c) => n + c.all("input_audio_buffer.commit").length, 0)).toBe(3);
    await conv.end("bye");
  });

  it("tolerates conversation_already_has_active_response", async () => {
    const { fake, engine, metrics } = await setup();
    const { conv, rec, conn } = await talk(fake, engine);
    fake.script({ kind: "speak", audio: tone(2000) });
    say(conv);
    await rec.waitFor("response.start");
    // A stray response.create while one is active: the upstream refuses it with this error.
    conn.sendError("conversation_already_has_active_response", "Conversation already has an active response");
    await rec.waitFor("response.end");
    await firstTurn(conv, rec).catch(() => undefined);
    expect(rec.of("error")).toHaveLength(0);
    expect(rec.of("closed")).toHaveLength(0);
    expect(
      await metricValue(metrics, "openvoice_errors_total", {
        code: "upstream_conversation_already_has_active_response",
      }),
    ).toBe(1);
    say(conv);
    await rec.waitFor("response.end", () => true, 2);
  });

  it("ends the conversation cleanly on a fatal upstream error", async () => {
    const { fake, engine, metrics } = await setup();
    const { rec, conn } = await talk(fake, engine);
    conn.sendError("invalid_api_key", "Incorrect API key provided");
    const err = await rec.waitFor("error");
    expect(err).toMatchObject({ code: "upstream_unavailable", fatal: true });
    await rec.waitFor("closed");
    await until(() => conn.closed, 2000, "socket closed");
    expect(fake.connections).toHaveLength(1); // no reconnect after a fatal error
    expect(await metricValue(metrics, "openvoice_conversations_active")).toBe(0);
  });

  it("close() ends conversations and every upstream socket", async () => {
    const { fake, engine } = await setup({ openai: { pool_size: 2 } });
    await engine.warmUp();
    const { rec } = await talk(fake, engine);
    await engine.close();
    expect(rec.of("closed")).toEqual([{ reason: "shutdown" }]);
    await until(() => fake.open.length === 0, 3000, "all sockets closed");
  });
});
