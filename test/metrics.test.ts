/**
 * The metrics registry: names, units, buckets and label sets (DESIGN §7), `promtool check metrics`
 * with zero findings (process metrics included), token usage by kind, zero-initialised series and
 * the approval observer driven by a real ApprovalQueue.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RealtimeResponseUsage } from "openai/resources/realtime/realtime";
import { Registry, type Counter, type Gauge, type Histogram } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { SATELLITE_ERRORS } from "../src/errors.js";
import {
  AUDIO_DIRECTIONS,
  LATENCY_BUCKETS,
  TOKEN_KINDS,
  TOOL_CALL_OUTCOMES,
  createMetrics,
  initialiseServerSeries,
  initialiseToolSeries,
  observeApprovals,
  recordTokenUsage,
  type Metrics,
} from "../src/metrics.js";
import { checkMetrics, metricTypes, requireBinary, run } from "./helpers/promtool.js";
import { lacks } from "./helpers/tools.js";

/** DESIGN §7: the metrics every deployment can rely on, with their types and label names. */
const REQUIRED: Record<string, { type: string; labels: string[] }> = {
  openvoice_satellites_connected: { type: "gauge", labels: [] },
  openvoice_conversations_active: { type: "gauge", labels: [] },
  openvoice_realtime_sessions: { type: "gauge", labels: ["state"] },
  openvoice_realtime_connects_total: { type: "counter", labels: ["outcome"] },
  openvoice_realtime_session_rotations_total: { type: "counter", labels: [] },
  openvoice_turn_first_audio_seconds: { type: "histogram", labels: [] },
  openvoice_tool_calls_total: { type: "counter", labels: ["server", "tool", "mode", "outcome"] },
  openvoice_tool_call_duration_seconds: { type: "histogram", labels: ["server", "mode"] },
  openvoice_mcp_server_up: { type: "gauge", labels: ["server", "mode"] },
  openvoice_mcp_failovers_total: { type: "counter", labels: ["server"] },
  openvoice_approvals_total: { type: "counter", labels: ["server", "decision", "source"] },
  openvoice_audio_seconds_total: { type: "counter", labels: ["direction"] },
  openvoice_tokens_total: { type: "counter", labels: ["kind"] },
  openvoice_errors_total: { type: "counter", labels: ["code"] },
  openvoice_cost_usd_total: { type: "counter", labels: ["device", "route"] },
  openvoice_budget_usd: { type: "gauge", labels: [] },
  openvoice_budget_spent_ratio: { type: "gauge", labels: [] },
  openvoice_budget_warn: { type: "gauge", labels: [] },
};

/** Label names that stay low-cardinality: configured names, fixed vocabularies, device ids. */
const LOW_CARDINALITY_LABELS = new Set([
  "device",
  "route",
  "server",
  "tool",
  "mode",
  "outcome",
  "state",
  "decision",
  "source",
  "direction",
  "kind",
  "code",
  "version",
  "satellite",
  "program",
  "stage",
  "dialect",
  // ESPHome voice devices: the configured or discovered ones, a handful per home.
  "device",
]);

type Labels = Record<string, string | number>;

async function valueOf(
  metric: Counter<string> | Gauge<string>,
  labels: Labels = {},
): Promise<number | undefined> {
  const { values } = await metric.get();
  const want = Object.entries(labels);
  const hit = values.find(
    (v) =>
      Object.keys(v.labels).length === want.length &&
      want.every(([k, val]) => String(v.labels[k]) === String(val)),
  );
  return hit?.value;
}

async function histogramCount(metric: Histogram<string>, labels: Labels = {}): Promise<number | undefined> {
  const { values } = await metric.get();
  const want = Object.entries(labels);
  const hit = values.find(
    (v) =>
      v.metricName?.endsWith("_count") === true &&
      want.every(([k, val]) => String(v.labels[k]) === String(val)),
  );
  return hit?.value;
}

let queues: ApprovalQueue[] = [];
afterEach(() => {
  for (const q of queues) q.cancel();
  queues = [];
});

