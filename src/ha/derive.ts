/**
 * Home Assistant as an MCP server, derived from the configuration and the add-on environment (pure).
 *
 * Precedence, first match wins:
 * 1. `configured`  — an `mcp_servers` entry named `home_assistant`: used as written.
 * 2. `native`      — `home_assistant.public_url` + `token`: OpenAI connects to HA's own MCP endpoint
 *                    (`<public_url>/mcp_server/sse`, or `<public_url>/api/mcp` with `native_endpoint: http`).
 * 3. `direct`      — `home_assistant.url` + `token`: we connect to `<url>/api/mcp` (Streamable HTTP).
 * 4. `zero-config` — `SUPERVISOR_TOKEN` set: we connect to `<supervisor>/core/api/mcp` with that token.
 * 5. `none`.
 *
 * Every native server that has a client route gets a failover entry: a complete client
 * `McpServerConfig` of the same name (the Supervisor route for HA when running as an add-on, else
 * `home_assistant.url`; `fallback_url` for other native servers, with their own authorization).
 */
import { McpServerSchema, type Config, type McpServerConfig } from "../config/model.js";

export const HA_SERVER_NAME = "home_assistant";
export const DEFAULT_SUPERVISOR_URL = "http://supervisor";

/** The environment variables this derivation reads. */
export interface HaEnv {
  readonly SUPERVISOR_TOKEN?: string | undefined;
  /** Base URL of the Supervisor API; tests point it at a fake. */
  readonly OPENVOICE_SUPERVISOR_URL?: string | undefined;
}

export type HaSource = "configured" | "native" | "direct" | "zero-config" | "none";

export interface HaDerivation {
  /** The effective server list: the configured servers plus the derived HA server, in that order. */
  readonly servers: McpServerConfig[];
  /** Client routes by native server name, for failover when OpenAI cannot list its tools. */
  readonly failover: ReadonlyMap<string, McpServerConfig>;
  /** The Supervisor route to HA, when running as an add-on. */
  readonly supervisorRoute?: McpServerConfig;
  /** How Home Assistant's tools are reached. */
  readonly source: HaSource;
  /** Problems that did not stop the derivation (a half-configured `home_assistant` block, ...). */
  readonly warnings: string[];
}

const trimSlashes = (url: string): string => url.replace(/\/+$/, "");

/** Base URL of the Supervisor API: `OPENVOICE_SUPERVISOR_URL` (tests), else `http://supervisor`. */
export function supervisorBaseUrl(env: HaEnv): string {
  return trimSlashes(env.OPENVOICE_SUPERVISOR_URL?.trim() || DEFAULT_SUPERVISOR_URL);
}

/** `Bearer <token>` unless the token already carries a scheme. */
const bearer = (token: string): string => (/^Bearer\s/i.test(token) ? token : `Bearer ${token}`);

interface HaPolicy {
  require_approval: Config["home_assistant"]["require_approval"];
  allowed_tools?: string[];
}

function haPolicy(config: Config): HaPolicy {
  const ha = config.home_assistant;
  return ha.allowed_tools
    ? { require_approval: ha.require_approval, allowed_tools: [...ha.allowed_tools] }
    : { require_approval: ha.require_approval };
}

/** Builds a server through the schema so defaults apply exactly as for configured servers. */
function build(
  input: Record<string, unknown>,
  what: string,
  warnings: string[],
): McpServerConfig | undefined {
  const parsed = McpServerSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  warnings.push(`${what}: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`);
  return undefined;
}

/** The Supervisor's proxy to Core's MCP endpoint, authenticated with the add-on's token. */
export function supervisorRoute(
  env: HaEnv,
  policy: HaPolicy = { require_approval: "always" },
  warnings: string[] = [],
): McpServerConfig | undefined {
  const token = env.SUPERVISOR_TOKEN?.trim();
  if (!token) return undefined;
  const base = supervisorBaseUrl(env);
  return build(
    {
      name: HA_SERVER_NAME,
      mode: "client",
      transport: "http",
      server_url: `${base}/core/api/mcp`,
      authorization: bearer(token),
      description: "Home Assistant (through the Supervisor)",
      ...policy,
    },
    "Supervisor route to Home Assistant",
    warnings,
  );
}

