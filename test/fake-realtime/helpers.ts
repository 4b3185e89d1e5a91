/**
 * Helpers for driving the realtime engine in tests: an in-memory `ToolProvider` that records calls,
 * a config builder, a silent logger, fresh metrics, and a small event recorder for conversations.
 */
import { pino } from "pino";
import { Registry } from "prom-client";
import { ConfigSchema, type Config, type ConfigInput, type McpServerConfig } from "../../src/config/model.js";
import type { Logger } from "../../src/log.js";
import type { RoutedTool, ServerStatus, ToolCallOutcome, ToolProvider } from "../../src/mcp/types.js";
import { createMetrics, type Metrics } from "../../src/metrics.js";
import type { Conversation, ConversationEvents } from "../../src/realtime/conversation.js";

/**
 * The `everything` MCP server as a client (stdio) server entry of the config, with its approval
 * policy. `command` defaults to the name the engine tests use (it is not spawned by the engine).
 */
export function clientEverything(
  requireApproval: McpServerConfig["require_approval"],
  command = "mcp-server-everything",
) {
  return {
    name: "everything",
    mode: "client",
    transport: "stdio",
    command,
    require_approval: requireApproval,
  } as const;
}

export const silentLogger = (): Logger => pino({ level: "silent" });

export const freshMetrics = (): Metrics => createMetrics(new Registry(), { defaults: false });

export function makeConfig(
  url: string,
  input: Partial<ConfigInput> = {},
  openai: Partial<ConfigInput["openai"]> = {},
): Config {
  return ConfigSchema.parse({
    ...input,
    openai: { api_key: "sk-test", base_url: url, pool_size: 0, ...openai },
  });
}

/** Reads a counter/gauge value (sum over matching label sets). */
export async function metricValue(
  m: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((v) =>
      Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
    )
    .reduce((a, v) => a + v.value, 0);
}

export const tool = (server: string, name: string, exposed = name): RoutedTool => ({
  name: exposed,
  description: `${name} of ${server}`,
  parameters: { type: "object", properties: { message: { type: "string" } } },
  server,
  tool: name,
});

/** An in-memory `ToolProvider` (plus `addServer` for failover) that records every call. */
export class RecordingTools implements ToolProvider {
  readonly calls: { name: string; args: string }[] = [];
  readonly added: McpServerConfig[] = [];
  #tools: RoutedTool[];
  readonly #listeners = new Set<() => void>();
  /** Tools a server gets when it is added (failover). */
  toolsOnAdd: (cfg: McpServerConfig) => RoutedTool[] = (cfg) => [tool(cfg.name, "HassTurnOn")];
  result: (name: string, args: string) => Omit<ToolCallOutcome, "durationMs"> = (name, args) => ({
    ok: true,
    output: `${name} ran with ${args}`,
    outcome: "success",
  });

  constructor(tools: RoutedTool[] = []) {
    this.#tools = tools;
  }

  tools(): readonly RoutedTool[] {
    return [...this.#tools].sort((a, b) => a.name.localeCompare(b.name));
  }

  setTools(tools: RoutedTool[]): void {
    this.#tools = tools;
    for (const l of this.#listeners) l();
  }

  callTool(name: string, argsJson: string): Promise<ToolCallOutcome> {
    this.calls.push({ name, args: argsJson });
    const t = this.#tools.find((x) => x.name === name);
    if (!t)
      return Promise.resolve({
        ok: false,
        output: `Unknown tool ${name}`,
        outcome: "unknown_tool",
        durationMs: 0,
      });
    return Promise.resolve({ ...this.result(name, argsJson), server: t.server, tool: t.tool, durationMs: 1 });
  }

  onToolsChanged(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  status(): readonly ServerStatus[] {
    return [];
  }

  addServer(cfg: McpServerConfig): Promise<void> {
    this.added.push(cfg);
    this.setTools([...this.#tools, ...this.toolsOnAdd(cfg)]);
    return Promise.resolve();
  }
}

type Recorded = {
  [K in keyof ConversationEvents]: { type: K; args: ConversationEvents[K] };
}[keyof ConversationEvents];

/** Records every event of a conversation and waits for them. */
export class ConversationRecorder {
  readonly events: Recorded[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(conv: Conversation) {
    const names: (keyof ConversationEvents)[] = [
      "speech.started",
      "speech.stopped",
      "response.start",
      "audio",
      "response.end",
      "transcript",
      "tool",
      "approval.request",
      "error",
      "closed",
    ];
    for (const type of names)
      conv.on(type, (...args: unknown[]) => {
        this.events.push({ type, args } as Recorded);
        for (const w of [...this.#waiters]) w();
      });
  }

  of<K extends keyof ConversationEvents>(type: K): ConversationEvents[K][0][] {
    return this.events.filter((e) => e.type === type).map((e) => e.args[0] as ConversationEvents[K][0]);
  }

  /** Resolves with the n-th event of `type` (1-based) matching `pred`. */
  waitFor<K extends keyof ConversationEvents>(
    type: K,
    pred: (e: ConversationEvents[K][0]) => boolean = () => true,
    n = 1,
    timeoutMs = 5000,
  ): Promise<ConversationEvents[K][0]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.of(type).filter(pred);
        if (found.length < n) return false;
        resolve(found[n - 1]!);
        return true;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`no ${type} (#${n}); got ${this.events.map((e) => e.type).join(",")}`));
      }, timeoutMs);
      const w = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(w);
      };
      this.#waiters.add(w);
    });
  }

  audio(): Buffer {
    return Buffer.concat(this.of("audio").map((a) => a.pcm));
  }
}

/** 24 kHz PCM16 silence. */
export const silence = (ms: number): Buffer => Buffer.alloc(Math.round(24 * ms) * 2);

/** Resolves once `cond()` is true (polling), or rejects after `timeoutMs`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