describe("metric declarations", () => {
  it("declares every DESIGN §7 metric with its type and label names", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const declared = await m.registry.getMetricsAsJSON();
    for (const [name, spec] of Object.entries(REQUIRED)) {
      const metric = declared.find((d) => d.name === name);
      expect(metric, name).toBeDefined();
      expect(String(metric!.type), name).toBe(spec.type);
      const single = m.registry.getSingleMetric(name) as unknown as { labelNames: string[] };
      expect([...single.labelNames].sort(), name).toEqual([...spec.labels].sort());
    }
  });

  it("follows the naming rules: prefix, _total counters, base units, help, low-cardinality labels", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    for (const metric of await m.registry.getMetricsAsJSON()) {
      expect(metric.name).toMatch(/^openvoice_[a-z0-9_]+$/);
      expect(metric.help.length, metric.name).toBeGreaterThan(10);
      const type = String(metric.type);
      if (type === "counter") expect(metric.name).toMatch(/_total$/);
      else expect(metric.name).not.toMatch(/_total$/);
      if (type === "histogram") expect(metric.name).toMatch(/_seconds$/);
      expect(metric.name).not.toMatch(/_(ms|milliseconds|kb|mb|minutes|hours)(_|$)/);
      const single = m.registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] };
      for (const label of single.labelNames)
        expect(LOW_CARDINALITY_LABELS, `${metric.name}{${label}}`).toContain(label);
    }
  });

  it("uses voice-latency buckets from 10 ms to 10 s on every histogram", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    expect(LATENCY_BUCKETS[0]).toBe(0.01);
    expect(LATENCY_BUCKETS.at(-1)).toBe(10);
    expect([...LATENCY_BUCKETS].sort((a, b) => a - b)).toEqual(LATENCY_BUCKETS);
    m.turnFirstAudio.observe(0.42);
    m.toolCallDuration.observe({ server: "ha", mode: "client" }, 0.042);
    const text = await m.registry.metrics();
    for (const name of ["openvoice_turn_first_audio_seconds", "openvoice_tool_call_duration_seconds"]) {
      const les = [...text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"`, "gm"))].map(
        (x) => x[1],
      );
      expect(new Set(les), name).toEqual(new Set([...LATENCY_BUCKETS.map(String), "+Inf"]));
    }
    expect(text).toMatch(/^openvoice_turn_first_audio_seconds_bucket\{le="0.5"\} 1$/m);
    expect(text).toMatch(/^openvoice_turn_first_audio_seconds_bucket\{le="0.3"\} 0$/m);
  });

  it("zero-initialises token kinds, audio directions and satellite error codes", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    for (const kind of TOKEN_KINDS) expect(await valueOf(m.tokens, { kind }), kind).toBe(0);
    for (const direction of AUDIO_DIRECTIONS) expect(await valueOf(m.audioSeconds, { direction })).toBe(0);
    for (const code of Object.keys(SATELLITE_ERRORS)) expect(await valueOf(m.errors, { code }), code).toBe(0);
  });

  it("takes the frame counters' audio seconds into audio_seconds_total on every read, once", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const mic = m.audioSecondsBy.in;
    for (let i = 0; i < 50; i++) mic.inc(0.02);
    m.audioSecondsBy.out.inc(0.5);
    m.audioSeconds.inc({ direction: "out" }, 0.25);
    expect(await valueOf(m.audioSeconds, { direction: "in" })).toBeCloseTo(1, 12);
    expect(await valueOf(m.audioSeconds, { direction: "out" })).toBe(0.75);
    // Read again with nothing new: the same totals; a scrape sees what came since.
    expect(await valueOf(m.audioSeconds, { direction: "in" })).toBeCloseTo(1, 12);
    mic.inc(0.5);
    expect(await m.registry.metrics()).toMatch(/^openvoice_audio_seconds_total\{direction="in"\} 1\.5\d*$/m);
    expect(await valueOf(m.audioSeconds, { direction: "out" })).toBe(0.75);
  });

  it("exposes build_info only when a version is given", async () => {
    const without = await createMetrics(new Registry(), { defaults: false }).registry.metrics();
    expect(without).not.toMatch(/^openvoice_build_info\{/m);
    const withVersion = await createMetrics(new Registry(), {
      defaults: false,
      version: "1.2.3",
    }).registry.metrics();
    expect(withVersion).toMatch(/^openvoice_build_info\{version="1.2.3"\} 1$/m);
  });

  it("can be declared on several registries, but only once per registry", () => {
    const registry = new Registry();
    createMetrics(registry);
    expect(() => createMetrics(new Registry())).not.toThrow();
    expect(() => createMetrics(registry)).toThrow(/already been registered/);
  });
});