/** A client route for a configured native server that declares `fallback_url`. */
function fallbackRoute(server: McpServerConfig, warnings: string[]): McpServerConfig | undefined {
  if (server.mode !== "native" || server.fallback_url === undefined) return undefined;
  return build(
    {
      name: server.name,
      mode: "client",
      transport: "http",
      server_url: server.fallback_url,
      ...(server.authorization === undefined ? {} : { authorization: server.authorization }),
      headers: server.headers,
      enabled: server.enabled,
      priority: server.priority,
      ...(server.description === undefined ? {} : { description: server.description }),
      require_approval: server.require_approval,
      ...(server.allowed_tools === undefined ? {} : { allowed_tools: server.allowed_tools }),
      timeout: server.timeout,
    },
    `mcp_servers.${server.name}.fallback_url`,
    warnings,
  );
}

/** The effective MCP server list and failover routes for `config` in environment `env`. */
export function deriveMcpServers(config: Config, env: HaEnv): HaDerivation {
  const warnings: string[] = [];
  const ha = config.home_assistant;
  const policy = haPolicy(config);
  const viaSupervisor = supervisorRoute(env, policy, warnings);
  const failover = new Map<string, McpServerConfig>();
  for (const s of config.mcp_servers) {
    const route = fallbackRoute(s, warnings);
    if (route) failover.set(s.name, route);
  }
  const servers = [...config.mcp_servers];
  const done = (source: HaSource, derived?: McpServerConfig): HaDerivation => {
    if (derived) servers.push(derived);
    return {
      servers,
      failover,
      ...(viaSupervisor ? { supervisorRoute: viaSupervisor } : {}),
      source,
      warnings,
    };
  };

  const configured = config.mcp_servers.find((s) => s.name === HA_SERVER_NAME);
  if (configured) {
    if (ha.public_url !== undefined || ha.url !== undefined)
      warnings.push(
        `mcp_servers.${HA_SERVER_NAME} is configured explicitly; home_assistant.url/public_url are not used for it`,
      );
    if (configured.mode === "native" && !failover.has(HA_SERVER_NAME) && viaSupervisor)
      failover.set(HA_SERVER_NAME, {
        ...viaSupervisor,
        enabled: configured.enabled,
        priority: configured.priority,
      });
    return done("configured");
  }

  const token = ha.token?.trim();
  const direct =
    ha.url !== undefined && token
      ? build(
          {
            name: HA_SERVER_NAME,
            mode: "client",
            transport: "http",
            server_url: `${trimSlashes(ha.url)}/api/mcp`,
            authorization: bearer(token),
            description: "Home Assistant",
            ...policy,
          },
          "home_assistant.url",
          warnings,
        )
      : undefined;

  if (ha.public_url !== undefined) {
    if (!token) {
      warnings.push(
        "home_assistant.public_url needs home_assistant.token (a long-lived access token): OpenAI must authenticate to Home Assistant; public_url is ignored",
      );
    } else {
      const path = ha.native_endpoint === "http" ? "/api/mcp" : "/mcp_server/sse";
      const native = build(
        {
          name: HA_SERVER_NAME,
          mode: "native",
          server_url: `${trimSlashes(ha.public_url)}${path}`,
          authorization: bearer(token),
          description: "Home Assistant",
          ...policy,
        },
        "home_assistant.public_url",
        warnings,
      );
      if (native) {
        const route = viaSupervisor ?? direct;
        if (route) failover.set(HA_SERVER_NAME, route);
        return done("native", native);
      }
    }
  }
  if (direct) return done("direct", direct);
  if (ha.url !== undefined && !token)
    warnings.push("home_assistant.url needs home_assistant.token (a long-lived access token); it is ignored");
  if (viaSupervisor) return done("zero-config", viaSupervisor);
  return done("none");
}
