/**
 * The Grafana dashboard: it imports cleanly (a `DS_PROMETHEUS` datasource input used everywhere),
 * covers what the issue asks for, every query is valid PromQL (`promtool check rules`), and every
 * metric it queries exists in the output of the running service's `/metrics`.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DASHBOARD_URL,
  checkExpressions,
  dashboardQueries,
  exposes,
  loopbackServiceConfig,
  metricNamesIn,
  metricTypes,
  startService,
  toPromQL,
  type ServiceProcess,
} from "./helpers/promtool.js";
import { lacks } from "./helpers/tools.js";

type Json = Record<string, unknown>;
const dashboard = JSON.parse(readFileSync(DASHBOARD_URL, "utf8")) as Json;
const panels = (dashboard.panels as Json[]).flatMap((p) => [p, ...((p.panels as Json[] | undefined) ?? [])]);
const dataPanels = panels.filter((p) => p.type !== "row");
const queries = dashboardQueries(dashboard);

/** Every object in the model that has a `datasource` key, with a path for messages. */
function datasourceRefs(node: unknown, path = "$"): { path: string; ref: unknown }[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => datasourceRefs(n, `${path}[${i}]`));
  if (node === null || typeof node !== "object") return [];
  const out: { path: string; ref: unknown }[] = [];
  for (const [k, v] of Object.entries(node)) {
    if (k === "datasource") out.push({ path: `${path}.${k}`, ref: v });
    else out.push(...datasourceRefs(v, `${path}.${k}`));
  }
  return out;
}

describe("dashboard model", () => {
  it("declares the DS_PROMETHEUS input and uses it for every panel, target and variable", () => {
    expect(dashboard.__inputs).toEqual([
      expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" }),
    ]);
    const refs = datasourceRefs(dashboard).filter((r) => !r.path.startsWith("$.annotations"));
    expect(refs.length).toBeGreaterThan(dataPanels.length);
    for (const { path, ref } of refs)
      expect(ref, path).toEqual({ type: "prometheus", uid: "${DS_PROMETHEUS}" });
    for (const p of dataPanels) {
      expect(p.datasource, String(p.title)).toBeDefined();
      for (const t of p.targets as Json[]) expect(t.datasource, String(p.title)).toBeDefined();
    }
    expect(dashboard.id).toBeNull();
    expect(dashboard.uid).toBe("openvoice-mcp");
  });

  it("has unique panel ids and a layout inside the 24-column grid without overlaps", () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos as { x: number; y: number; w: number; h: number };
      expect(g.x + g.w, String(p.title)).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          const cell = `${x},${y}`;
          expect(cells.has(cell), `${String(p.title)} overlaps at ${cell}`).toBe(false);
          cells.add(cell);
        }
    }
  });

  it("has the panels the issue asks for, each querying its metric", () => {
    const panelFor = (title: RegExp, metric: string) => {
      const p = dataPanels.find((x) => title.test(String(x.title)));
      expect(p, String(title)).toBeDefined();
      const exprs = (p!.targets as Json[]).map((t) => String(t.expr));
      expect(
        exprs.some((e) => metricNamesIn(e).includes(metric)),
        `${String(title)} → ${metric}`,
      ).toBe(true);
      return exprs;
    };
    const latency = panelFor(/^Turn latency \(end of speech/, "openvoice_turn_first_audio_seconds_bucket");
    expect(latency.some((e) => e.startsWith("histogram_quantile(0.5,"))).toBe(true);
    expect(latency.some((e) => e.startsWith("histogram_quantile(0.95,"))).toBe(true);
    const calls = panelFor(/^Tool calls by server and outcome/, "openvoice_tool_calls_total");
    expect(calls.some((e) => /by \(server, outcome\)/.test(e))).toBe(true);
    panelFor(/^Tool latency/, "openvoice_tool_call_duration_seconds_bucket");
    panelFor(/^MCP servers up\/down/, "openvoice_mcp_server_up");
    panelFor(/^Realtime sessions/, "openvoice_realtime_sessions");
    panelFor(/^Satellites connected/, "openvoice_satellites_connected");
    panelFor(/^Approvals$/, "openvoice_approvals_total");
    const tokens = panelFor(/^Tokens per hour/, "openvoice_tokens_total");
    expect(tokens.some((e) => e.startsWith("3600 *") && /by \(kind\)/.test(e))).toBe(true);
    panelFor(/^Errors by code/, "openvoice_errors_total");
    const wyoming = panelFor(/^Wyoming stage latency/, "openvoice_wyoming_stage_seconds_bucket");
    expect(wyoming.some((e) => /by \(stage, le\)/.test(e))).toBe(true);
    panelFor(/^Wyoming calls and connections/, "openvoice_wyoming_requests_total");
    panelFor(/^Wyoming calls and connections/, "openvoice_wyoming_connections");
  });
});

