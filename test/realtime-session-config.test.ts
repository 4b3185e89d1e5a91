/**
 * `buildSessionUpdate` (pure) for three example configurations: Home Assistant native with a per-tool
 * approval map, a mixed native + client setup, and a client-heavy setup with semantic VAD.
 */
import { describe, expect, it } from "vitest";
import type {
  RealtimeSessionCreateRequest,
  RealtimeToolsConfigUnion,
} from "openai/resources/realtime/realtime";
import { ConfigSchema, McpServerSchema, type Config, type McpServerConfig } from "../src/config/model.js";
import { deriveMcpServers } from "../src/ha/derive.js";
import {
  buildSessionUpdate,
  buildToolsUpdate,
  nativeMcpTool,
  summariseTurns,
  type SessionConfigInput,
} from "../src/realtime/session-config.js";
import { loadConfig } from "../src/config/load.js";
import { requestHeaders } from "../src/mcp/transport.js";
import { tool } from "./fake-realtime/helpers.js";

const ENV = { OPENAI_API_KEY: "sk-test-123", HA_TOKEN: "ha-token-456" };

async function seedExample(name: string): Promise<Config> {
  const path = new URL(`./fixtures/configs/${name}.yaml`, import.meta.url).pathname;
  const r = await loadConfig({ form: "yaml", path }, ENV);
  if (!r.ok) throw new Error(`${name}: ${JSON.stringify(r.problems)}`);
  return r.config;
}

/** 1: Home Assistant reachable from the internet: native, two tools need no approval. */
const haNative = ConfigSchema.parse({
  openai: { api_key: "sk-example" },
  home_assistant: {
    public_url: "https://home.example.org",
    token: "llat-example",
    require_approval: { HassTurnOn: "never", HassTurnOff: "never", HassLockUnlock: "always" },
  },
});

/** 2: a remote native server plus a local stdio server used as a client. */
const mixed = ConfigSchema.parse({
  openai: { api_key: "sk-example", voice: "cedar", instructions: "You are Jarvis." },
  mcp_servers: [
    {
      name: "deepwiki",
      mode: "native",
      server_url: "https://mcp.deepwiki.com/mcp",
      description: "Answers questions about GitHub repositories",
      require_approval: "never",
      allowed_tools: ["ask_question", "read_wiki_structure"],
    },
    {
      name: "everything",
      mode: "client",
      transport: "stdio",
      command: "mcp-server-everything",
      require_approval: { echo: "never" },
    },
  ],
});

/** 3: client tools only (plus one authenticated native server), semantic VAD, a custom transcriber. */
const clientHeavy = ConfigSchema.parse({
  openai: { api_key: "sk-example", turn_detection: "semantic_vad", transcription_model: "gpt-4o-transcribe" },
  mcp_servers: [
    { name: "files", mode: "client", transport: "stdio", command: "mcp-server-filesystem", args: ["/share"] },
    {
      name: "search",
      mode: "native",
      server_url: "https://search.example.com/mcp",
      authorization: "Bearer search-key",
      headers: { "X-Team": "home" },
      require_approval: "always",
    },
  ],
});

function input(
  config: Config,
  servers: McpServerConfig[],
  functions = [tool("everything", "echo")],
): SessionConfigInput {
  return {
    openai: config.openai,
    turn: "server_vad",
    native: servers.filter((s) => s.mode === "native"),
    functions,
    contextTokens: config.cost.context_tokens,
  };
}

function session(config: SessionConfigInput): RealtimeSessionCreateRequest {
  const ev = buildSessionUpdate(config);
  expect(ev.type).toBe("session.update");
  if (ev.session.type !== "realtime") throw new Error("not a realtime session");
  return ev.session;
}

const mcpEntries = (s: RealtimeSessionCreateRequest): RealtimeToolsConfigUnion.Mcp[] =>
  (s.tools ?? []).filter((t): t is RealtimeToolsConfigUnion.Mcp => t.type === "mcp");

