/**
 * Function-call round trips through the real client MCP manager and a real stdio
 * `mcp-server-everything` child, with the fake Realtime server as the model.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { McpServerSchema } from "../src/config/model.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import type { RealtimeEngine } from "../src/realtime/engine.js";
import { tone, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { useFakeUpstream } from "./fake-realtime/fixture.js";
import {
  ConversationRecorder,
  freshMetrics,
  makeConfig,
  metricValue,
  silentLogger,
  until,
} from "./fake-realtime/helpers.js";

const EVERYTHING_BIN = new URL("../node_modules/.bin/mcp-server-everything", import.meta.url).pathname;

const everything = McpServerSchema.parse({
  name: "everything",
  mode: "client",
  transport: "stdio",
  command: EVERYTHING_BIN,
  args: ["stdio"],
  require_approval: { echo: "never" },
  timeout: 20,
});

let manager: ClientMcpManager;
const upstream = useFakeUpstream();
let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
const metrics = freshMetrics();

beforeAll(async () => {
  manager = new ClientMcpManager({ servers: [everything], logger: silentLogger(), metrics });
  await manager.connectAll();
  await until(() => manager.tools().some((t) => t.name === "echo"), 15_000, "everything's tools");
});

afterAll(async () => {
  const pids = manager.childPids();
  await manager.close();
  const alive = pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  expect(alive).toEqual([]);
});

async function conversation(approvals = new ApprovalQueue({ timeoutS: 5 })) {
  fake = await upstream.start({ audioSpeed: Infinity });
  const config = makeConfig(fake.url, { mcp_servers: [everything] });
  engine = upstream.engine({ config, tools: manager, approvals, logger: silentLogger(), metrics });
  const conv = await engine.start({ turn: "client" });
  const rec = new ConversationRecorder(conv);
  const conn = await fake.nextConnection();
  return { conv, rec, conn, fake, approvals };
}

describe("function calls through a real stdio MCP server", () => {
  it("offers the server's tools and answers a call with its real output", async () => {
    const { conv, rec, conn, fake } = await conversation();
    const update = await conn.waitFor("session.update");
    const names =
      update.session.type === "realtime"
        ? (update.session.tools ?? []).map((t) => (t.type === "function" ? t.name : ""))
        : [];
    expect(names).toContain("echo");
    expect(names).toContain("get-sum");
    fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hello from the model"}' });
    conv.appendAudio(tone(200));
    conv.commitAndRespond();
    const said = await rec.waitFor("transcript", (t) => t.role === "assistant" && t.final, 1, 10_000);
    expect(said.text).toBe("The tool said: Echo: hello from the model");
    const out = await conn.waitFor("conversation.item.create", (e) => e.item.type === "function_call_output");
    expect(out.item.type === "function_call_output" && out.item.output).toBe("Echo: hello from the model");
    expect(rec.of("tool").map((t) => t.status)).toEqual(["started", "completed"]);
  });

  it("asks before a tool the policy does not allow, then calls it", async () => {
    const { conv, rec, conn, fake, approvals } = await conversation();
    fake.script({ kind: "function_call", name: "get-sum", arguments: '{"a":2,"b":3}' });
    conv.appendAudio(tone(200));
    conv.commitAndRespond();
    const req = await rec.waitFor("approval.request");
    expect(req).toMatchObject({ server: "everything", tool: "get-sum", mode: "client" });
    approvals.answer(req.id, true, "ingress");
    const out = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
      10_000,
    );
    expect(out.item.type === "function_call_output" && out.item.output).toContain("5");
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", { tool: "get-sum", outcome: "success" }),
    ).toBe(1);
  });

  it("a bad argument string comes back to the model as an error output, not silence", async () => {
    const { conv, conn, fake } = await conversation();
    fake.script({ kind: "function_call", name: "echo", arguments: "{not json" });
    conv.appendAudio(tone(200));
    conv.commitAndRespond();
    const out = await conn.waitFor(
      "conversation.item.create",
      (e) => e.item.type === "function_call_output",
      10_000,
    );
    expect(out.item.type === "function_call_output" && out.item.output).toMatch(/not valid JSON/);
    await conn.waitFor("response.create", () => true, 5000);
    expect(conn.all("response.create")).toHaveLength(2);
  });
});
