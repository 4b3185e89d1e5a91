/**
 * A real `prometheus` on 127.0.0.1 scrapes the service's `/metrics` (with the optional bearer token)
 * and answers queries for what the service counted: first the satellite-port server over a registry
 * the test drives, then the service as a real process.
 */
import type { FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createSatelliteServer } from "../src/http/server.js";
import { createLogger } from "../src/log.js";
import {
  TOOL_CALL_OUTCOMES,
  createMetrics,
  initialiseServerSeries,
  initialiseToolSeries,
  type Metrics,
} from "../src/metrics.js";
import {
  DASHBOARD_URL,
  dashboardQueries,
  loopbackServiceConfig,
  startPrometheus,
  startService,
  toPromQL,
  type PromSample,
  type PrometheusServer,
  type ServiceProcess,
} from "./helpers/promtool.js";
import { lacks } from "./helpers/tools.js";

const TOKEN = "metrics-token-0123456789abcdef";
const silent = createLogger({ level: "fatal", destination: { write: () => undefined } });

const valueOf = (samples: PromSample[], labels: Record<string, string> = {}): number | undefined => {
  const hit = samples.find((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v));
  return hit === undefined ? undefined : Number(hit.value[1]);
};

const EVERYTHING_SCRIPT = fileURLToPath(
  new URL("../node_modules/@modelcontextprotocol/server-everything/dist/index.js", import.meta.url),
);

describe.skipIf(lacks("prometheus", "a real Prometheus scraping the satellite port"))(
  "a real Prometheus scraping the satellite-port /metrics",
  () => {
    let metrics: Metrics;
    let server: FastifyInstance;
    let prometheus: PrometheusServer | undefined;

    beforeAll(async () => {
      metrics = createMetrics(new Registry(), { version: "0.0.0-test" });
      initialiseServerSeries(metrics, "home_assistant", "client");
      initialiseToolSeries(metrics, "home_assistant", "HassTurnOn", "client");
      metrics.mcpServerUp.set({ server: "home_assistant", mode: "client" }, 1);
      metrics.toolCalls.inc(
        { server: "home_assistant", tool: "HassTurnOn", mode: "client", outcome: "success" },
        2,
      );
      metrics.toolCallDuration.observe({ server: "home_assistant", mode: "client" }, 0.2);
      metrics.turnFirstAudio.observe(0.45);
      server = createSatelliteServer({
        logger: silent,
        registry: metrics.registry,
        metricsToken: TOKEN,
        readiness: () => ({ ready: true }),
      });
      await server.listen({ host: "127.0.0.1", port: 0 });
      const { port } = server.server.address() as { port: number };
      const url = `http://127.0.0.1:${port}/metrics`;
      prometheus = await startPrometheus({
        targets: [
          { job: "openvoice", url, bearerToken: TOKEN },
          { job: "openvoice-wrong-token", url, bearerToken: "not-the-token" },
          { job: "openvoice-no-token", url },
        ],
      });
      await prometheus.waitForScrapes();
    }, 60_000);

    afterAll(async () => {
      await prometheus?.stop();
      await server?.close();
    }, 20_000);

    it("scrapes with the bearer token and is refused without it", async () => {
      const targets = await prometheus!.targets();
      const byJob = new Map(targets.map((t) => [t.labels.job, t]));
      expect(byJob.get("openvoice")?.health).toBe("up");
      expect(byJob.get("openvoice-wrong-token")?.health).toBe("down");
      expect(byJob.get("openvoice-wrong-token")?.lastError).toMatch(/401/);
      expect(byJob.get("openvoice-no-token")?.health).toBe("down");
      const up = await prometheus!.query("up");
      expect(valueOf(up, { job: "openvoice" })).toBe(1);
      expect(valueOf(up, { job: "openvoice-wrong-token" })).toBe(0);
    });

    it("answers openvoice_tool_calls_total with what the service counted, and follows new counts", async () => {
      const call = { server: "home_assistant", tool: "HassTurnOn", mode: "client" };
      const first = await prometheus!.waitFor(
        'openvoice_tool_calls_total{job="openvoice"}',
        (s) => s.length > 0,
      );
      expect(valueOf(first, { ...call, outcome: "success" })).toBe(2);
      expect(valueOf(first, { ...call, outcome: "timeout" })).toBe(0);
      expect(first).toHaveLength(7);

      metrics.toolCalls.inc({ ...call, outcome: "timeout" });
      metrics.toolCalls.inc({ ...call, outcome: "success" }, 3);
      const later = await prometheus!.waitFor(
        'openvoice_tool_calls_total{job="openvoice",outcome="success"}',
        (s) => valueOf(s) === 5,
      );
      expect(valueOf(later, call)).toBe(5);
      const timeouts = await prometheus!.query(
        'sum(openvoice_tool_calls_total{job="openvoice",outcome="timeout"})',
      );
      expect(valueOf(timeouts)).toBe(1);
    });

    it("stores the metric families under their names, including the histograms' series", async () => {
      const names = (await prometheus!.api("/api/v1/label/__name__/values")) as string[];
      for (const name of [
        "openvoice_tool_calls_total",
        "openvoice_tool_call_duration_seconds_bucket",
        "openvoice_turn_first_audio_seconds_count",
        "openvoice_mcp_server_up",
        "openvoice_tokens_total",
        "openvoice_errors_total",
        "openvoice_build_info",
        "openvoice_process_cpu_seconds_total",
      ]) {
        expect(names, name).toContain(name);
      }
      const p95 = await prometheus!.query(
        'histogram_quantile(0.95, sum by (le) (openvoice_turn_first_audio_seconds_bucket{job="openvoice"}))',
      );
      expect(valueOf(p95)).toBeGreaterThan(0.3);
      expect(valueOf(p95)).toBeLessThanOrEqual(0.5);
    });

    it("runs every dashboard query without a PromQL error", async () => {
      const dashboard = JSON.parse(readFileSync(DASHBOARD_URL, "utf8")) as unknown;
      const queries = dashboardQueries(dashboard);
      expect(queries.length).toBeGreaterThan(20);
      // Rates need at least two samples in their window.
      await prometheus!.waitFor('count_over_time(up{job="openvoice"}[1m])', (s) => (valueOf(s) ?? 0) >= 3);
      const answered = new Map<string, PromSample[]>();
      for (const q of queries)
        answered.set(q.expr, await prometheus!.query(toPromQL(q.expr, { rate: "1m", range: "1m" })));
      const withData = [...answered.values()].filter((s) => s.length > 0).length;
      // The tool-call panels answer with the calls counted above, per server and outcome.
      const byOutcome = [...answered].find(([expr]) =>
        expr.includes("sum by (server, outcome) (rate(openvoice_tool_calls_total"),
      );
      expect(byOutcome).toBeDefined();
      const perOutcome = byOutcome![1];
      expect(new Set(perOutcome.map((x) => x.metric.outcome))).toEqual(new Set(TOOL_CALL_OUTCOMES));
      expect(valueOf(perOutcome, { server: "home_assistant", outcome: "success" })).toBeGreaterThan(0);
      expect(withData).toBeGreaterThan(10);
    });
  },
);

