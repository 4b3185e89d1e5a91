/**
 * A scripted conversation through the real parts — a `ws` satellite → the satellite route and bridge
 * → the RealtimeEngine → the fake Realtime server, with a real client MCP server (server-everything
 * over stdio) and the approval queue — then `/metrics` of the satellite-port server through
 * `promtool check metrics`, and the values the conversation dictates.
 */
import type { FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { createSatelliteServer } from "../src/http/server.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import { createMetrics, observeApprovals } from "../src/metrics.js";
import { RealtimeEngine } from "../src/realtime/engine.js";
import { SatelliteAuth } from "../src/satellite/auth.js";
import { satelliteRoute } from "../src/satellite/route.js";
import { makeConfig, metricValue, silentLogger } from "./fake-realtime/helpers.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { checkMetrics } from "./helpers/promtool.js";
import { skipWithout } from "./helpers/tools.js";
import { SHARED_TOKEN, TestSatellite, tonePcm } from "./satellite-helpers.js";

const METRICS_TOKEN = "metrics-token-0123456789abcdef";

let fake: FakeRealtimeServer | undefined;
let engine: RealtimeEngine | undefined;
let tools: ClientMcpManager | undefined;
let server: FastifyInstance | undefined;
let satellite: TestSatellite | undefined;

afterEach(async () => {
  satellite?.close();
  await server?.close();
  await engine?.close();
  await tools?.close();
  await fake?.close();
  satellite = undefined;
  server = engine = tools = fake = undefined;
});

describe("metrics after a scripted conversation", () => {
  it("passes promtool and counts the turn, the tool call, the approval and the error", async (ctx) => {
    fake = await startFakeRealtime({ audioSpeed: 8 });
    const logger = silentLogger();
    const metrics = createMetrics(new Registry(), { version: "0.0.0-test" });
    const config = makeConfig(fake.url, {
      mcp_servers: [
        {
          name: "everything",
          mode: "client",
          transport: "stdio",
          command: "mcp-server-everything",
          args: ["stdio"],
          require_approval: { "get-sum": "always", echo: "never" },
        },
      ],
    });
    tools = new ClientMcpManager({ servers: config.mcp_servers, logger, metrics });
    await tools.connectAll();
    expect(tools.tools().map((t) => t.name)).toContain("get-sum");
    const approvals = new ApprovalQueue({ timeoutS: 10 });
    observeApprovals(metrics, approvals);
    engine = new RealtimeEngine({ config, tools, approvals, logger, metrics });
    server = createSatelliteServer({
      logger,
      registry: metrics.registry,
      metricsToken: METRICS_TOKEN,
      readiness: () => ({ ready: true }),
    });
    await server.register(satelliteRoute, {
      conversations: engine,
      approvals,
      auth: new SatelliteAuth({ token: SHARED_TOKEN }),
      logger,
      metrics,
    });
    await server.listen({ host: "127.0.0.1", port: 0 });
    const { port } = server.server.address() as { port: number };

    // The model asks for get-sum; the policy says a person decides; the person approves on the device.
    fake.script({ kind: "function_call", name: "get-sum", arguments: '{"a":2,"b":40}' });
    satellite = await TestSatellite.connect(`ws://127.0.0.1:${port}/api/v1/satellite`);
    await satellite.hello({ turn: "client" });
    satellite.send({ type: "turn.start" });
    const upstream = await fake.nextConnection();
    await upstream.waitFor("session.update");
    await satellite.waitJson("state", (m) => m.value === "listening", 5000);
    const speech = tonePcm(300, 16000);
    for (let i = 0; i < speech.length; i += 640) satellite.sendAudio(speech.subarray(i, i + 640));
    await expect
      .poll(() => upstream.all("input_audio_buffer.append").length, { timeout: 5000 })
      .toBeGreaterThan(0);
    satellite.send({ type: "turn.end" });
    const request = await satellite.waitJson("approval.request", () => true, 15_000);
    expect(request).toMatchObject({ server: "everything", tool: "get-sum" });
    satellite.send({ type: "approval.reply", id: request.id, approve: true });
    await satellite.waitJson("tool", (m) => m.status === "completed", 15_000);
    await satellite.waitJson("response.end", (m) => m.reason === "done", 15_000);
    await satellite.waitFor((f) => f.binary !== undefined, 5000);
    // A bad frame: an odd number of audio bytes.
    satellite.sendAudio(Buffer.alloc(3));
    await satellite.waitJson("error", (m) => m.code === "bad_audio", 5000);

    const refused = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(refused.status).toBe(401);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const exposition = await res.text();

    const call = { server: "everything", tool: "get-sum", mode: "client" };
    expect(await metricValue(metrics, "openvoice_tool_calls_total", { ...call, outcome: "success" })).toBe(1);
    expect(await metricValue(metrics, "openvoice_tool_calls_total", { ...call, outcome: "denied" })).toBe(0);
    expect(exposition).toMatch(
      /^openvoice_tool_call_duration_seconds_count\{server="everything",mode="client"\} 1$/m,
    );
    expect(
      await metricValue(metrics, "openvoice_approvals_total", {
        server: "everything",
        decision: "approved",
        source: "satellite",
      }),
    ).toBe(1);
    expect(await metricValue(metrics, "openvoice_approvals_total")).toBe(1);
    expect(await metricValue(metrics, "openvoice_approvals_pending")).toBe(0);
    expect(await metricValue(metrics, "openvoice_errors_total", { code: "bad_audio" })).toBe(1);
    expect(
      await metricValue(metrics, "openvoice_mcp_server_up", { server: "everything", mode: "client" }),
    ).toBe(1);
    expect(await metricValue(metrics, "openvoice_satellites_connected")).toBe(1);
    expect(exposition).toMatch(/^openvoice_turn_first_audio_seconds_count 1$/m);
    expect(await metricValue(metrics, "openvoice_audio_seconds_total", { direction: "in" })).toBeGreaterThan(
      0.25,
    );
    expect(await metricValue(metrics, "openvoice_audio_seconds_total", { direction: "out" })).toBeGreaterThan(
      0,
    );
    expect(await metricValue(metrics, "openvoice_tokens_total")).toBeGreaterThan(0);
    expect(await metricValue(metrics, "openvoice_realtime_connects_total", { outcome: "ok" })).toBe(1);

    // Last, so that the counts above are checked on a machine without promtool too.
    skipWithout(ctx, "promtool", "promtool check metrics of the exposition after the conversation");
    const report = await checkMetrics(exposition);
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
  });
});