describe("process metrics", () => {
  it("keeps the Node.js process metrics but no gauge named *_total", async () => {
    const text = await createMetrics().registry.metrics();
    const types = metricTypes(text);
    for (const name of [
      "openvoice_process_cpu_seconds_total",
      "openvoice_process_resident_memory_bytes",
      "openvoice_process_start_time_seconds",
      "openvoice_nodejs_eventloop_lag_p99_seconds",
      "openvoice_nodejs_heap_size_used_bytes",
      "openvoice_nodejs_active_handles",
      "openvoice_nodejs_active_resources",
    ]) {
      expect(types.has(name), name).toBe(true);
    }
    for (const [name, type] of types) if (name.endsWith("_total")) expect(type, name).toBe("counter");
    expect(types.has("openvoice_nodejs_active_handles_total")).toBe(false);
  });
});

describe.skipIf(lacks("promtool", "promtool check metrics"))("promtool check metrics", () => {
  it("finds nothing in a fresh registry with process metrics", async () => {
    const report = await checkMetrics(await createMetrics().registry.metrics());
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("reports a registry that breaks the rules (the check can fail)", async () => {
    const bad = [
      "# HELP openvoice_bad_total A gauge with a counter's suffix.",
      "# TYPE openvoice_bad_total gauge",
      "openvoice_bad_total 1",
      "# HELP openvoice_calls Calls.",
      "# TYPE openvoice_calls counter",
      "openvoice_calls 1",
      "",
    ].join("\n");
    const report = await checkMetrics(bad);
    expect(report.ok).toBe(false);
    expect(report.findings.join("\n")).toMatch(/openvoice_bad_total/);
    expect(report.findings.join("\n")).toMatch(/openvoice_calls/);
  });

  it("finds nothing after every metric moved, and the values are what the events dictate", async () => {
    const m = createMetrics(new Registry(), { version: "0.0.0-test" });
    const queue = new ApprovalQueue({ timeoutS: 0.05 });
    queues.push(queue);
    observeApprovals(m, queue);

    initialiseServerSeries(m, "home_assistant", "client");
    initialiseServerSeries(m, "docs", "native");
    initialiseToolSeries(m, "home_assistant", "HassTurnOn", "client");
    m.mcpServerUp.set({ server: "home_assistant", mode: "client" }, 1);
    m.satellitesConnected.inc();
    m.conversationsActive.inc();
    m.realtimeSessions.set({ state: "idle" }, 1);
    m.realtimeSessions.set({ state: "busy" }, 1);
    m.realtimeConnects.inc({ outcome: "success" }, 2);
    m.realtimeConnects.inc({ outcome: "error" });
    m.realtimeReconnects.inc();
    m.realtimeSessionRotations.inc();
    m.turnFirstAudio.observe(0.61);
    m.audioSeconds.inc({ direction: "in" }, 2.5);
    m.audioSeconds.inc({ direction: "out" }, 3.25);

    // A tool call that needed a person: approved on the satellite, then run.
    const approved = queue.request({
      server: "home_assistant",
      tool: "HassTurnOn",
      arguments: "{}",
      mode: "client",
    });
    expect(await valueOf(m.approvalsPending)).toBe(1);
    queue.answer(approved.id, true, "satellite");
    expect((await approved.decision).approve).toBe(true);
    m.toolCalls.inc({ server: "home_assistant", tool: "HassTurnOn", mode: "client", outcome: "success" });
    m.toolCallDuration.observe({ server: "home_assistant", mode: "client" }, 0.12);
    // A native call nobody answered: a timeout denial.
    const ignored = queue.request({ server: "docs", tool: "search", arguments: "{}", mode: "native" });
    expect((await ignored.decision).source).toBe("timeout");
    m.toolCalls.inc({ server: "docs", tool: "search", mode: "native", outcome: "denied" });
    // An upstream error and a restart of the client server.
    m.errors.inc({ code: "upstream_unavailable" });
    m.mcpServerRestarts.inc({ server: "home_assistant" });
    m.mcpFailovers.inc({ server: "docs" });
    recordTokenUsage(m, {
      input_tokens: 300,
      output_tokens: 120,
      total_tokens: 420,
      input_token_details: {
        text_tokens: 200,
        audio_tokens: 100,
        cached_tokens: 150,
        cached_tokens_details: { text_tokens: 150, audio_tokens: 0 },
      },
      output_token_details: { text_tokens: 20, audio_tokens: 100 },
    });
    m.conversationsActive.dec();

    const text = await m.registry.metrics();
    const report = await checkMetrics(text);
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);

    const call = { server: "home_assistant", tool: "HassTurnOn", mode: "client" };
    expect(await valueOf(m.toolCalls, { ...call, outcome: "success" })).toBe(1);
    expect(await valueOf(m.toolCalls, { ...call, outcome: "timeout" })).toBe(0);
    expect(
      await valueOf(m.toolCalls, { server: "docs", tool: "search", mode: "native", outcome: "denied" }),
    ).toBe(1);
    expect(await histogramCount(m.toolCallDuration, { server: "home_assistant", mode: "client" })).toBe(1);
    expect(await histogramCount(m.toolCallDuration, { server: "docs", mode: "native" })).toBe(0);
    expect(
      await valueOf(m.approvals, { server: "home_assistant", decision: "approved", source: "satellite" }),
    ).toBe(1);
    expect(await valueOf(m.approvals, { server: "docs", decision: "denied", source: "timeout" })).toBe(1);
    expect(await valueOf(m.approvalsPending)).toBe(0);
    expect(await valueOf(m.mcpServerUp, { server: "home_assistant", mode: "client" })).toBe(1);
    expect(await valueOf(m.mcpServerUp, { server: "docs", mode: "native" })).toBe(0);
    expect(await valueOf(m.errors, { code: "upstream_unavailable" })).toBe(1);
    expect(await valueOf(m.errors, { code: "bad_audio" })).toBe(0);
    expect(await valueOf(m.tokens, { kind: "input_text" })).toBe(50);
    expect(await valueOf(m.tokens, { kind: "input_cached" })).toBe(150);
    expect(await valueOf(m.tokens, { kind: "output_audio" })).toBe(100);
    expect(await valueOf(m.conversationsActive)).toBe(0);
    expect(await histogramCount(m.turnFirstAudio)).toBe(1);
    expect(text).toMatch(/^openvoice_audio_seconds_total\{direction="out"\} 3.25$/m);
  });
});

describe("recordTokenUsage", () => {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

  it("splits cached input out of its modality so the kinds add up to the total", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const usage: RealtimeResponseUsage = {
      input_tokens: 1000,
      output_tokens: 260,
      total_tokens: 1260,
      input_token_details: {
        text_tokens: 600,
        audio_tokens: 380,
        image_tokens: 20,
        cached_tokens: 700,
        cached_tokens_details: { text_tokens: 500, audio_tokens: 200, image_tokens: 0 },
      },
      output_token_details: { text_tokens: 60, audio_tokens: 200 },
    };
    const added = recordTokenUsage(m, usage);
    expect(added).toEqual({
      input_text: 100,
      input_audio: 180,
      input_image: 20,
      input_cached: 700,
      output_text: 60,
      output_audio: 200,
    });
    expect(sum(added)).toBe(1260);
    recordTokenUsage(m, usage);
    expect(await valueOf(m.tokens, { kind: "input_audio" })).toBe(360);
    expect(await valueOf(m.tokens, { kind: "input_cached" })).toBe(1400);
  });

  it("attributes cached tokens text first when the cached breakdown is missing", () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const added = recordTokenUsage(m, {
      input_tokens: 500,
      output_tokens: 0,
      input_token_details: { text_tokens: 100, audio_tokens: 400, cached_tokens: 250 },
    });
    expect(added).toMatchObject({ input_text: 0, input_audio: 250, input_cached: 250 });
    expect(sum(added)).toBe(500);
  });

  it("counts totals without a breakdown as text, and ignores missing or invalid numbers", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const added = recordTokenUsage(m, { input_tokens: 40, output_tokens: 9 });
    expect(added).toEqual({
      input_text: 40,
      input_audio: 0,
      input_image: 0,
      input_cached: 0,
      output_text: 9,
      output_audio: 0,
    });
    expect(sum(recordTokenUsage(m, {}))).toBe(0);
    expect(sum(recordTokenUsage(m, { input_tokens: -5, output_tokens: Number.NaN }))).toBe(0);
    expect(await valueOf(m.tokens, { kind: "input_text" })).toBe(40);
    expect(await valueOf(m.tokens, { kind: "output_text" })).toBe(9);
  });
});

