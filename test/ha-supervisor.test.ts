/**
 * Zero-config end to end: running as an add-on (SUPERVISOR_TOKEN set, no HA server configured),
 * the derived `home_assistant` server reaches Core's MCP endpoint through a fake Supervisor on
 * 127.0.0.1 with the reference MCP server behind it.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigSchema } from "../src/config/model.js";
import { deriveMcpServers, HA_SERVER_NAME } from "../src/ha/derive.js";
import { startFakeSupervisor, type FakeSupervisor } from "./fixtures/supervisor/fake-supervisor.js";

const SUPERVISOR_TOKEN = "supervisor-token-for-tests-5f2c";
const config = ConfigSchema.parse({ openai: { api_key: "sk-test" } });

describe("zero-config Home Assistant through the Supervisor", () => {
  let sup: FakeSupervisor;
  let client: Client | undefined;
  beforeEach(async () => {
    sup = await startFakeSupervisor({ token: SUPERVISOR_TOKEN });
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await sup.close();
  });

  const derive = (token = SUPERVISOR_TOKEN) =>
    deriveMcpServers(config, { SUPERVISOR_TOKEN: token, OPENVOICE_SUPERVISOR_URL: sup.url });

  /** Connects the way a Streamable HTTP client route does: the configured URL and Authorization header. */
  async function connect(server: { server_url?: string; authorization?: string }): Promise<Client> {
    const c = new Client({ name: "openvoice-test", version: "0" });
    const transport = new StreamableHTTPClientTransport(new URL(server.server_url!), {
      requestInit: { headers: { authorization: server.authorization! } },
    });
    await c.connect(transport, { timeout: 10_000 });
    client = c;
    return c;
  }

  it("the derived server reaches /core/api/mcp with the Supervisor token; tools list and call", async () => {
    const d = derive();
    expect(d.source).toBe("zero-config");
    const ha = d.servers.find((s) => s.name === HA_SERVER_NAME)!;
    expect(ha.server_url).toBe(`${sup.url}/core/api/mcp`);

    const c = await connect(ha);
    const { tools } = await c.listTools(undefined, { timeout: 10_000 });
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(["echo", "get-sum"]));
    const res = await c.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } }, undefined, {
      timeout: 10_000,
    });
    expect(JSON.stringify(res.content)).toContain("42");

    expect(sup.sessionsOpened()).toBe(1);
    expect(sup.requests.length).toBeGreaterThan(0);
    expect(sup.requests.every((r) => r.authorized && r.path === "/core/api/mcp")).toBe(true);
  });

  it("a wrong token is refused by the Supervisor (401) and no MCP session opens", async () => {
    const ha = derive("not-the-token").servers[0]!;
    await expect(connect(ha)).rejects.toThrow(/401|Unauthorized/i);
    expect(sup.sessionsOpened()).toBe(0);
    expect(sup.requests.some((r) => r.status === 401 && !r.authorized)).toBe(true);
  });
});
