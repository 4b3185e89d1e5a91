/**
 * Test helpers around the real Prometheus tools (Debian package `prometheus`): `promtool` checks of
 * exposition text and PromQL, and a throwaway `prometheus` server on 127.0.0.1 with a temp scrape
 * config and temp storage. Every wait is bounded; every process started here is killed by `stop()`
 * and, as a last resort, when the test process exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { z } from "zod";
import { findTool } from "./tools.js";

/** The tool's path on PATH, or an error that says how to install it (tests guard with `lacks`). */
export function requireBinary(name: "promtool" | "prometheus"): string {
  const path = findTool(name);
  if (path === undefined) {
    throw new Error(
      `${name} not found on PATH: install the Debian package "prometheus" (apt-get install prometheus)`,
    );
  }
  return path;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion with optional stdin; SIGKILLs it after `timeoutMs` and rejects. */
export function run(
  command: string,
  args: readonly string[],
  input?: string,
  timeoutMs = 15_000,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${command} ${args.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}

export interface PromtoolReport {
  /** Exit code 0 and nothing reported. */
  readonly ok: boolean;
  readonly code: number | null;
  /** One line per finding (lint problem or parse error). */
  readonly findings: readonly string[];
}

function report(r: RunResult): PromtoolReport {
  const findings = `${r.stdout}\n${r.stderr}`
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^SUCCESS\b|^Checking\b/.test(l));
  return { ok: r.code === 0 && findings.length === 0, code: r.code, findings };
}

/** `promtool check metrics` over an exposition text (lint included). */
export async function checkMetrics(exposition: string): Promise<PromtoolReport> {
  return report(await run(requireBinary("promtool"), ["check", "metrics"], exposition));
}

/**
 * Parses PromQL expressions with `promtool check rules` (each becomes a recording rule).
 * Grafana's `$__rate_interval`/`$__interval`/`$__range` must be replaced before.
 */
export async function checkExpressions(exprs: readonly string[]): Promise<PromtoolReport> {
  const dir = await mkdtemp(join(tmpdir(), "openvoice-rules-"));
  try {
    const file = join(dir, "rules.yml");
    const rules = exprs.map((expr, i) => ({ record: `dashboard:expr_${i}`, expr }));
    await writeFile(file, stringify({ groups: [{ name: "dashboard", rules }] }));
    return report(await run(requireBinary("promtool"), ["check", "rules", file]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One scrape job of the test Prometheus. */
export interface ScrapeTarget {
  readonly job: string;
  /** `http://127.0.0.1:PORT/metrics` */
  readonly url: string;
  readonly bearerToken?: string;
}

const SampleSchema = z.object({
  metric: z.record(z.string(), z.string()),
  value: z.tuple([z.number(), z.string()]),
});
export type PromSample = z.infer<typeof SampleSchema>;

const ApiResponseSchema = z.discriminatedUnion("status", [
  z.object({ status: z.literal("success"), data: z.unknown() }),
  z.object({ status: z.literal("error"), errorType: z.string(), error: z.string() }),
]);

const VectorSchema = z.object({ resultType: z.literal("vector"), result: z.array(SampleSchema) });

const TargetsSchema = z.object({
  activeTargets: z.array(
    z.object({
      labels: z.record(z.string(), z.string()),
      health: z.string(),
      lastError: z.string(),
      lastScrape: z.string(),
    }),
  ),
});
export type ActiveTarget = z.infer<typeof TargetsSchema>["activeTargets"][number];

/** Prometheus API failure (`status:"error"` or a non-JSON answer). */
export class PrometheusApiError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "PrometheusApiError";
  }
}

export interface PrometheusServer {
  /** `http://127.0.0.1:PORT` */
  readonly baseUrl: string;
  /** GET an API path (`/api/v1/...`) and return `data`, or throw `PrometheusApiError`. */
  api(path: string, params?: Record<string, string>): Promise<unknown>;
  /** Instant query; throws on PromQL errors; rejects non-vector results. */
  query(expr: string): Promise<PromSample[]>;
  targets(): Promise<ActiveTarget[]>;
  /** Polls `query(expr)` until `accept` holds; throws after `timeoutMs` with the last result. */
  waitFor(
    expr: string,
    accept: (samples: PromSample[]) => boolean,
    timeoutMs?: number,
  ): Promise<PromSample[]>;
  /** Polls until every job has been scraped at least once; returns their targets. */
  waitForScrapes(timeoutMs?: number): Promise<ActiveTarget[]>;
  /** SIGTERM, then SIGKILL after 5 s; removes the temp directory. Idempotent. */
  stop(): Promise<void>;
  /** Everything the server logged so far (for failure messages). */
  log(): string;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts `prometheus` on 127.0.0.1 (a free port it picks itself) scraping `targets` every
 * `scrapeIntervalS`, with storage in a temp dir. Resolves once `/-/ready` answers 200.
 */
export async function startPrometheus(opts: {
  targets: readonly ScrapeTarget[];
  scrapeIntervalS?: number;
  startTimeoutMs?: number;
}): Promise<PrometheusServer> {
  const binary = requireBinary("prometheus");
  const interval = `${opts.scrapeIntervalS ?? 1}s`;
  const dir = await mkdtemp(join(tmpdir(), "openvoice-prometheus-"));
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    scrape_configs: opts.targets.map((t) => {
      const url = new URL(t.url);
      return {
        job_name: t.job,
        scheme: url.protocol.replace(":", ""),
        metrics_path: url.pathname,
        static_configs: [{ targets: [url.host] }],
        ...(t.bearerToken === undefined
          ? {}
          : { authorization: { type: "Bearer", credentials: t.bearerToken } }),
      };
    }),
  };
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, stringify(config));

  const child = spawn(
    binary,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      "--web.listen-address=127.0.0.1:0",
      "--log.level=info",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  live.add(child);
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => live.delete(child));

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const listening = new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString("utf8");
      const m = /msg="Listening on" address=(127\.0\.0\.1:\d+)/.exec(output);
      if (m?.[1] !== undefined) resolve(m[1]);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", reject);
    child.once("exit", (code) =>
      reject(new Error(`prometheus exited (${code}) before listening:\n${output}`)),
    );
  });

  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + startTimeoutMs;
  let baseUrl: string;
  try {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`prometheus did not listen within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
    });
    try {
      baseUrl = `http://${await Promise.race([listening, timeout])}`;
    } finally {
      clearTimeout(timer);
    }
    for (;;) {
      const ready = await fetch(`${baseUrl}/-/ready`, { signal: AbortSignal.timeout(2_000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline)
        throw new Error(`prometheus not ready within ${startTimeoutMs} ms:\n${output}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const api = async (path: string, params: Record<string, string> = {}): Promise<unknown> => {
    const url = new URL(path, baseUrl);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    const parsed = ApiResponseSchema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) throw new PrometheusApiError(path, `unexpected answer (HTTP ${res.status})`);
    if (parsed.data.status === "error")
      throw new PrometheusApiError(path, `${parsed.data.errorType}: ${parsed.data.error}`);
    return parsed.data.data;
  };

  const query = async (expr: string): Promise<PromSample[]> => {
    const data = VectorSchema.safeParse(await api("/api/v1/query", { query: expr }));
    if (!data.success) throw new PrometheusApiError("/api/v1/query", `not a vector result for ${expr}`);
    return data.data.result;
  };

  const targets = async (): Promise<ActiveTarget[]> => {
    const data = TargetsSchema.safeParse(await api("/api/v1/targets", { state: "active" }));
    if (!data.success) throw new PrometheusApiError("/api/v1/targets", "unexpected shape");
    return data.data.activeTargets;
  };

  const waitFor = async (
    expr: string,
    accept: (samples: PromSample[]) => boolean,
    timeoutMs = 20_000,
  ): Promise<PromSample[]> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const samples = await query(expr);
      if (accept(samples)) return samples;
      if (Date.now() > until) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting on ${expr}; last: ${JSON.stringify(samples)}`,
        );
      }
      await sleep(250);
    }
  };

  const waitForScrapes = async (timeoutMs = 20_000): Promise<ActiveTarget[]> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const active = await targets();
      const scraped = active.filter((t) => t.health !== "unknown" && !t.lastScrape.startsWith("0001-"));
      if (active.length >= opts.targets.length && scraped.length === active.length) return active;
      if (Date.now() > until) {
        throw new Error(`targets not scraped within ${timeoutMs} ms: ${JSON.stringify(active)}`);
      }
      await sleep(250);
    }
  };

  return { baseUrl, api, query, targets, waitFor, waitForScrapes, stop, log: () => output };
}

