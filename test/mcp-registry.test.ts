/**
 * Pure parts of client MCP: the tool registry (priority, allowed_tools, names), argument parsing,
 * result text, backoff and the stdio child's environment.
 */
import { describe, expect, it } from "vitest";
import { backoffDelay } from "../src/mcp/backoff.js";
import { childEnvironment } from "../src/mcp/env.js";
import { parseArguments } from "../src/mcp/manager.js";
import {
  FUNCTION_NAME_RE,
  ToolRegistry,
  functionParameters,
  qualifiedName,
  sanitizeFunctionName,
  type ListedTool,
  type ServerTools,
} from "../src/mcp/registry.js";
import { MAX_OUTPUT_CHARS, resultText } from "../src/mcp/result.js";

const tool = (name: string, description = `${name} tool`): ListedTool => ({
  name,
  description,
  inputSchema: { type: "object", properties: { x: { type: "string" } } },
});

const server = (name: string, priority: number, tools: string[], allowed?: string[]): ServerTools => ({
  server: name,
  priority,
  tools: tools.map((t) => tool(t)),
  ...(allowed ? { allowedTools: allowed } : {}),
});

const routes = (r: ToolRegistry): string[] => r.tools().map((t) => `${t.name}=${t.server}/${t.tool}`);

describe("ToolRegistry: priority conflicts", () => {
  const servers = [
    server("alpha", 20, ["turn_on", "search", "only_alpha"]),
    server("beta", 10, ["turn_on", "search"]),
    server("gamma", 30, ["turn_on", "gamma_thing"]),
  ];

  it("gives the bare name to the lowest priority number and qualifies the others", () => {
    const r = new ToolRegistry(servers);
    expect(routes(r)).toEqual([
      "alpha__search=alpha/search",
      "alpha__turn_on=alpha/turn_on",
      "gamma__turn_on=gamma/turn_on",
      "gamma_thing=gamma/gamma_thing",
      "only_alpha=alpha/only_alpha",
      "search=beta/search",
      "turn_on=beta/turn_on",
    ]);
    expect(r.get("turn_on")?.server).toBe("beta");
    expect(r.get("gamma__turn_on")?.tool).toBe("turn_on");
    expect(r.get("nope")).toBeUndefined();
  });

  it("is deterministic whatever the input order, and breaks priority ties by server name", () => {
    const a = routes(new ToolRegistry(servers));
    const b = routes(new ToolRegistry([...servers].reverse()));
    const c = routes(new ToolRegistry([servers[2]!, servers[0]!, servers[1]!]));
    expect(b).toEqual(a);
    expect(c).toEqual(a);

    const tie = new ToolRegistry([server("zeta", 5, ["x"]), server("eta", 5, ["x"])]);
    expect(tie.get("x")?.server).toBe("eta");
    expect(tie.get("zeta__x")?.server).toBe("zeta");
  });

  it("moves the bare name when the winner goes away", () => {
    const r = new ToolRegistry([servers[0]!, servers[2]!]);
    expect(r.get("turn_on")?.server).toBe("alpha");
    expect(r.get("gamma__turn_on")?.server).toBe("gamma");
    expect(r.get("alpha__turn_on")).toBeUndefined();
  });

  it("keeps a qualified name that collides with a bare one distinct", () => {
    // Server "a" has a tool literally named "b__x"; server "b" loses "x" and would be "b__x" too.
    const r = new ToolRegistry([server("a", 1, ["x", "b__x"]), server("b", 2, ["x"])]);
    const names = r.tools().map((t) => t.name);
    expect(new Set(names).size).toBe(names.length);
    expect(r.get("b__x")?.server).toBe("a");
    const fromB = r.tools().find((t) => t.server === "b");
    expect(fromB?.tool).toBe("x");
    expect(fromB?.name).toMatch(/^b__x_[0-9a-f]{8}$/);
  });

  it("lists tools sorted by name and reports size and per-server tools", () => {
    const r = new ToolRegistry(servers);
    const names = r.tools().map((t) => t.name);
    expect(names).toEqual([...names].sort());
    expect(r.size).toBe(7);
    expect(r.toolsOf("gamma").map((t) => t.name)).toEqual(["gamma__turn_on", "gamma_thing"]);
  });
});