describe("buildSessionUpdate: the seed's three example configurations", () => {
  const clientTools = {
    "client-only": [tool("filesystem", "read_file"), tool("filesystem", "list_directory")],
  };

  it("native-only: Home Assistant as a type:mcp entry, no function tools", async () => {
    const config = await seedExample("native-only");
    const s = session(input(config, config.mcp_servers, []));
    expect(s).toMatchSnapshot();
    expect(s.audio?.output?.voice).toBe("coral");
    expect(s.tools).toEqual([
      {
        type: "mcp",
        server_label: "home_assistant",
        server_url: "https://homeassistant.local/mcp_server/sse",
        authorization: "ha-token-456",
        server_description: "Control smart home devices",
        allowed_tools: ["get_state", "call_service", "list_entities"],
        require_approval: "never",
      },
    ]);
  });

  it("client-only: function tools only", async () => {
    const config = await seedExample("client-only");
    const s = session(input(config, config.mcp_servers, clientTools["client-only"]));
    expect(s).toMatchSnapshot();
    expect((s.tools ?? []).every((t) => t.type === "function")).toBe(true);
    expect((s.tools ?? []).map((t) => (t.type === "function" ? t.name : ""))).toEqual([
      "read_file",
      "list_directory",
    ]);
  });

  it("hybrid: the native entry and the client function tools together", async () => {
    const config = await seedExample("hybrid");
    const functions = [tool("filesystem", "read_file"), tool("git", "git_status")];
    const s = session(input(config, config.mcp_servers, functions));
    expect(s).toMatchSnapshot();
    expect(
      (s.tools ?? []).map((t) => (t.type === "mcp" ? `mcp:${t.server_label}` : `function:${t.name}`)),
    ).toEqual(["mcp:home_assistant", "function:read_file", "function:git_status"]);
    expect(mcpEntries(s)[0]).toMatchObject({
      require_approval: "never",
      server_description: "Smart home control",
    });
  });
});

describe("buildSessionUpdate: more configurations", () => {
  it("example 1 — Home Assistant native with a per-tool approval map", () => {
    const derived = deriveMcpServers(haNative, {});
    const s = session(input(haNative, derived.servers, []));
    expect(s).toMatchSnapshot();
    expect(s.type).toBe("realtime");
    expect(s.audio?.input?.format).toEqual({ type: "audio/pcm", rate: 24000 });
    expect(s.audio?.output?.format).toEqual({ type: "audio/pcm", rate: 24000 });
    expect(s.audio?.output?.voice).toBe("marin");
    expect(s.audio?.input?.turn_detection).toMatchObject({ type: "server_vad" });
    expect(s.audio?.input?.transcription).toEqual({ model: "gpt-4o-mini-transcribe" });
    const [ha, ...rest] = mcpEntries(s);
    expect(rest).toHaveLength(0);
    expect(ha).toMatchObject({
      type: "mcp",
      server_label: "home_assistant",
      server_url: "https://home.example.org/mcp_server/sse",
      authorization: "llat-example",
      server_description: "Home Assistant",
    });
    // The seed's map is converted, never passed through.
    expect(ha!.require_approval).toEqual({
      always: { tool_names: ["HassLockUnlock"] },
      never: { tool_names: ["HassTurnOff", "HassTurnOn"] },
    });
    expect(Object.keys(ha!.require_approval as object).sort()).toEqual(["always", "never"]);
  });

  it("example 2 — native and client tools live in the same session", () => {
    const s = session(
      input(mixed, mixed.mcp_servers, [tool("everything", "add"), tool("everything", "echo")]),
    );
    expect(s).toMatchSnapshot();
    expect(s.instructions).toBe("You are Jarvis.");
    expect(s.audio?.output?.voice).toBe("cedar");
    expect((s.tools ?? []).map((t) => `${t.type}:${t.type === "mcp" ? t.server_label : t.name}`)).toEqual([
      "mcp:deepwiki",
      "function:add",
      "function:echo",
    ]);
    const [deepwiki] = mcpEntries(s);
    expect(deepwiki).toEqual({
      type: "mcp",
      server_label: "deepwiki",
      server_url: "https://mcp.deepwiki.com/mcp",
      server_description: "Answers questions about GitHub repositories",
      allowed_tools: ["ask_question", "read_wiki_structure"],
      require_approval: "never",
    });
    expect(deepwiki).not.toHaveProperty("authorization");
    expect(deepwiki).not.toHaveProperty("headers");
    const fn = (s.tools ?? []).find((t) => t.type === "function");
    expect(fn).toEqual({
      type: "function",
      name: "add",
      description: "add of everything",
      parameters: { type: "object", properties: { message: { type: "string" } } },
    });
    expect(s.tool_choice).toBe("auto");
  });

  it("example 3 — semantic VAD, authenticated native server, client turn mode", () => {
    const base = input(clientHeavy, clientHeavy.mcp_servers, [tool("files", "read_file")]);
    const s = session(base);
    expect(s).toMatchSnapshot();
    expect(s.audio?.input?.turn_detection).toEqual({
      type: "semantic_vad",
      create_response: true,
      interrupt_response: true,
    });
    expect(s.audio?.input?.transcription).toEqual({ model: "gpt-4o-transcribe" });
    expect(mcpEntries(s)[0]).toMatchObject({
      server_label: "search",
      authorization: "search-key",
      headers: { "X-Team": "home" },
      require_approval: "always",
    });
    const client = session({ ...base, turn: "client" });
    expect(client.audio?.input?.turn_detection).toBeNull();
  });

  it("bounds the context each answer re-reads (cost.context_tokens), or leaves the model's limit at 0", async () => {
    const config = await seedExample("client-only");
    expect(session(input(config, [])).truncation).toEqual({
      type: "retention_ratio",
      retention_ratio: 0.8,
      token_limits: { post_instructions: 8000 },
    });
    expect(session({ ...input(config, []), contextTokens: 0 })).not.toHaveProperty("truncation");
  });

  it("appends carried-over context to the instructions", () => {
    const s = session({ ...input(mixed, mixed.mcp_servers), context: "User: hi\nAssistant: hello" });
    expect(s.instructions).toContain("You are Jarvis.");
    expect(s.instructions).toContain("User: hi\nAssistant: hello");
  });

  it("a per-tool map with only always entries, and tools-only updates", () => {
    const cfg = ConfigSchema.parse({
      openai: { api_key: "k" },
      mcp_servers: [
        { name: "n", mode: "native", server_url: "https://n.example", require_approval: { a: "always" } },
      ],
    });
    const ev = buildToolsUpdate(cfg.mcp_servers, []);
    expect(ev).toEqual({
      type: "session.update",
      session: {
        type: "realtime",
        tools: [
          {
            type: "mcp",
            server_label: "n",
            server_url: "https://n.example",
            require_approval: { always: { tool_names: ["a"] } },
          },
        ],
      },
    });
  });
});

