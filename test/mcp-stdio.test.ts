/**
 * ClientMcpManager against real MCP servers over stdio: the reference server-everything, the
 * reference filesystem server on a temp directory, and our toy server (pagination, list_changed,
 * a tool that sleeps, one that crashes, one that starts a grandchild). Every child is checked
 * through /proc after shutdown.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ApiError } from "../src/errors.js";
import { ClientMcpManager } from "../src/mcp/manager.js";
import { createMetrics, type Metrics } from "../src/metrics.js";
import {
  FILESYSTEM,
  clientServer,
  everythingStdio,
  isRunning,
  liveChildren,
  memoryLogger,
  toyStdio,
  waitFor,
} from "./fixtures/mcp/helpers.js";

const FAST_BACKOFF = { initialMs: 100, maxMs: 800 };
const managers: ClientMcpManager[] = [];

function manager(opts: Partial<ConstructorParameters<typeof ClientMcpManager>[0]> = {}): ClientMcpManager {
  const m = new ClientMcpManager({
    servers: [],
    logger: memoryLogger("warn").logger,
    backoff: FAST_BACKOFF,
    ...opts,
  });
  managers.push(m);
  return m;
}

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  // Call metrics are applied on the next turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve));
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  const hit = data.values.find((v) =>
    Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
  );
  return hit?.value ?? 0;
}

afterAll(async () => {
  await Promise.all(managers.map((m) => m.close()));
  // Nothing this file started may outlive its managers.
  await waitFor(() => liveChildren().length === 0, 10_000, "no child processes");
});

describe("server-everything over stdio", () => {
  let m: ClientMcpManager;
  let metrics: Metrics;

  beforeAll(async () => {
    metrics = createMetrics(new Registry(), { defaults: false });
    m = manager({ servers: [everythingStdio()], metrics, callTimeoutMs: 2000 });
    await m.connectAll();
  });

  afterAll(async () => {
    await m.close();
  });

  it("lists its tools as function tools and reports the server up", () => {
    const names = m.tools().map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining(["echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"]),
    );
    const echo = m.tools().find((t) => t.name === "echo")!;
    expect(echo).toMatchObject({
      server: "everything",
      tool: "echo",
      description: "Echoes back the input string",
    });
    expect(echo.parameters).toMatchObject({ type: "object", properties: { message: { type: "string" } } });
    const [status] = m.status();
    expect(status).toMatchObject({
      name: "everything",
      mode: "client",
      transport: "stdio",
      state: "up",
      restarts: 0,
    });
    expect(status!.toolCount).toBe(names.length);
  });

  it("calls tools and returns text the model can use", async () => {
    const echo = await m.callTool("echo", JSON.stringify({ message: "hello there" }));
    expect(echo).toMatchObject({
      ok: true,
      outcome: "success",
      output: "Echo: hello there",
      server: "everything",
    });
    const sum = await m.callTool("get-sum", '{"a": 2, "b": 40}');
    expect(sum.ok).toBe(true);
    expect(sum.output).toContain("42");
    const image = await m.callTool("get-tiny-image", "{}");
    expect(image.ok).toBe(true);
    expect(image.output).toMatch(/\[image: image\/png, \d+ bytes\]/);
    expect(image.output).not.toMatch(/iVBOR/);
  });

  it("turns every kind of failure into an error output", async () => {
    const badJson = await m.callTool("echo", "{message:");
    expect(badJson).toMatchObject({ ok: false, outcome: "bad_arguments", server: "everything" });
    expect(badJson.output).toMatch(/not valid JSON/);

    const notObject = await m.callTool("echo", "[1]");
    expect(notObject).toMatchObject({ ok: false, outcome: "bad_arguments" });

    const unknown = await m.callTool("no_such_tool", "{}");
    expect(unknown).toMatchObject({ ok: false, outcome: "unknown_tool" });
    expect(unknown.output).toContain("no_such_tool");

    const invalid = await m.callTool("get-sum", '{"a": 1}');
    expect(invalid).toMatchObject({ ok: false, outcome: "error" });
    expect(invalid.output).toMatch(/get-sum/);
    expect(invalid.output).not.toMatch(/MCP error/);
  });

  it("answers a timeout when a tool runs longer than the call timeout, and keeps working", async () => {
    const t0 = Date.now();
    const slow = await m.callTool("trigger-long-running-operation", '{"duration": 20, "steps": 4}');
    const took = Date.now() - t0;
    expect(slow).toMatchObject({ ok: false, outcome: "timeout" });
    expect(slow.output).toMatch(/did not answer within 2 s/);
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(3000 + 2000);
    const after = await m.callTool("echo", '{"message":"still here"}');
    expect(after.output).toBe("Echo: still here");
  });

  it("counts calls and server state in the metrics", async () => {
    expect(
      await metricValue(metrics, "openvoice_mcp_server_up", { server: "everything", mode: "client" }),
    ).toBe(1);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", {
        server: "everything",
        tool: "echo",
        outcome: "success",
      }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      await metricValue(metrics, "openvoice_tool_calls_total", {
        server: "everything",
        tool: "trigger-long-running-operation",
        outcome: "timeout",
      }),
    ).toBe(1);
    // Series of tools never called exist at 0 so rate() sees the first call.
    const zero = await metrics.registry.getSingleMetric("openvoice_tool_calls_total")!.get();
    expect(zero.values.some((v) => v.labels.tool === "get-env" && v.value === 0)).toBe(true);
  });

  it("restarts the child after kill -9; its tools come back and calls work again", async () => {
    const [pid] = m.childPids();
    expect(pid).toBeTypeOf("number");
    const events: number[] = [];
    const off = m.onToolsChanged(() => events.push(m.tools().length));
    process.kill(pid!, "SIGKILL");

    await waitFor(() => m.status()[0]!.state !== "up", 10_000, "server down");
    await waitFor(() => m.status()[0]!.state === "up", 30_000, "server up again");
    off();
    const status = m.status()[0]!;
    expect(status.restarts).toBeGreaterThanOrEqual(1);
    expect(m.childPids()[0]).not.toBe(pid);
    expect(isRunning(pid!)).toBe(false);
    // The tools went away and came back.
    expect(events[0]).toBe(0);
    expect(events.at(-1)).toBe(status.toolCount);
    const echo = await m.callTool("echo", '{"message":"back"}');
    expect(echo).toMatchObject({ ok: true, output: "Echo: back" });
    expect(await metricValue(metrics, "openvoice_mcp_server_restarts_total", { server: "everything" })).toBe(
      status.restarts,
    );
  });
});

describe("the stdio child's environment", () => {
  it("is the safe default plus the configured env, never the service's secrets", async () => {
    const { logger, lines } = memoryLogger("trace");
    const m = manager({
      logger,
      servers: [everythingStdio("env", { env: { GREETING: "configured-value-123" } })],
      parentEnv: {
        ...process.env,
        OPENAI_API_KEY: "sk-must-not-leak",
        SUPERVISOR_TOKEN: "supervisor-must-not-leak",
        SOME_OTHER_VAR: "not-inherited",
      },
    });
    await m.connectAll();
    const res = await m.callTool("get-env", "{}");
    expect(res.ok).toBe(true);
    const env = JSON.parse(res.output) as Record<string, string>;
    expect(env.GREETING).toBe("configured-value-123");
    expect(env.PATH).toBe(process.env.PATH);
    expect(env).not.toHaveProperty("OPENAI_API_KEY");
    expect(env).not.toHaveProperty("SUPERVISOR_TOKEN");
    expect(env).not.toHaveProperty("SOME_OTHER_VAR");
    await m.close();
    expect(lines.join("")).not.toContain("configured-value-123");
  });
});

describe("server-filesystem over stdio on a temp directory", () => {
  let dir: string;
  let m: ClientMcpManager;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "mcp-fs-"));
    await writeFile(join(dir, "hello.txt"), "hello from the test\n");
    m = manager({
      servers: [
        clientServer({
          name: "files",
          transport: "stdio",
          command: process.execPath,
          args: [FILESYSTEM, dir],
        }),
      ],
    });
    await m.connectAll();
  });

  afterAll(async () => {
    await m.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("lists, reads, writes and refuses paths outside its directory", async () => {
    expect(m.status()[0]!.state).toBe("up");
    const names = m.tools().map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["read_text_file", "write_file", "list_directory"]));

    const list = await m.callTool("list_directory", JSON.stringify({ path: dir }));
    expect(list).toMatchObject({ ok: true });
    expect(list.output).toContain("hello.txt");

    const read = await m.callTool("read_text_file", JSON.stringify({ path: join(dir, "hello.txt") }));
    expect(read.output).toBe("hello from the test\n");

    const write = await m.callTool(
      "write_file",
      JSON.stringify({ path: join(dir, "new.txt"), content: "abc" }),
    );
    expect(write.ok).toBe(true);
    const back = await m.callTool("read_text_file", JSON.stringify({ path: join(dir, "new.txt") }));
    expect(back.output).toBe("abc");

    const outside = await m.callTool("read_text_file", JSON.stringify({ path: "/etc/hostname" }));
    expect(outside).toMatchObject({ ok: false, outcome: "error" });
    expect(outside.output).toMatch(/denied|outside/i);
  });
});

describe("toy server over stdio", () => {
  let m: ClientMcpManager;

  beforeAll(async () => {
    m = manager({ servers: [toyStdio()], callTimeoutMs: 1000 });
    await m.connectAll();
  });

  afterAll(async () => {
    await m.close();
  });

  it("reads every page of the tool list", () => {
    expect(m.status()[0]!.state).toBe("up");
    expect(m.tools().map((t) => t.name)).toEqual([
      "add_tool",
      "crash",
      "echo",
      "env",
      "fail",
      "grandchild",
      "image",
      "pid",
      "sleep",
      "throw",
    ]);
    // `$schema` is dropped, the rest passes through.
    expect(m.tools().find((t) => t.name === "echo")!.parameters).toEqual({
      type: "object",
      properties: { text: { type: "string" } },
      required: ["text"],
    });
  });

  it("refreshes the registry on tools/list_changed", async () => {
    let changes = 0;
    const off = m.onToolsChanged(() => changes++);
    const res = await m.callTool("add_tool", '{"name":"fresh_tool"}');
    expect(res.ok).toBe(true);
    await waitFor(() => m.tools().some((t) => t.name === "fresh_tool"), 5000, "fresh_tool listed");
    off();
    expect(changes).toBeGreaterThanOrEqual(1);
    expect(m.status()[0]!.toolCount).toBe(11);
    expect(await m.callTool("fresh_tool", "")).toMatchObject({ ok: true, output: "ran fresh_tool" });
  });

  it("reports isError results and JSON-RPC errors as errors", async () => {
    expect(await m.callTool("fail", "{}")).toMatchObject({
      ok: false,
      outcome: "error",
      output: 'The tool "fail" failed: the thing is broken',
    });
    expect(await m.callTool("throw", "{}")).toMatchObject({
      ok: false,
      outcome: "error",
      output: 'The tool "throw" failed: deliberate failure',
    });
  });

  it("times out a sleeping tool and stays usable", async () => {
    const res = await m.callTool("sleep", '{"ms": 5000}');
    expect(res).toMatchObject({ ok: false, outcome: "timeout" });
    expect(res.durationMs).toBeGreaterThanOrEqual(900);
    expect(res.durationMs).toBeLessThan(2500);
    expect(await m.callTool("sleep", '{"ms": 10}')).toMatchObject({ ok: true, output: "slept 10 ms" });
  });

  it("stops a call when the caller aborts", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const res = await m.callTool("sleep", '{"ms": 5000}', { signal: ac.signal });
    expect(res).toMatchObject({ ok: false, outcome: "error" });
    expect(res.output).toMatch(/cancelled/);
    expect(res.durationMs).toBeLessThan(900);
    expect(m.status()[0]!.state).toBe("up");
  });

  it("answers crash when the server dies mid-call, then restarts it", async () => {
    const before = m.status()[0]!.restarts;
    const res = await m.callTool("crash", "{}");
    expect(res).toMatchObject({ ok: false, outcome: "crash", server: "toy" });
    expect(res.output).toMatch(/stopped while running "crash"/);
    await waitFor(
      () => m.status()[0]!.state === "up" && m.status()[0]!.restarts > before,
      30_000,
      "toy back up",
    );
    expect(await m.callTool("echo", '{"text":"again"}')).toMatchObject({ ok: true, output: "again" });
  });

  it("kills grandchildren at shutdown", async () => {
    const res = await m.callTool("grandchild", "{}");
    const grandchild = Number(res.output);
    expect(isRunning(grandchild)).toBe(true);
    const toyPid = m.childPids()[0]!;
    const t0 = Date.now();
    await m.close();
    expect(Date.now() - t0).toBeLessThan(8000);
    await waitFor(() => !isRunning(grandchild) && !isRunning(toyPid), 5000, "grandchild gone");
    expect(m.tools()).toEqual([]);
    expect(await m.callTool("echo", '{"text":"x"}')).toMatchObject({ ok: false, outcome: "unknown_tool" });
  });
});

describe("failing servers", () => {
  afterEach(async () => {
    await Promise.all(managers.map((x) => x.close()));
  });

  it("never block the others: a missing command and a server that never answers", async () => {
    const m = manager({
      servers: [
        everythingStdio("good"),
        clientServer({ name: "missing", transport: "stdio", command: "/nonexistent/mcp-server" }),
        clientServer({
          name: "exits",
          transport: "stdio",
          command: process.execPath,
          args: ["-e", "process.exit(3)"],
        }),
        clientServer({
          name: "silent",
          transport: "stdio",
          command: process.execPath,
          args: ["-e", "setInterval(() => {}, 1000)"],
          timeout: 1.5,
        }),
      ],
    });
    const t0 = Date.now();
    await m.connectAll();
    // The silent server gets 1.5 s plus the stdio close sequence; the good one is not held up by it.
    expect(Date.now() - t0).toBeLessThan(20_000);
    const byName = Object.fromEntries(m.status().map((s) => [s.name, s]));
    expect(byName.good!.state).toBe("up");
    expect(byName.missing!.state).toBe("down");
    expect(byName.missing!.lastError).toBe(
      "command `/nonexistent/mcp-server` does not exist or is not executable",
    );
    expect(byName.silent!.state === "down" || byName.silent!.state === "connecting").toBe(true);
    expect(byName.silent!.lastError).toMatch(/no answer within 1.5 s/);
    expect(m.tools().every((t) => t.server === "good")).toBe(true);
    expect((await m.callTool("echo", '{"message":"ok"}')).ok).toBe(true);

    // A server that exits is retried with backoff; one whose command is missing is not (a retry
    // cannot install it): it stays down with its reason.
    await waitFor(() => (m.status().find((s) => s.name === "exits")?.restarts ?? 0) >= 2, 10_000, "retries");
    expect(m.status().find((s) => s.name === "missing")).toMatchObject({ state: "down", restarts: 0 });
    await m.close();
    expect(liveChildren()).toEqual([]);
  });

  it("name a command missing from the add-on image in words, and try again when switched on", async () => {
    const dir = await mkdtemp(join(tmpdir(), "openvoice-path-"));
    const parentEnv = { PATH: dir, SUPERVISOR_TOKEN: "supervisor-token" };
    const m = manager({
      parentEnv,
      servers: [clientServer({ name: "git", transport: "stdio", command: "uvx", args: ["mcp-server-git"] })],
    });
    await m.connectAll();
    expect(m.status()[0]).toMatchObject({
      state: "down",
      restarts: 0,
      lastError: expect.stringMatching(/^command `uvx` not found in the add-on image/) as unknown,
    });
    expect(liveChildren()).toEqual([]);

    // Once the command exists (here: a script that runs server-everything), switching the server
    // off and on again starts it.
    const real = everythingStdio("unused");
    const script = [real.command ?? "", ...real.args].map((a) => `'${a}'`).join(" ");
    await writeFile(join(dir, "uvx"), `#!/bin/sh\nexec ${script}\n`, { mode: 0o755 });
    await m.setEnabled("git", false);
    await m.setEnabled("git", true);
    await waitFor(() => m.status()[0]?.state === "up", 20_000, "git up");
    await m.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe("runtime changes", () => {
  it("enable/disable, add/remove and priority across two real servers", async () => {
    const m = manager({
      servers: [toyStdio("toy", { priority: 1 }), everythingStdio("everything", { priority: 2 })],
    });
    await m.connectAll();
    expect(m.tools().find((t) => t.name === "echo")).toMatchObject({ server: "toy" });
    expect(m.tools().find((t) => t.name === "everything__echo")).toMatchObject({
      server: "everything",
      tool: "echo",
    });
    expect((await m.callTool("everything__echo", '{"message":"via qualified"}')).output).toBe(
      "Echo: via qualified",
    );

    let changes = 0;
    m.onToolsChanged(() => changes++);
    const toyPid = m.childPids()[0]!;

    await m.setEnabled("toy", false);
    expect(changes).toBe(1);
    expect(m.status().find((s) => s.name === "toy")).toMatchObject({
      enabled: false,
      state: "disabled",
      toolCount: 0,
    });
    expect(m.tools().find((t) => t.name === "echo")).toMatchObject({ server: "everything" });
    expect(m.tools().some((t) => t.server === "toy")).toBe(false);
    expect(m.childPids()).toHaveLength(1);
    await waitFor(() => !isRunning(toyPid), 5000, "toy child gone");

    await m.setEnabled("toy", true);
    expect(m.status().find((s) => s.name === "toy")).toMatchObject({ enabled: true, state: "up" });
    expect(m.tools().find((t) => t.name === "echo")).toMatchObject({ server: "toy" });

    await m.removeServer("everything");
    expect(m.status().map((s) => s.name)).toEqual(["toy"]);
    expect(m.tools().some((t) => t.server === "everything")).toBe(false);

    await m.addServer(everythingStdio("moved", { priority: 0, allowed_tools: ["echo", "get-sum"] }));
    expect(
      m
        .tools()
        .filter((t) => t.server === "moved")
        .map((t) => t.name),
    ).toEqual(["echo", "get-sum"]);
    expect(m.tools().find((t) => t.name === "toy__echo")).toMatchObject({ server: "toy" });

    await m.addServer(
      clientServer({ name: "native-one", mode: "native", server_url: "https://example.invalid/mcp" }),
    );
    expect(m.status().some((s) => s.name === "native-one")).toBe(false);

    await expect(m.setEnabled("nope", true)).rejects.toBeInstanceOf(ApiError);
    await m.close();
    expect(liveChildren()).toEqual([]);
  });

  it("before the connection code loads (it loads on the first connect, off the start-up path), servers show as they will start", async () => {
    const m = manager({
      servers: [
        everythingStdio("first"),
        clientServer({ name: "off", transport: "stdio", command: "/nonexistent/mcp-server", enabled: false }),
      ],
    });
    expect(m.status().map((s) => [s.name, s.state, s.enabled, s.toolCount])).toEqual([
      ["first", "connecting", true, 0],
      ["off", "disabled", false, 0],
    ]);
    expect(m.tools()).toEqual([]);
    await m.connectAll();
    expect(m.status().map((s) => [s.name, s.state])).toEqual([
      ["first", "up"],
      ["off", "disabled"],
    ]);
    await m.close();
    expect(liveChildren()).toEqual([]);
  });

  it("closed before it ever connected: starts nothing afterwards", async () => {
    const m = manager({ servers: [everythingStdio("never")] });
    await m.close();
    await m.connectAll();
    expect(m.status().map((s) => [s.name, s.state])).toEqual([["never", "disabled"]]);
    expect(liveChildren()).toEqual([]);
  });

  it("ignores native servers given to the constructor", () => {
    const m = manager({
      servers: [clientServer({ name: "n", mode: "native", server_url: "https://example.invalid/mcp" })],
    });
    expect(m.status()).toEqual([]);
  });
});