describe("series initialisation", () => {
  it("creates every outcome of a tool at 0 without lowering values already counted", async () => {
    const m: Metrics = createMetrics(new Registry(), { defaults: false });
    const tool = { server: "ha", tool: "HassLightSet", mode: "client" } as const;
    m.toolCalls.inc({ ...tool, outcome: "success" }, 3);
    m.mcpServerUp.set({ server: "ha", mode: "client" }, 1);
    initialiseToolSeries(m, tool.server, tool.tool, tool.mode);
    initialiseServerSeries(m, "ha", "client");
    for (const outcome of TOOL_CALL_OUTCOMES) {
      expect(await valueOf(m.toolCalls, { ...tool, outcome }), outcome).toBe(outcome === "success" ? 3 : 0);
    }
    expect(await valueOf(m.mcpServerUp, { server: "ha", mode: "client" })).toBe(1);
    expect(await valueOf(m.mcpFailovers, { server: "ha" })).toBe(0);
    expect(await valueOf(m.mcpServerRestarts, { server: "ha" })).toBe(0);
    expect(await histogramCount(m.toolCallDuration, { server: "ha", mode: "client" })).toBe(0);
  });
});

describe("observeApprovals", () => {
  it("counts each settled request once by decision and source, and tracks the pending gauge", async () => {
    const m = createMetrics(new Registry(), { defaults: false });
    const queue = new ApprovalQueue({ timeoutS: 30 });
    queues.push(queue);
    const before = queue.request({ server: "ha", tool: "HassUnlock", arguments: "{}", mode: "client" });
    const stop = observeApprovals(m, queue);
    expect(await valueOf(m.approvalsPending)).toBe(1);

    const a = queue.request({ server: "ha", tool: "HassUnlock", arguments: "{}", mode: "client" });
    const b = queue.request({ server: "ha", tool: "HassOpen", arguments: "{}", mode: "client" });
    expect(await valueOf(m.approvalsPending)).toBe(3);
    expect(queue.answer(a.id, false, "ingress")).toBe(true);
    expect(queue.answer(a.id, true, "satellite")).toBe(false);
    queue.answer(b.id, true, "ingress");
    queue.cancel();
    await Promise.all([before.decision, a.decision, b.decision]);

    expect(await valueOf(m.approvals, { server: "ha", decision: "denied", source: "ingress" })).toBe(1);
    expect(await valueOf(m.approvals, { server: "ha", decision: "approved", source: "ingress" })).toBe(1);
    expect(await valueOf(m.approvals, { server: "ha", decision: "denied", source: "cancelled" })).toBe(1);
    expect(
      await valueOf(m.approvals, { server: "ha", decision: "approved", source: "satellite" }),
    ).toBeUndefined();
    expect(await valueOf(m.approvalsPending)).toBe(0);

    stop();
    const c = queue.request({ server: "ha", tool: "HassOpen", arguments: "{}", mode: "client" });
    queue.answer(c.id, true, "ingress");
    await c.decision;
    expect(await valueOf(m.approvals, { server: "ha", decision: "approved", source: "ingress" })).toBe(1);
  });
});