describe("native MCP authorization", () => {
  const entry = (authorization: string, headers: Record<string, string> = {}) =>
    nativeMcpTool(
      McpServerSchema.parse({
        name: "s",
        mode: "native",
        server_url: "https://s.example/mcp",
        authorization,
        headers,
      }),
    );

  it("sends the bare access token: the API adds the scheme itself", () => {
    expect(entry("Bearer abc.def").authorization).toBe("abc.def");
    expect(entry("bearer abc").authorization).toBe("abc");
    expect(entry("BEARER   abc ").authorization).toBe("abc");
    expect(entry("abc").authorization).toBe("abc");
    // Only a leading scheme is removed.
    expect(entry("token-with-Bearer inside").authorization).toBe("token-with-Bearer inside");
  });

  it("keeps headers exactly as configured, an Authorization header included", () => {
    const e = entry("Bearer abc", { Authorization: "Bearer other", "X-Home": "a" });
    expect(e.authorization).toBe("abc");
    expect(e.headers).toEqual({ Authorization: "Bearer other", "X-Home": "a" });
  });

  it("a client-mode server keeps the header value as written (it is an HTTP header there)", () => {
    const cfg = McpServerSchema.parse({
      name: "c",
      mode: "client",
      transport: "http",
      server_url: "https://c.example/mcp",
      authorization: "Bearer abc",
    });
    expect(requestHeaders(cfg)).toEqual({ Authorization: "Bearer abc" });
  });
});

describe("summariseTurns", () => {
  it("keeps the newest turns within the budget", () => {
    const turns = Array.from({ length: 30 }, (_, i) => ({
      role: i % 2 ? ("assistant" as const) : ("user" as const),
      text: `turn ${i} ${"x".repeat(40)}`,
    }));
    const s = summariseTurns(turns, 300);
    expect(s.length).toBeLessThanOrEqual(300);
    expect(s.endsWith(`Assistant: turn 29 ${"x".repeat(40)}`)).toBe(true);
    expect(s).not.toContain("turn 0 ");
  });

  it("cuts a single over-long turn at the front and skips empty ones", () => {
    const s = summariseTurns(
      [
        { role: "user", text: "a".repeat(500) + "END" },
        { role: "assistant", text: "  " },
      ],
      100,
    );
    expect(s.startsWith("User: …")).toBe(true);
    expect(s.endsWith("END")).toBe(true);
    expect(s.length).toBeLessThanOrEqual(100);
  });
});
