import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig, parseConfig, type LoadResult } from "../src/config/load.js";
import { maskSecrets, MASK, renderEffectiveConfig } from "../src/config/mask.js";
import type { Config } from "../src/config/model.js";
import { formatProblem } from "../src/config/problems.js";

const fixture = (name: string): string => new URL(`./fixtures/configs/${name}`, import.meta.url).pathname;
const ENV = { OPENAI_API_KEY: "sk-test-123", HA_TOKEN: "ha-token-456" };

function ok(r: LoadResult): Config {
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.problems.map(formatProblem).join("\n")}`);
  return r.config;
}

function problemLines(r: LoadResult): string[] {
  if (r.ok) throw new Error("expected problems, the config was accepted");
  return r.problems.map(formatProblem);
}

const yaml = (text: string, env: Record<string, string> = ENV): LoadResult => parseConfig(text, "yaml", env);
const options = (doc: unknown): LoadResult => parseConfig(JSON.stringify(doc), "options", {});

describe("the seed's example configurations", () => {
  it("native-only loads with substituted secrets and seed defaults", async () => {
    const r = await loadConfig({ form: "yaml", path: fixture("native-only.yaml") }, ENV);
    const c = ok(r);
    expect(r.warnings).toEqual([]);
    expect(c.openai).toMatchObject({ api_key: "sk-test-123", model: "gpt-realtime", voice: "coral" });
    expect(c.home_assistant).toMatchObject({ url: "https://homeassistant.local", token: "ha-token-456" });
    expect(c.mcp_servers).toHaveLength(1);
    expect(c.mcp_servers[0]).toMatchObject({
      name: "home_assistant",
      mode: "native",
      enabled: true,
      priority: 100,
      server_url: "https://homeassistant.local/mcp_server/sse",
      authorization: "Bearer ha-token-456",
      description: "Control smart home devices",
      require_approval: "never",
      allowed_tools: ["get_state", "call_service", "list_entities"],
      timeout: 30,
    });
  });

  it("client-only loads a stdio server with its env", async () => {
    const c = ok(await loadConfig({ form: "yaml", path: fixture("client-only.yaml") }, ENV));
    expect(c.mcp_servers).toEqual([
      expect.objectContaining({
        name: "filesystem",
        mode: "client",
        transport: "stdio",
        command: "uvx",
        args: ["mcp-server-filesystem", "/Users/username/Documents"],
        env: { MCP_DEBUG: "1" },
        require_approval: "always",
        priority: 100,
        timeout: 30,
      }),
    ]);
  });

  it("hybrid loads three servers in file order with their priorities", async () => {
    const c = ok(await loadConfig({ form: "yaml", path: fixture("hybrid.yaml") }, ENV));
    expect(c.mcp_servers.map((s) => [s.name, s.mode, s.priority])).toEqual([
      ["home_assistant", "native", 100],
      ["filesystem", "client", 200],
      ["git", "client", 200],
    ]);
    expect(c.mcp_servers[0]!.allowed_tools).toBeUndefined();
    expect(c.mcp_servers[2]!.args).toEqual(["mcp-server-git", "--repository", "/Users/username/projects"]);
  });

  it("the README's example loads with only OPENAI_API_KEY set", async () => {
    const path = new URL("../examples/openvoice.yaml", import.meta.url).pathname;
    const r = await loadConfig({ form: "yaml", path }, { OPENAI_API_KEY: "sk-x" });
    expect(ok(r).mcp_servers.map((s) => s.name)).toEqual(["everything"]);
    expect(r.warnings).toEqual([]);
  });

  it("documented defaults apply to a minimal configuration", () => {
    const c = ok(yaml("openai: {api_key: k}"));
    expect(c.listen).toEqual({
      host: "0.0.0.0",
      satellite_port: 8765,
      ingress_port: 8099,
      firmware_port: 8080,
    });
    expect(c.approvals.timeout_s).toBe(30);
    expect(c.log_level).toBe("info");
    expect(c.mcp_servers).toEqual([]);
    expect(c.satellites.devices).toEqual([]);
    expect(c.satellites.dialects).toEqual([]);
  });
});

describe("malformed configurations name the path of the problem", () => {
  const cases: [string, string, string][] = [
    ["missing api_key", "openai: {model: gpt-realtime}", "openai.api_key: required"],
    ["missing openai block", "log_level: info", "openai: required"],
    [
      "stdio without command",
      "openai: {api_key: k}\nmcp_servers: {filesystem: {mode: client, transport: stdio}}",
      "mcp_servers.filesystem.command: required when transport is stdio",
    ],
    [
      "client without transport",
      "openai: {api_key: k}\nmcp_servers: {fs: {mode: client, command: x}}",
      "mcp_servers.fs.transport: required when mode is client",
    ],
    [
      "native without server_url",
      "openai: {api_key: k}\nmcp_servers: {ha: {mode: native}}",
      "mcp_servers.ha.server_url: required when mode is native",
    ],
    [
      "http without server_url",
      "openai: {api_key: k}\nmcp_servers: {web: {mode: client, transport: http}}",
      "mcp_servers.web.server_url: required when transport is http",
    ],
    [
      "native with stdio",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: 'https://a.b/c', transport: stdio}}",
      "mcp_servers.x.transport: stdio is only possible in client mode",
    ],
    [
      "unknown mode",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: remote, server_url: 'https://a.b'}}",
      "mcp_servers.x.mode: ",
    ],
    [
      "bad require_approval",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: 'https://a.b', require_approval: sometimes}}",
      "mcp_servers.x.require_approval: expected always, never or a map {tool: always|never}",
    ],
    [
      "bad per-tool approval",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: 'https://a.b', require_approval: {delete: maybe}}}",
      "mcp_servers.x.require_approval",
    ],
    [
      "priority not a number",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: 'https://a.b', priority: high}}",
      "mcp_servers.x.priority: ",
    ],
    [
      "negative timeout",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: 'https://a.b', timeout: -1}}",
      "mcp_servers.x.timeout: ",
    ],
    [
      "server_url not a URL",
      "openai: {api_key: k}\nmcp_servers: {x: {mode: native, server_url: not-a-url}}",
      "mcp_servers.x.server_url: ",
    ],
    [
      "bad server name",
      "openai: {api_key: k}\nmcp_servers: {'bad name!': {mode: native, server_url: 'https://a.b'}}",
      "mcp_servers.bad name!.name: letters, digits, _ and - only",
    ],
    [
      "args not a list",
      "openai: {api_key: k}\nmcp_servers: {fs: {mode: client, transport: stdio, command: x, args: -v}}",
      "mcp_servers.fs.args: ",
    ],
    [
      "bad env name",
      "openai: {api_key: k}\nmcp_servers: {fs: {mode: client, transport: stdio, command: x, env: {'1BAD': v}}}",
      "mcp_servers.fs.env.1BAD: ",
    ],
    ["unknown voice", "openai: {api_key: k, voice: robot}", "openai.voice: "],
    [
      "base_url not a websocket URL",
      "openai: {api_key: k, base_url: 'https://api.openai.com/v1/realtime'}",
      "openai.base_url: ",
    ],
    ["port out of range", "openai: {api_key: k}\nlisten: {satellite_port: 70000}", "listen.satellite_port: "],
    ["unknown log level", "openai: {api_key: k}\nlog_level: verbose", "log_level: "],
    [
      "approval timeout too short",
      "openai: {api_key: k}\napprovals: {timeout_s: 1}",
      "approvals.timeout_s: ",
    ],
    [
      "short satellite token",
      "openai: {api_key: k}\nsatellites: {token: short}",
      "satellites.token: at least 16 characters",
    ],
    [
      "device without token",
      "openai: {api_key: k}\nsatellites: {devices: [{id: kitchen}]}",
      "satellites.devices.kitchen.token: a device needs a token, an address or both",
    ],
    [
      "duplicate device id",
      "openai: {api_key: k}\nsatellites: {devices: [{id: a, token: 0123456789abcdef}, {id: a, token: 0123456789abcdef}]}",
      "satellites.devices.a.id: duplicate device id",
    ],
    [
      "mcp_servers a string",
      "openai: {api_key: k}\nmcp_servers: lots",
      "mcp_servers: expected a map of servers by name or a list",
    ],
    [
      "server entry not a mapping",
      "openai: {api_key: k}\nmcp_servers: {fs: true}",
      "mcp_servers.fs: expected a server object",
    ],
    ["root not a mapping", "- a\n- b", "configuration: expected a mapping of options"],
    ["broken YAML", "openai: {api_key: k\n", "configuration: not valid YAML"],
  ];

  it.each(cases)("%s", (_label, text, expected) => {
    const lines = problemLines(yaml(text));
    expect(
      lines.some((l) => l.startsWith(expected)),
      `got:\n${lines.join("\n")}`,
    ).toBe(true);
  });

  it("reports every problem at once, not only the first", () => {
    const lines = problemLines(
      yaml("openai: {voice: robot}\nmcp_servers: {a: {mode: client}, b: {mode: native}}\nlog_level: loud"),
    );
    expect(lines).toEqual(
      expect.arrayContaining([
        "openai.api_key: required",
        expect.stringMatching(/^openai\.voice: /),
        "mcp_servers.a.transport: required when mode is client",
        "mcp_servers.b.server_url: required when mode is native",
        expect.stringMatching(/^log_level: /),
      ]),
    );
  });

  it("a duplicate server name in the list form is named", () => {
    const lines = problemLines(
      yaml(
        "openai: {api_key: k}\nmcp_servers:\n  - {name: fs, mode: native, server_url: 'https://a.b'}\n" +
          "  - {name: fs, mode: native, server_url: 'https://c.d'}",
      ),
    );
    expect(lines).toContain('mcp_servers.fs.name: duplicate server name "fs"');
  });

  it("a list entry without a name is named by its index", () => {
    const lines = problemLines(
      yaml("openai: {api_key: k}\nmcp_servers:\n  - {mode: native, server_url: 'https://a.b'}"),
    );
    expect(lines).toContain("mcp_servers[0].name: required");
  });

  it("a missing file is a problem naming the file", async () => {
    const r = await loadConfig({ form: "yaml", path: "/nonexistent/openvoice.yaml" }, ENV);
    expect(problemLines(r)).toEqual(["/nonexistent/openvoice.yaml: file not found"]);
  });
});

describe("environment substitution", () => {
  it("replaces references inside strings, anywhere in the document", () => {
    const c = ok(
      yaml(
        "openai: {api_key: '${KEY}', instructions: 'Hello ${WHO}, from ${WHO}'}\n" +
          "mcp_servers:\n  fs: {mode: client, transport: stdio, command: '${BIN}', args: ['${DIR}/docs'], env: {T: '${TOK}'}}",
        { KEY: "sk-1", WHO: "Ada", BIN: "/usr/bin/mcp", DIR: "/srv", TOK: "t0k" },
      ),
    );
    expect(c.openai.api_key).toBe("sk-1");
    expect(c.openai.instructions).toBe("Hello Ada, from Ada");
    expect(c.mcp_servers[0]).toMatchObject({
      command: "/usr/bin/mcp",
      args: ["/srv/docs"],
      env: { T: "t0k" },
    });
  });

  it("a missing variable is an error that names it and the option", () => {
    const lines = problemLines(yaml("openai: {api_key: '${OPENAI_API_KEY}'}", {}));
    expect(lines).toEqual(["openai.api_key: environment variable OPENAI_API_KEY is not set"]);
  });

  it("names the server of a missing variable in the list form", () => {
    const lines = problemLines(
      yaml(
        "openai: {api_key: k}\nmcp_servers:\n  - {name: ha, mode: native, server_url: 'https://a.b', authorization: 'Bearer ${T}'}",
        {},
      ),
    );
    expect(lines).toEqual(["mcp_servers.ha.authorization: environment variable T is not set"]);
  });

  it("$${...} is a literal and malformed references are errors", () => {
    expect(ok(yaml("openai: {api_key: k, instructions: 'say $${NAME}'}", {})).openai.instructions).toBe(
      "say ${NAME}",
    );
    expect(problemLines(yaml("openai: {api_key: '${1X}'}", {}))).toEqual([
      'openai.api_key: invalid variable reference "${1X}"',
    ]);
  });

  it("is not applied to the add-on options form", () => {
    expect(ok(options({ openai: { api_key: "${NOT_A_VAR}" } })).openai.api_key).toBe("${NOT_A_VAR}");
  });
});

describe("legacy v0.1 home_assistant.mcp block", () => {
  it("is migrated to a client SSE server with a deprecation warning", async () => {
    const r = await loadConfig({ form: "yaml", path: fixture("legacy-v01.yaml") }, ENV);
    const c = ok(r);
    expect(c.mcp_servers).toEqual([
      expect.objectContaining({
        name: "home_assistant",
        mode: "client",
        transport: "sse",
        enabled: true,
        server_url: "http://homeassistant.local:8123/mcp_server/sse",
        authorization: "Bearer ha-token-456",
        timeout: 15,
      }),
    ]);
    expect(c.home_assistant).not.toHaveProperty("mcp");
    expect(r.warnings.map(formatProblem)).toEqual([
      expect.stringMatching(
        /^home_assistant\.mcp: deprecated v0\.1 block: migrated to mcp_servers\.home_assistant/,
      ),
    ]);
    expect(r.warnings[0]!.message).toContain("reconnect_attempts and ssl_verify no longer apply");
  });

  it("uses the default SSE endpoint and keeps enabled: false", () => {
    const c = ok(
      yaml("openai: {api_key: k}\nhome_assistant: {url: 'http://ha:8123', token: t, mcp: {enabled: false}}"),
    );
    expect(c.mcp_servers[0]).toMatchObject({
      server_url: "http://ha:8123/mcp_server/sse",
      enabled: false,
      timeout: 30,
    });
  });

  it("is ignored with a warning when mcp_servers.home_assistant exists", () => {
    const r = yaml(
      "openai: {api_key: k}\nhome_assistant: {url: 'http://ha:8123', token: t, mcp: {enabled: true}}\n" +
        "mcp_servers: {home_assistant: {mode: native, server_url: 'https://ha.example.com/mcp_server/sse'}}",
    );
    const c = ok(r);
    expect(c.mcp_servers).toHaveLength(1);
    expect(c.mcp_servers[0]!.mode).toBe("native");
    expect(r.warnings.map(formatProblem)).toEqual([
      expect.stringMatching(/^home_assistant\.mcp: deprecated v0\.1 block ignored/),
    ]);
  });

  it("needs url and token", () => {
    expect(problemLines(yaml("openai: {api_key: k}\nhome_assistant: {mcp: {enabled: true}}"))).toEqual([
      "home_assistant.mcp: the deprecated v0.1 block needs home_assistant.url and home_assistant.token",
    ]);
  });
});

describe("unknown keys", () => {
  it("are warnings with the path and a suggestion, not errors", () => {
    const r = yaml(
      "openai: {api_key: k, voise: coral}\nextra: 1\nmcp_servers: {fs: {mode: client, transport: stdio, command: x, comand: y}}",
    );
    ok(r);
    expect(r.warnings.map(formatProblem)).toEqual([
      "openai.voise: unknown key, ignored (did you mean voice?)",
      "extra: unknown key, ignored",
      "mcp_servers.fs.comand: unknown key, ignored (did you mean command?)",
    ]);
  });
});

describe("mistakes a user makes, each with a message that says what to do", () => {
  it("a YAML syntax error gives its line and column", () => {
    const text = "openai:\n  api_key: k\n  voice: [marin\nlog_level: info\n";
    expect(problemLines(parseConfig(text, "yaml", ENV, "/config/openvoice-mcp.yaml"))).toEqual([
      expect.stringMatching(/^\/config\/openvoice-mcp\.yaml: not valid YAML at line 4, column 1: /),
    ]);
    expect(problemLines(yaml("openai:\n  api_key: k\n\tmodel: x\n"))[0]).toMatch(
      /^configuration: not valid YAML at line 3, column 1: /,
    );
  });

  it("a duplicated key is named by its option path and lines", () => {
    expect(problemLines(yaml("openai:\n  api_key: k\n  voice: marin\n  api_key: j\n"))).toEqual([
      'openai.api_key: duplicate key: "api_key" is set twice in the same block (lines 2 and 4); keep one',
    ]);
    const servers =
      "openai: {api_key: k}\nmcp_servers:\n  fs:\n    mode: client\n    transport: stdio\n    command: npx\n" +
      "    command: uvx\n";
    expect(problemLines(yaml(servers))).toEqual([
      'mcp_servers.fs.command: duplicate key: "command" is set twice in the same block (lines 6 and 7); keep one',
    ]);
    expect(problemLines(yaml("openai: {api_key: k}\nlog_level: info\nlog_level: debug\n"))).toEqual([
      'log_level: duplicate key: "log_level" is set twice in the same block (lines 2 and 3); keep one',
    ]);
  });

  it("openai.base_url with https:// says to use wss://", () => {
    const expected =
      "openai.base_url: use wss:// (ws:// for a local test server), not https://: the Realtime API is a WebSocket, e.g. wss://api.openai.com/v1/realtime";
    expect(
      problemLines(yaml("openai: {api_key: k, base_url: 'https://api.openai.com/v1/realtime'}")),
    ).toEqual([expected]);
    expect(
      problemLines(options({ openai: { api_key: "k", base_url: "https://api.openai.com/v1/realtime" } })),
    ).toEqual([expected]);
    expect(
      problemLines(yaml("openai: {api_key: k, base_url: 'http://127.0.0.1:9000/v1/realtime'}"))[0],
    ).toContain("not http://");
    expect(
      ok(yaml("openai: {api_key: k, base_url: 'ws://127.0.0.1:9000/v1/realtime'}")).openai.base_url,
    ).toBe("ws://127.0.0.1:9000/v1/realtime");
  });

  it("an mcp_servers block indented under another key is an error, not a dropped block", () => {
    const text =
      "openai:\n  api_key: k\n  voice: marin\n  mcp_servers:\n    fs:\n      mode: client\n      transport: stdio\n      command: npx\n";
    const r = yaml(text);
    expect(problemLines(r)).toEqual([
      "openai.mcp_servers: mcp_servers is a top-level section but is indented under openai; move it to the start of the line",
    ]);
    expect(r.warnings).toEqual([]);
    expect(
      problemLines(
        yaml("openai: {api_key: k}\nhome_assistant:\n  url: 'http://ha:8123'\n  satellites: {}\n"),
      ),
    ).toEqual([
      "home_assistant.satellites: satellites is a top-level section but is indented under home_assistant; move it to the start of the line",
    ]);
    // The same block at the top level is fine.
    expect(ok(yaml(text.replace("  mcp_servers:", "mcp_servers:"))).mcp_servers).toHaveLength(1);
  });

  it("the legacy home_assistant.mcp block without url/token migrates with a warning as an add-on", () => {
    const text =
      "openai: {api_key: k}\nhome_assistant:\n  mcp:\n    enabled: true\n    sse_endpoint: /mcp_server/sse\n";
    const r = yaml(text, { SUPERVISOR_TOKEN: "supervisor-token" });
    const c = ok(r);
    expect(c.mcp_servers).toEqual([]);
    expect(c.home_assistant).not.toHaveProperty("mcp");
    expect(r.warnings.map(formatProblem)).toEqual([
      "home_assistant.mcp: deprecated v0.1 block removed: as an add-on, Home Assistant's tools come through the Supervisor without url or token; delete this block",
    ]);
    const off = yaml("openai: {api_key: k}\nhome_assistant: {mcp: {enabled: false}}", {
      SUPERVISOR_TOKEN: "t",
    });
    expect(ok(off).mcp_servers).toEqual([]);
    expect(off.warnings[0]!.message).toContain("switch the home_assistant server off in the add-on's page");
    // The add-on options form carries it the same way.
    const opts = parseConfig(
      JSON.stringify({ openai: { api_key: "k" }, home_assistant: { mcp: { enabled: true } } }),
      "options",
      { SUPERVISOR_TOKEN: "t" },
    );
    expect(ok(opts).mcp_servers).toEqual([]);
    expect(opts.warnings.map((w) => w.path)).toEqual(["home_assistant.mcp"]);
  });

  it("a missing api_key in the add-on options says which option", () => {
    expect(
      problemLines(options({ openai: { model: "gpt-realtime", voice: "marin" }, log_level: "info" })),
    ).toEqual(["openai.api_key: required"]);
  });
});

describe("the add-on options form", () => {
  const base = { openai: { api_key: "sk-opt", model: "gpt-realtime", voice: "marin" }, log_level: "info" };

  it("maps list forms of env, headers and approvals to the model", () => {
    const c = ok(
      options({
        ...base,
        mcp_servers: [
          {
            name: "files",
            mode: "client",
            transport: "stdio",
            command: "npx",
            args: ["-y", "server"],
            env: ["MCP_DEBUG=1", "URL=http://x/?a=b"],
            approval_never: ["read_file"],
            approval_always: ["write_file"],
            allowed_tools: [],
          },
          {
            name: "web",
            mode: "client",
            transport: "http",
            server_url: "https://mcp.example.com/mcp",
            headers: ["X-Api-Key: abc:def", "Accept-Language:  en "],
            require_approval: "never",
            description: "",
          },
        ],
      }),
    );
    expect(c.mcp_servers[0]).toMatchObject({
      env: { MCP_DEBUG: "1", URL: "http://x/?a=b" },
      require_approval: { read_file: "never", write_file: "always" },
    });
    expect(c.mcp_servers[0]!.allowed_tools).toBeUndefined();
    expect(c.mcp_servers[1]).toMatchObject({
      headers: { "X-Api-Key": "abc:def", "Accept-Language": "en" },
      require_approval: "never",
    });
    expect(c.mcp_servers[1]!.description).toBeUndefined();
  });

  it("folds home_assistant approval lists too", () => {
    const c = ok(options({ ...base, home_assistant: { approval_never: ["GetLiveContext"] } }));
    expect(c.home_assistant.require_approval).toEqual({ GetLiveContext: "never" });
  });

  it("empty optional strings count as unset", () => {
    const c = ok(
      options({ ...base, home_assistant: { url: "", token: "" }, satellites: { token: "", devices: [] } }),
    );
    expect(c.home_assistant.url).toBeUndefined();
    expect(c.satellites.token).toBeUndefined();
  });

  it("rejects malformed list entries and contradictory approvals by path", () => {
    const lines = problemLines(
      options({
        ...base,
        mcp_servers: [
          {
            name: "s",
            mode: "client",
            transport: "stdio",
            command: "x",
            env: ["NOEQUALS"],
            headers: ["no colon"],
            require_approval: "never",
            approval_always: ["rm"],
          },
        ],
      }),
    );
    expect(lines).toEqual(
      expect.arrayContaining([
        'mcp_servers.s.env[0]: expected "KEY=value"',
        'mcp_servers.s.headers[0]: expected "Name: value"',
        expect.stringMatching(
          /^mcp_servers\.s\.require_approval: cannot be never together with approval_always/,
        ),
      ]),
    );
  });

  it("reports a missing api_key in the options form", () => {
    expect(problemLines(options({ openai: { api_key: "" } }))).toEqual(["openai.api_key: required"]);
  });

  it("reports invalid JSON naming the file", () => {
    expect(problemLines(parseConfig("{nope", "options", {}, "/data/options.json"))[0]).toMatch(
      /^\/data\/options\.json: not valid JSON/,
    );
  });
});

describe("masked effective configuration", () => {
  it("masks every secret and keeps everything else", () => {
    const c = ok(
      yaml(
        "openai: {api_key: sk-secret}\nhome_assistant: {url: 'http://ha:8123', token: ha-secret}\n" +
          "satellites: {token: sat-secret-0123456789, devices: [{id: k, token: dev-secret-0123456789}]}\n" +
          "metrics: {token: metrics-secret}\n" +
          "mcp_servers: {web: {mode: client, transport: http, server_url: 'https://x.y/mcp', authorization: 'Bearer auth-secret'," +
          " headers: {X-Key: header-secret}}, fs: {mode: client, transport: stdio, command: x, env: {TOKEN: env-secret}}}",
      ),
    );
    const text = renderEffectiveConfig(c);
    for (const secret of [
      "sk-secret",
      "ha-secret",
      "sat-secret",
      "dev-secret",
      "metrics-secret",
      "auth-secret",
      "header-secret",
      "env-secret",
    ])
      expect(text).not.toContain(secret);
    type Shown = {
      openai: { api_key: string };
      home_assistant: { url: string };
      mcp_servers: Record<string, { headers: unknown; env: unknown; server_url?: string }>;
    };
    const shown = parse(text) as Shown;
    expect(shown.openai.api_key).toBe(MASK);
    expect(shown.mcp_servers.web!.headers).toEqual({ "X-Key": MASK });
    expect(shown.mcp_servers.fs!.env).toEqual({ TOKEN: MASK });
    expect(shown.mcp_servers.web!.server_url).toBe("https://x.y/mcp");
    expect(shown.home_assistant.url).toBe("http://ha:8123");
    expect(maskSecrets(c).log_level).toBe("info");
  });

  it("the rendered configuration loads again to the same model, secrets masked", async () => {
    const c = ok(await loadConfig({ form: "yaml", path: fixture("hybrid.yaml") }, ENV));
    const again = yaml(renderEffectiveConfig(c));
    expect(again.warnings).toEqual([]);
    expect(ok(again)).toEqual(maskSecrets(c));
  });
});