describe("ToolRegistry: allowed_tools", () => {
  it("exposes only the allowed tools of a server and leaves the others alone", () => {
    const r = new ToolRegistry([
      server("ha", 1, ["turn_on", "turn_off", "get_state"], ["turn_on", "get_state", "not_there"]),
      server("files", 2, ["read", "write"]),
    ]);
    expect(routes(r)).toEqual([
      "get_state=ha/get_state",
      "read=files/read",
      "turn_on=ha/turn_on",
      "write=files/write",
    ]);
  });

  it("lets a filtered-out tool's name go to a lower-priority server", () => {
    const r = new ToolRegistry([server("ha", 1, ["search"], []), server("web", 2, ["search"])]);
    expect(routes(r)).toEqual(["search=web/search"]);
  });
});

describe("function names", () => {
  it("replaces characters Realtime rejects", () => {
    expect(sanitizeFunctionName("read.file")).toBe("read_file");
    expect(sanitizeFunctionName("höhe abc/def")).toBe("h_he_abc_def");
    expect(sanitizeFunctionName("ok-name_1")).toBe("ok-name_1");
    expect(sanitizeFunctionName("")).toMatch(/^tool_[0-9a-f]{8}$/);
  });

  it("cuts names over 64 characters with a stable hash suffix", () => {
    const long = "a".repeat(80);
    const cut = sanitizeFunctionName(long);
    expect(cut).toHaveLength(64);
    expect(cut).toMatch(FUNCTION_NAME_RE);
    expect(cut).toMatch(/^a{55}_[0-9a-f]{8}$/);
    expect(sanitizeFunctionName(long)).toBe(cut);
    // Same 55-character prefix, different tails → different names.
    expect(sanitizeFunctionName(`${"a".repeat(70)}b`)).not.toBe(cut);
    expect(sanitizeFunctionName("x".repeat(64))).toBe("x".repeat(64));
  });

  it("qualifies long names within 64 characters, distinct per tool", () => {
    const server = "a_server_with_a_long_name_of_exactly_forty_eight_";
    const t1 = `${"t".repeat(40)}_one`;
    const t2 = `${"t".repeat(40)}_two`;
    const r = new ToolRegistry([
      { server: "first", priority: 1, tools: [tool(t1), tool(t2)] },
      { server, priority: 2, tools: [tool(t1), tool(t2)] },
    ]);
    const mine = r.toolsOf(server);
    expect(mine).toHaveLength(2);
    for (const t of mine) {
      expect(t.name).toMatch(FUNCTION_NAME_RE);
      expect(t.name.length).toBeLessThanOrEqual(64);
      expect(t.name.startsWith(`${server}__`)).toBe(true);
    }
    expect(mine[0]!.name).not.toBe(mine[1]!.name);
    expect(qualifiedName(server, t1)).toBe(mine.find((t) => t.tool === t1)!.name);
  });

  it("gives two raw names that sanitise alike on one server distinct exposed names", () => {
    const r = new ToolRegistry([server("s", 1, ["get.state", "get_state"])]);
    const names = r.tools().map((t) => t.name);
    expect(names).toHaveLength(2);
    expect(new Set(names).size).toBe(2);
    for (const n of names) expect(n).toMatch(FUNCTION_NAME_RE);
  });

  it("exposes every tool under a valid name", () => {
    const weird = ["a b", "ü", "x".repeat(200), "ok", "-", "_".repeat(65), "tool:1", "tool:2"];
    const r = new ToolRegistry([server("one", 1, weird), server("two", 2, weird)]);
    expect(r.size).toBe(weird.length * 2);
    for (const t of r.tools()) expect(t.name).toMatch(FUNCTION_NAME_RE);
  });
});

describe("schemas and descriptions", () => {
  it("passes the JSON Schema through, minus $schema, as an object with properties", () => {
    const schema = {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      properties: { entity: { type: "string", enum: ["a", "b"], description: "which" } },
      required: ["entity"],
      additionalProperties: false,
    };
    expect(functionParameters(schema)).toEqual({
      type: "object",
      properties: { entity: { type: "string", enum: ["a", "b"], description: "which" } },
      required: ["entity"],
      additionalProperties: false,
    });
    expect(functionParameters({ type: "object" })).toEqual({ type: "object", properties: {} });
  });

  it("uses the description, else the title", () => {
    const r = new ToolRegistry([
      {
        server: "s",
        priority: 1,
        tools: [
          { name: "a", title: "Title A", inputSchema: { type: "object" } },
          { name: "b", title: "Title B", description: "Desc B", inputSchema: { type: "object" } },
          { name: "c", inputSchema: { type: "object" } },
        ],
      },
    ]);
    expect(r.tools().map((t) => t.description)).toEqual(["Title A", "Desc B", ""]);
  });
});

