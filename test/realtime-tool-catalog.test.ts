/** The engine's tool catalog, driven directly over the recording tool provider. */
import { describe, expect, it } from "vitest";
import { EngineToolCatalog } from "../src/realtime/tool-catalog.js";
import { RecordingTools, makeConfig, silentLogger, tool } from "./fake-realtime/helpers.js";

const config = makeConfig("wss://upstream.invalid/v1/realtime", {
  mcp_servers: [
    {
      name: "ha",
      mode: "native",
      server_url: "https://ha.example/mcp",
      fallback_url: "http://ha.local/mcp",
      require_approval: "never",
    },
    { name: "web", mode: "native", server_url: "https://web.example/mcp" },
    { name: "files", mode: "client", transport: "stdio", command: "files", require_approval: "always" },
  ],
});

function rig(failing = false) {
  const tools = new RecordingTools([tool("files", "read")]);
  if (failing) tools.addServer = () => Promise.reject(new Error("unreachable"));
  const catalog = new EngineToolCatalog({
    servers: config.mcp_servers,
    config,
    tools,
    readyTimeoutMs: 2000,
    logger: silentLogger(),
  });
  return { catalog, tools };
}

describe("EngineToolCatalog", () => {
  it("offers the enabled native servers; enabling reports whether anything changed", () => {
    const { catalog } = rig();
    expect(catalog.configured().map((s) => s.name)).toEqual(["ha", "web"]);
    expect(catalog.setEnabled("web", false)).toBe("changed");
    expect(catalog.setEnabled("web", false)).toBe("unchanged");
    expect(catalog.setEnabled("files", false)).toBe("unknown");
    expect(catalog.nativeServers().map((s) => s.name)).toEqual(["ha"]);
    // A reload keeps what was chosen at runtime.
    catalog.setServers(config.mcp_servers);
    expect(catalog.nativeServers().map((s) => s.name)).toEqual(["ha"]);
  });

  it("policy of native, client and unknown servers", () => {
    const { catalog } = rig();
    expect(catalog.policyOf("ha")).toBe("never");
    expect(catalog.policyOf("files")).toBe("always");
    expect(catalog.policyOf("nobody")).toBe("always");
  });

  it("a failover adds the fallback route once; its tools go only to sessions that failed over", async () => {
    const { catalog, tools } = rig();
    const [a, b] = await Promise.all([catalog.failover("ha"), catalog.failover("ha")]);
    expect([a, b]).toEqual([true, true]);
    expect(tools.added).toHaveLength(1);
    expect(tools.added[0]).toMatchObject({
      name: "ha",
      mode: "client",
      transport: "http",
      server_url: "http://ha.local/mcp",
    });
    expect(catalog.hasFailedOver("ha")).toBe(true);
    const names = (failedOver: Set<string>) =>
      catalog.functionTools(failedOver).map((t) => `${t.server}.${t.tool}`);
    expect(names(new Set())).not.toContain("ha.HassTurnOn");
    expect(names(new Set(["ha"]))).toContain("ha.HassTurnOn");
  });

  it("no route, or a route that fails: false, and no failover is remembered", async () => {
    const { catalog } = rig();
    expect(await catalog.failover("web")).toBe(false);
    const failing = rig(true).catalog;
    expect(await failing.failover("ha")).toBe(false);
    expect(failing.hasFailedOver("ha")).toBe(false);
  });
});