describe("dashboard cost row", () => {
  it("shows dollars per hour and per device, and today against the budget", () => {
    const exprsOf = (title: string): string[] => {
      const p = dataPanels.find((x) => x.title === title);
      expect(p, title).toBeDefined();
      return (p!.targets as Json[]).map((t) => String(t.expr));
    };
    expect(exprsOf("Dollars per hour by device")).toEqual([
      '3600 * sum by (device, route) (rate(openvoice_cost_usd_total{instance=~"$instance"}[$__rate_interval]))',
    ]);
    expect(exprsOf("Spend (range) by device").flatMap(metricNamesIn)).toEqual(["openvoice_cost_usd_total"]);
    expect(exprsOf("Today against the budget").flatMap(metricNamesIn)).toEqual([
      "openvoice_budget_spent_ratio",
      "openvoice_budget_usd",
    ]);
    const row = panels.find((p) => p.type === "row" && p.title === "Spend");
    expect(row).toBeDefined();
  });
});

describe("dashboard queries", () => {
  it("extracts metric names from PromQL (and the extraction can tell a missing metric)", () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (server, le) (rate(openvoice_tool_call_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))',
      ),
    ).toEqual(["openvoice_tool_call_duration_seconds_bucket"]);
    expect(metricNamesIn("3600 * sum by (kind) (rate(openvoice_tokens_total[5m])) > 0")).toEqual([
      "openvoice_tokens_total",
    ]);
    expect(metricNamesIn("a_total / on (x) group_left b_seconds offset 5m")).toEqual([
      "a_total",
      "b_seconds",
    ]);
    expect(metricNamesIn("label_values(openvoice_satellites_connected, instance)")).toEqual([
      "openvoice_satellites_connected",
    ]);
    const types = new Map([["openvoice_x_seconds", "histogram"]]);
    expect(exposes(types, "openvoice_x_seconds_bucket")).toBe(true);
    expect(exposes(types, "openvoice_x_seconds_count")).toBe(true);
    expect(exposes(types, "openvoice_y_total")).toBe(false);
    expect(exposes(types, "openvoice_y_bucket")).toBe(false);
  });

  it.skipIf(lacks("promtool", "promtool check rules of the dashboard queries"))(
    "are all valid PromQL (promtool check rules)",
    async () => {
      expect(queries.length).toBeGreaterThan(20);
      const report = await checkExpressions(queries.map((q) => toPromQL(q.expr)));
      expect(report.findings).toEqual([]);
      expect(report.ok).toBe(true);
      const broken = await checkExpressions(["sum by (kind (rate(openvoice_tokens_total[5m]))"]);
      expect(broken.ok).toBe(false);
    },
  );

  it("filter by the instance variable", () => {
    for (const q of queries.filter((x) => !x.where.startsWith("variable "))) {
      for (const name of metricNamesIn(q.expr)) {
        expect(q.expr, q.where).toMatch(new RegExp(`${name}\\{instance=~"\\$instance"`));
      }
    }
  });
});

describe("dashboard against the running service", () => {
  let service: ServiceProcess | undefined;
  let exposition = "";

  beforeAll(async () => {
    service = await startService(loopbackServiceConfig());
    const res = await fetch(service.metricsUrl, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    exposition = await res.text();
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
  }, 20_000);

  it("exposes every metric the dashboard queries", () => {
    const types = metricTypes(exposition);
    expect(types.size).toBeGreaterThan(30);
    const queried = new Set(queries.flatMap((q) => metricNamesIn(q.expr)));
    expect(queried.size).toBeGreaterThanOrEqual(15);
    const missing = [...queried].filter((name) => !exposes(types, name));
    expect(missing).toEqual([]);
  });
});
