import { describe, expect, it } from "vitest";
import { ConfigSchema, type ConfigInput } from "../src/config/model.js";
import { deriveMcpServers, supervisorRoute, HA_SERVER_NAME } from "../src/ha/derive.js";

const config = (extra: Partial<ConfigInput> = {}) =>
  ConfigSchema.parse({ openai: { api_key: "sk-test" }, ...extra });
const ADDON = { SUPERVISOR_TOKEN: "sup-token-123" };

describe("deriveMcpServers", () => {
  it("adds nothing outside an add-on without Home Assistant settings", () => {
    const d = deriveMcpServers(config(), {});
    expect(d.source).toBe("none");
    expect(d.servers).toEqual([]);
    expect(d.failover.size).toBe(0);
    expect(d.supervisorRoute).toBeUndefined();
    expect(d.warnings).toEqual([]);
  });

  it("zero-config: SUPERVISOR_TOKEN alone gives a client home_assistant server through the Supervisor", () => {
    const d = deriveMcpServers(config(), ADDON);
    expect(d.source).toBe("zero-config");
    expect(d.servers).toHaveLength(1);
    const ha = d.servers[0]!;
    expect(ha).toMatchObject({
      name: HA_SERVER_NAME,
      mode: "client",
      transport: "http",
      server_url: "http://supervisor/core/api/mcp",
      authorization: "Bearer sup-token-123",
      enabled: true,
      require_approval: "always",
      timeout: 30,
      priority: 100,
    });
    expect(d.supervisorRoute).toEqual(ha);
    expect(d.failover.size).toBe(0);
  });

  it("honours OPENVOICE_SUPERVISOR_URL (trailing slash tolerated) and the HA approval policy", () => {
    const d = deriveMcpServers(
      config({
        home_assistant: { require_approval: { GetLiveContext: "never" }, allowed_tools: ["GetLiveContext"] },
      }),
      { ...ADDON, OPENVOICE_SUPERVISOR_URL: "http://127.0.0.1:4567/" },
    );
    expect(d.servers[0]).toMatchObject({
      server_url: "http://127.0.0.1:4567/core/api/mcp",
      require_approval: { GetLiveContext: "never" },
      allowed_tools: ["GetLiveContext"],
    });
  });

  it("a blank SUPERVISOR_TOKEN is no add-on", () => {
    expect(deriveMcpServers(config(), { SUPERVISOR_TOKEN: "  " }).source).toBe("none");
  });

  it("a bad Supervisor URL is a warning, not a crash", () => {
    const d = deriveMcpServers(config(), { ...ADDON, OPENVOICE_SUPERVISOR_URL: "not a url" });
    expect(d.source).toBe("none");
    expect(d.warnings.join("\n")).toMatch(/Supervisor route/);
  });

  it("native: public_url + token → <public_url>/mcp_server/sse, with the Supervisor route as failover", () => {
    const d = deriveMcpServers(
      config({ home_assistant: { public_url: "https://home.example.com/", token: "llat" } }),
      ADDON,
    );
    expect(d.source).toBe("native");
    expect(d.servers).toHaveLength(1);
    expect(d.servers[0]).toMatchObject({
      name: HA_SERVER_NAME,
      mode: "native",
      server_url: "https://home.example.com/mcp_server/sse",
      authorization: "Bearer llat",
    });
    const route = d.failover.get(HA_SERVER_NAME);
    expect(route).toMatchObject({
      name: HA_SERVER_NAME,
      mode: "client",
      transport: "http",
      server_url: "http://supervisor/core/api/mcp",
      authorization: "Bearer sup-token-123",
    });
  });

  it("native with native_endpoint http → <public_url>/api/mcp; failover to home_assistant.url outside an add-on", () => {
    const d = deriveMcpServers(
      config({
        home_assistant: {
          public_url: "https://home.example.com",
          url: "http://homeassistant.local:8123",
          token: "Bearer llat",
          native_endpoint: "http",
        },
      }),
      {},
    );
    expect(d.source).toBe("native");
    expect(d.servers[0]).toMatchObject({
      server_url: "https://home.example.com/api/mcp",
      authorization: "Bearer llat",
    });
    expect(d.failover.get(HA_SERVER_NAME)).toMatchObject({
      mode: "client",
      server_url: "http://homeassistant.local:8123/api/mcp",
      authorization: "Bearer llat",
    });
    expect(d.supervisorRoute).toBeUndefined();
  });

  it("public_url without a token is ignored with a warning; zero-config still applies", () => {
    const d = deriveMcpServers(config({ home_assistant: { public_url: "https://home.example.com" } }), ADDON);
    expect(d.source).toBe("zero-config");
    expect(d.warnings.join("\n")).toMatch(/public_url needs home_assistant.token/);
  });

  it("direct: url + token → client <url>/api/mcp (preferred over the Supervisor)", () => {
    const d = deriveMcpServers(config({ home_assistant: { url: "http://ha:8123", token: "llat" } }), ADDON);
    expect(d.source).toBe("direct");
    expect(d.servers[0]).toMatchObject({ mode: "client", server_url: "http://ha:8123/api/mcp" });
  });

  it("an explicit home_assistant entry wins; a native one still gets the Supervisor failover", () => {
    const d = deriveMcpServers(
      config({
        home_assistant: { public_url: "https://home.example.com", token: "llat" },
        mcp_servers: [
          {
            name: HA_SERVER_NAME,
            mode: "native",
            server_url: "https://ha.example.org/mcp_server/sse",
            require_approval: "never",
            priority: 5,
          },
        ],
      }),
      ADDON,
    );
    expect(d.source).toBe("configured");
    expect(d.servers).toHaveLength(1);
    expect(d.servers[0]!.server_url).toBe("https://ha.example.org/mcp_server/sse");
    expect(d.failover.get(HA_SERVER_NAME)).toMatchObject({ mode: "client", priority: 5 });
    expect(d.warnings.join("\n")).toMatch(/configured explicitly/);
  });

  it("other native servers with fallback_url get a client failover route with their own settings", () => {
    const d = deriveMcpServers(
      config({
        mcp_servers: [
          {
            name: "search",
            mode: "native",
            server_url: "https://search.example.com/sse",
            fallback_url: "http://127.0.0.1:9000/mcp",
            authorization: "Bearer s",
            allowed_tools: ["find"],
            require_approval: { find: "never" },
            timeout: 7,
          },
          { name: "files", mode: "client", transport: "stdio", command: "x" },
        ],
      }),
      {},
    );
    expect(d.source).toBe("none");
    expect(d.servers.map((s) => s.name)).toEqual(["search", "files"]);
    expect(d.failover.get("search")).toMatchObject({
      name: "search",
      mode: "client",
      transport: "http",
      server_url: "http://127.0.0.1:9000/mcp",
      authorization: "Bearer s",
      allowed_tools: ["find"],
      require_approval: { find: "never" },
      timeout: 7,
    });
    expect(d.failover.has("files")).toBe(false);
  });

  it("is pure: the config's server list is not mutated", () => {
    const c = config({ mcp_servers: [{ name: "files", mode: "client", transport: "stdio", command: "x" }] });
    const before = JSON.stringify(c);
    deriveMcpServers(c, ADDON);
    expect(JSON.stringify(c)).toBe(before);
  });

  it("supervisorRoute needs a token", () => {
    expect(supervisorRoute({})).toBeUndefined();
    expect(supervisorRoute({ SUPERVISOR_TOKEN: "t" })?.server_url).toBe("http://supervisor/core/api/mcp");
  });
});