describe("DOCS.md metrics section", () => {
  const section = async (): Promise<string> => {
    const docs = await readFile(new URL("../DOCS.md", import.meta.url), "utf8");
    const start = docs.indexOf("## Metrics");
    expect(start).toBeGreaterThanOrEqual(0);
    const end = docs.indexOf("\n## ", start + 1);
    return docs.slice(start, end === -1 ? undefined : end);
  };

  it("documents every metric of the service with its type and labels", async () => {
    const text = await section();
    const m = createMetrics(new Registry(), { defaults: false });
    for (const metric of await m.registry.getMetricsAsJSON()) {
      const row = text.split("\n").find((l) => l.startsWith(`| \`${metric.name}\` |`));
      expect(row, metric.name).toBeDefined();
      expect(row, metric.name).toContain(`| ${String(metric.type)} |`);
      const single = m.registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] };
      for (const label of single.labelNames)
        expect(row, `${metric.name}{${label}}`).toContain(`\`${label}\``);
    }
    for (const kind of TOKEN_KINDS) expect(text).toContain(`\`${kind}\``);
    for (const outcome of TOOL_CALL_OUTCOMES) expect(text).toContain(`\`${outcome}\``);
    expect(text).toContain("metrics.token");
  });

  it.skipIf(lacks("promtool", "promtool check config of the DOCS.md scrape configuration"))(
    "shows a scrape configuration that promtool accepts",
    async () => {
      const text = await section();
      const block = /```yaml\n(scrape_configs:[\s\S]*?)```/.exec(text)?.[1];
      expect(block).toBeDefined();
      expect(block).toMatch(/authorization:\s*#[^\n]*\n\s+type: Bearer/);
      const dir = await mkdtemp(join(tmpdir(), "openvoice-docs-"));
      try {
        const file = join(dir, "prometheus.yml");
        await writeFile(file, block!);
        const result = await run(requireBinary("promtool"), ["check", "config", file]);
        expect(result.stdout + result.stderr).toMatch(/SUCCESS/);
        expect(result.code).toBe(0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