describe.skipIf(lacks("prometheus", "a real Prometheus scraping the service process"))(
  "a real Prometheus scraping the service process",
  () => {
    let service: ServiceProcess | undefined;
    let prometheus: PrometheusServer | undefined;

    beforeAll(async () => {
      service = await startService(
        loopbackServiceConfig({
          metrics: { token: TOKEN },
          // A real stdio tool server, so the running service declares its tool-call series.
          mcp_servers: {
            everything: {
              mode: "client",
              transport: "stdio",
              command: process.execPath,
              args: [EVERYTHING_SCRIPT, "stdio"],
              require_approval: "never",
            },
          },
        }),
      );
      prometheus = await startPrometheus({
        targets: [
          { job: "openvoice", url: service.metricsUrl, bearerToken: TOKEN },
          { job: "openvoice-no-token", url: service.metricsUrl },
        ],
      });
      await prometheus.waitForScrapes();
    }, 90_000);

    afterAll(async () => {
      await prometheus?.stop();
      const code = await service?.stop();
      expect(code).toBe(0);
    }, 30_000);

    it("is scraped with metrics.token and refused without it", async () => {
      const up = await prometheus!.query("up");
      expect(valueOf(up, { job: "openvoice" })).toBe(1);
      expect(valueOf(up, { job: "openvoice-no-token" })).toBe(0);
    });

    it("exposes the zero-initialised series and the process metrics under the openvoice_ prefix", async () => {
      const kinds = await prometheus!.waitFor(
        'openvoice_tokens_total{job="openvoice"}',
        (s) => s.length >= 6,
      );
      expect(kinds.map((s) => s.metric.kind).sort()).toEqual(
        ["input_audio", "input_cached", "input_image", "input_text", "output_audio", "output_text"].sort(),
      );
      const errors = await prometheus!.query('openvoice_errors_total{job="openvoice",code="unauthorized"}');
      expect(valueOf(errors)).toBe(0);
      const started = await prometheus!.query('openvoice_process_start_time_seconds{job="openvoice"}');
      expect(valueOf(started)).toBeGreaterThan(Date.now() / 1000 - 600);
      const satellites = await prometheus!.query('openvoice_satellites_connected{job="openvoice"}');
      expect(valueOf(satellites)).toBe(0);
    });

    it("answers openvoice_tool_calls_total for every tool of the connected stdio server, at zero", async () => {
      const up = await prometheus!.waitFor(
        'openvoice_mcp_server_up{job="openvoice",server="everything",mode="client"} == 1',
        (s) => s.length === 1,
      );
      expect(up).toHaveLength(1);
      const calls = await prometheus!.waitFor(
        'openvoice_tool_calls_total{job="openvoice",server="everything",tool="echo"}',
        (s) => s.length > 0,
      );
      expect(calls.map((c) => c.metric.outcome).sort()).toContain("success");
      expect(calls.every((c) => Number(c.value[1]) === 0)).toBe(true);
    });
  },
);