/** The service as a real process (`src/main.ts`), listening on 127.0.0.1 with ports picked by the OS. */
export interface ServiceProcess {
  readonly satellitePort: number;
  readonly ingressPort: number;
  /** `http://127.0.0.1:PORT/metrics` on the satellite port. */
  readonly metricsUrl: string;
  /** SIGTERM, then SIGKILL after 10 s; removes the temp directory. Idempotent. Resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Everything the process wrote so far. */
  log(): string;
}

const REPO_ROOT = new URL("../../", import.meta.url);

/** JSON.parse that answers undefined for missing or partial text. */
function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Starts the service from source (`node --import tsx src/main.ts`) with `config` written to a temp
 * YAML file, `OPENVOICE_DATA_DIR` in the same temp dir and `--port-file`; resolves once the ports are
 * written. The environment carries no Supervisor token, so it never runs as an add-on.
 */
export async function startService(
  config: Record<string, unknown>,
  startTimeoutMs = 30_000,
): Promise<ServiceProcess> {
  const dir = await mkdtemp(join(tmpdir(), "openvoice-service-"));
  const configFile = join(dir, "openvoice.yaml");
  const portFile = join(dir, "ports.json");
  await writeFile(configFile, stringify(config));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: dir,
    LANG: "C.UTF-8",
    OPENVOICE_DATA_DIR: join(dir, "data"),
  };
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "src/main.ts",
      "--config",
      configFile,
      "--port-file",
      portFile,
      "--log-format",
      "json",
    ],
    { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  live.add(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      exitCode = code;
      live.delete(child);
      resolve(code);
    }),
  );

  let stopped: Promise<number | null> | undefined;
  const stop = (): Promise<number | null> => {
    stopped ??= (async () => {
      if (exitCode === undefined) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
      return exitCode ?? null;
    })();
    return stopped;
  };

  const PortsSchema = z.object({
    satellite: z.number().int().positive(),
    ingress: z.number().int().positive(),
  });
  const deadline = Date.now() + startTimeoutMs;
  try {
    for (;;) {
      if (exitCode !== undefined)
        throw new Error(`the service exited (${exitCode}) before listening:\n${output}`);
      const text = await readFile(portFile, "utf8").catch(() => undefined);
      const ports = PortsSchema.safeParse(parseJson(text));
      if (ports.success) {
        const { satellite, ingress } = ports.data;
        return {
          satellitePort: satellite,
          ingressPort: ingress,
          metricsUrl: `http://127.0.0.1:${satellite}/metrics`,
          stop,
          log: () => output,
        };
      }
      if (Date.now() > deadline)
        throw new Error(`the service did not listen within ${startTimeoutMs} ms:\n${output}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A service configuration that never leaves loopback: no warm upstream session, a closed upstream port. */
export function loopbackServiceConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    openai: { api_key: "sk-metrics-test-key", base_url: "ws://127.0.0.1:9/v1/realtime", pool_size: 0 },
    listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
    wyoming: { port: 0 },
    log_level: "warning",
    ...extra,
  };
}

/** The Grafana dashboard shipped with the add-on. */
export const DASHBOARD_URL = new URL("../../grafana/openvoice-dashboard.json", import.meta.url);

/** One PromQL query of the dashboard and where it comes from. */
export interface DashboardQuery {
  /** Panel title, or `variable NAME`. */
  readonly where: string;
  readonly expr: string;
}

/** Every panel target `expr` and every query variable of a dashboard JSON model. */
export function dashboardQueries(dashboard: unknown): DashboardQuery[] {
  const Target = z.object({ expr: z.string().optional() });
  const Panel = z.object({
    title: z.string().default(""),
    targets: z.array(Target).default([]),
    panels: z.array(z.unknown()).default([]),
  });
  const Variable = z.object({
    name: z.string(),
    type: z.string(),
    query: z.union([z.string(), z.object({ query: z.string() })]).optional(),
  });
  const Model = z.object({
    panels: z.array(z.unknown()).default([]),
    templating: z.object({ list: z.array(Variable).default([]) }).default({ list: [] }),
  });
  const model = Model.parse(dashboard);
  const out: DashboardQuery[] = [];
  const visit = (raw: unknown): void => {
    const panel = Panel.parse(raw);
    for (const t of panel.targets) if (t.expr !== undefined) out.push({ where: panel.title, expr: t.expr });
    panel.panels.forEach(visit);
  };
  model.panels.forEach(visit);
  for (const v of model.templating.list) {
    if (v.type !== "query" || v.query === undefined) continue;
    out.push({ where: `variable ${v.name}`, expr: typeof v.query === "string" ? v.query : v.query.query });
  }
  return out;
}

/**
 * A dashboard expression as plain PromQL: Grafana's interval variables become fixed durations and
 * template variables match everything. `label_values(expr, label)` becomes `expr`.
 */
export function toPromQL(
  expr: string,
  durations: { rate: string; range: string } = { rate: "1m", range: "5m" },
): string {
  const labelValues = /^\s*label_values\(\s*(.+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$/.exec(expr);
  const plain = labelValues?.[1] ?? expr;
  return plain
    .replaceAll("$__rate_interval", durations.rate)
    .replaceAll("$__interval", durations.rate)
    .replaceAll("$__range", durations.range)
    .replace(/=~"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?"/g, '=~".*"');
}

const PROMQL_KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "inf",
  "nan",
]);

/** Metric names a PromQL expression selects (functions, keywords, labels and literals excluded). */
export function metricNamesIn(expr: string): string[] {
  const stripped = toPromQL(expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\boffset\s+-?[0-9a-z]+/g, " ")
    .replace(/(?<![a-zA-Z0-9_:])[0-9][0-9a-zA-Z.+_]*/g, " ");
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    const end = (m.index ?? 0) + name.length;
    if (/^\s*\(/.test(stripped.slice(end))) continue;
    if (!PROMQL_KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}

/** `# TYPE` of every metric family in an exposition text. */
export function metricTypes(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  return types;
}

/** Whether `name` is a family of the exposition, or a `_bucket`/`_sum`/`_count` series of a histogram/summary. */
export function exposes(types: ReadonlyMap<string, string>, name: string): boolean {
  if (types.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m?.[1] === undefined) return false;
  const type = types.get(m[1]);
  return type === "histogram" || (type === "summary" && m[2] !== "bucket");
}