describe("parseArguments", () => {
  it("accepts an object or nothing", () => {
    expect(parseArguments('{"a":1}')).toEqual({ ok: true, args: { a: 1 } });
    expect(parseArguments("  ")).toEqual({ ok: true, args: {} });
  });
  it.each(["{bad", "[1,2]", "null", "42", '"text"'])("rejects %s", (input) => {
    const r = parseArguments(input);
    expect(r.ok).toBe(false);
  });
});

describe("resultText", () => {
  it("joins text and summarises images, audio, links and resources", () => {
    const text = resultText({
      content: [
        { type: "text", text: "first" },
        { type: "image", data: "AAAA", mimeType: "image/png" },
        { type: "audio", data: "AAAAAA==", mimeType: "audio/wav" },
        { type: "resource_link", uri: "file:///a.txt", name: "a.txt" },
        { type: "resource", resource: { uri: "file:///b.txt", text: "inside b" } },
        { type: "resource", resource: { uri: "file:///c.bin", blob: "AAAA", mimeType: "application/x" } },
      ],
    });
    expect(text).toBe(
      [
        "first",
        "[image: image/png, 3 bytes]",
        "[audio: audio/wav, 4 bytes]",
        "[resource link: a.txt <file:///a.txt>]",
        "[resource <file:///b.txt>]\ninside b",
        "[resource <file:///c.bin>: application/x, 3 bytes]",
      ].join("\n"),
    );
  });

  it("falls back to structured content, then to a note", () => {
    expect(resultText({ content: [], structuredContent: { temp: 21 } })).toBe('{"temp":21}');
    expect(resultText({ content: [] })).toBe("(no output)");
    expect(resultText({ content: [], isError: true })).toBe("The tool failed without a message.");
  });

  it("caps very long output", () => {
    const text = resultText({ content: [{ type: "text", text: "x".repeat(MAX_OUTPUT_CHARS * 2) }] });
    expect(text.length).toBeLessThanOrEqual(MAX_OUTPUT_CHARS);
    expect(text).toMatch(/output truncated: \d+ more characters\]$/);
  });
});

describe("backoffDelay", () => {
  const b = { initialMs: 100, maxMs: 1000 };
  it("doubles per attempt, jitters within [d/2, d] and stays capped", () => {
    expect(backoffDelay(b, 0, () => 0)).toBe(50);
    expect(backoffDelay(b, 0, () => 1)).toBe(100);
    expect(backoffDelay(b, 2, () => 1)).toBe(400);
    expect(backoffDelay(b, 3, () => 0.5)).toBe(600);
    expect(backoffDelay(b, 10, () => 1)).toBe(1000);
    expect(backoffDelay(b, 1000, () => 1)).toBe(1000);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(b, 4);
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });
});

describe("childEnvironment", () => {
  const parent = {
    PATH: "/usr/bin",
    HOME: "/root",
    LANG: "C.UTF-8",
    TZ: "Europe/Berlin",
    OPENAI_API_KEY: "sk-secret",
    SUPERVISOR_TOKEN: "super-secret",
    HASSIO_TOKEN: "hassio-secret",
    RANDOM_THING: "x",
    SHELL: "() { evil; }",
  };

  it("inherits the allow-list only, never secrets or shell functions", () => {
    const env = childEnvironment({}, parent);
    expect(env).toEqual({ PATH: "/usr/bin", HOME: "/root", LANG: "C.UTF-8", TZ: "Europe/Berlin" });
  });

  it("adds the configured variables on top", () => {
    const env = childEnvironment({ API_URL: "http://x", PATH: "/opt/bin" }, parent);
    expect(env.API_URL).toBe("http://x");
    expect(env.PATH).toBe("/opt/bin");
    expect(env.OPENAI_API_KEY).toBeUndefined();
  });
});
