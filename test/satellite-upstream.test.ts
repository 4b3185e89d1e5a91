/**
 * What a satellite is told when the upstream misbehaves (issue 11 cases 1, 5, 6): the reason a
 * conversation cannot start, in words; a failed answer as an `error` plus `response.end` `failed`; and
 * an idle timer that waits for running tools. The first tests use the in-memory conversation fake; the
 * last runs the real engine against the fake Realtime server with a tool slower than the idle timeout.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import type { ToolCallOutcome } from "../src/mcp/types.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { UPSTREAM_MESSAGES, UpstreamUnavailableError } from "../src/realtime/upstream-error.js";
import { RecordingTools, freshMetrics, makeConfig, silentLogger, tool } from "./fake-realtime/helpers.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
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
        mcp_servers: [
          {
            name: "everything",
            mode: "client",
            transport: "stdio",
            command: "mcp-server-everything",
            require_approval: "never",
          },
        ],
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
