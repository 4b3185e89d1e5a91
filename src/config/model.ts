/**
 * The one validated configuration model. Both sources (the seed's YAML shape and the add-on's
 * `/data/options.json`) are normalised by the loader into the input shape of `ConfigSchema`;
 * everything else in the service consumes only `Config`.
 *
 * Defaults here are the documented defaults (DOCS.md): change them in both places.
 */
import { z } from "zod";

export const LOG_LEVELS = ["trace", "debug", "info", "notice", "warning", "error", "fatal"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const VOICES = [
  "alloy",
  "ash",
  "ballad",
  "cedar",
  "coral",
  "echo",
  "marin",
  "sage",
  "shimmer",
  "verse",
] as const;

/** `always` | `never` | a per-tool map `{tool: always|never}` (the seed's form). */
export const ApprovalModeSchema = z.enum(["always", "never"]);
export type ApprovalMode = z.infer<typeof ApprovalModeSchema>;
export const RequireApprovalSchema = z.union([
  ApprovalModeSchema,
  z.record(z.string().min(1), ApprovalModeSchema),
]);
export type RequireApproval = z.infer<typeof RequireApprovalSchema>;

/** Server names become tool-name prefixes and metric labels: keep them short and plain. */
export const SERVER_NAME_RE = /^[a-zA-Z0-9_-]{1,48}$/;

export const McpServerSchema = z
  .object({
    name: z.string().regex(SERVER_NAME_RE, "letters, digits, _ and - only (1-48 characters)"),
    mode: z.enum(["native", "client"]),
    enabled: z.boolean().default(true),
    /** Lower number wins a tool-name conflict. */
    priority: z.number().int().min(0).max(100_000).default(100),
    description: z.string().optional(),
    /** native: the URL OpenAI connects to; client http/sse: the URL we connect to. */
    server_url: z.url({ protocol: /^https?$/ }).optional(),
    /** Value of the Authorization header, e.g. `Bearer abc`. Secret. */
    authorization: z.string().min(1).optional(),
    headers: z.record(z.string().min(1), z.string()).default({}),
    require_approval: RequireApprovalSchema.default("always"),
    /** When set, only these tools are exposed (both modes). */
    allowed_tools: z.array(z.string().min(1)).optional(),
    transport: z.enum(["stdio", "http", "sse"]).optional(),
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    /** Extra environment for a stdio child, on top of a safe allow-list. Values are secret. */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    cwd: z.string().min(1).optional(),
    /** Seconds: connect timeout and per-call timeout. */
    timeout: z.number().positive().max(3600).default(30),
    /** native only: a client route (Streamable HTTP) used when OpenAI cannot list the tools. */
    fallback_url: z.url({ protocol: /^https?$/ }).optional(),
  })
  .superRefine((s, ctx) => {
    const need = (key: keyof typeof s, why: string): void => {
      if (s[key] === undefined) ctx.addIssue({ code: "custom", path: [key], message: `required ${why}` });
    };
    if (s.mode === "native") {
      need("server_url", "when mode is native");
      if (s.transport === "stdio")
        ctx.addIssue({
          code: "custom",
          path: ["transport"],
          message: "stdio is only possible in client mode",
        });
    } else {
      need("transport", "when mode is client");
      if (s.transport === "stdio") need("command", "when transport is stdio");
      if (s.transport === "http" || s.transport === "sse")
        need("server_url", `when transport is ${s.transport}`);
    }
  });
export type McpServerConfig = z.infer<typeof McpServerSchema>;

/** Firmware dialects the firmware port can speak (DESIGN §10). */
export const DIALECTS = ["fjfricke", "underzenith", "va_client"] as const;
export type Dialect = (typeof DIALECTS)[number];

export const SatelliteDeviceSchema = z
  .object({
    id: z.string().regex(/^[a-zA-Z0-9_.:-]{1,64}$/, "letters, digits, _ . : - only (1-64 characters)"),
    name: z.string().optional(),
    token: z.string().min(16, "at least 16 characters").optional(),
    /** The device's IP address: how firmwares without a token (fjfricke, va_client) are recognised. */
    address: z.union([z.ipv4(), z.ipv6()]).optional(),
  })
  .superRefine((d, ctx) => {
    if (d.token === undefined && d.address === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["token"],
        message: "a device needs a token, an address or both",
      });
  });
export type SatelliteDevice = z.infer<typeof SatelliteDeviceSchema>;

export const WYOMING_DEFAULT_PORT = 10300;

/**
 * Languages the upstream transcription understands well, announced by default (ISO 639-1 codes, the
 * form Home Assistant's pipelines use).
 */
export const WYOMING_DEFAULT_LANGUAGES = [
  "en",
  "de",
  "fr",
  "es",
  "it",
  "nl",
  "pt",
  "pl",
  "sv",
  "da",
  "nb",
  "fi",
  "cs",
  "sk",
  "hu",
  "ro",
  "el",
  "tr",
  "ru",
  "uk",
  "ar",
  "he",
  "hi",
  "ja",
  "ko",
  "zh",
  "id",
  "vi",
  "th",
  "ca",
] as const;

/** `en`, `pt-BR`, `zh-Hant`: a primary code and optional subtags. */
export const LANGUAGE_CODE_RE = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;

/** ESPHome's native API port. */
export const ESPHOME_DEFAULT_PORT = 6053;
/** A device's name is an admin API path segment and a metric label. */
export const ESPHOME_NAME_RE = /^[a-zA-Z0-9_.-]{1,64}$/;

/** An ESPHome API encryption key: base64 of 32 bytes (the `api: encryption: key:` of the device's YAML). */
export const EncryptionKeySchema = z
  .string()
  .refine((k) => /^[A-Za-z0-9+/]{43}=$/.test(k) && Buffer.from(k, "base64").length === 32, {
    error:
      "expected 44 characters of base64 (32 bytes): the key under api: encryption: key in the device's YAML",
  });

export const EsphomeDeviceSchema = z.object({
  /** Defaults to the device's ESPHome node name. */
  name: z.string().regex(ESPHOME_NAME_RE, "letters, digits, _ . - only (1-64 characters)").optional(),
  host: z.string().regex(/^[a-zA-Z0-9_.:-]{1,253}$/, "a host name or an IP address such as 192.168.1.20"),
  port: z.number().int().min(1).max(65535).default(ESPHOME_DEFAULT_PORT),
  /** Secret. */
  encryption_key: EncryptionKeySchema.optional(),
  /** Answer this device's voice assistant; unset: the choice made in the UI. */
  take_over: z.boolean().optional(),
});
export type EsphomeDevice = z.infer<typeof EsphomeDeviceSchema>;

export const REPLY_FORMATS = ["mp3", "wav"] as const;

export const EsphomeSchema = z.object({
  /** Connect to ESPHome voice devices (listed and discovered). */
  enabled: z.boolean().default(true),
  /** Add the ESPHome devices Home Assistant knows (from `ha_config_dir`). */
  discover: z.boolean().default(true),
  /** Where Home Assistant's configuration folder is mounted (read only). */
  ha_config_dir: z.string().min(1).default("/homeassistant"),
  devices: z.array(EsphomeDeviceSchema).default([]),
  /** Base URL devices fetch replies from; default: the host's LAN address and the mapped satellite port. */
  reply_base_url: z.url({ protocol: /^https?$/ }).optional(),
  reply_format: z.enum(REPLY_FORMATS).default("mp3"),
});
export type EsphomeConfig = z.infer<typeof EsphomeSchema>;

export const ConfigSchema = z
  .object({
    openai: z.object({
      api_key: z.string().min(1, "required"),
      model: z.string().min(1).default("gpt-realtime"),
      voice: z.enum(VOICES).default("marin"),
      /** WebSocket base URL; `?model=` is appended. */
      base_url: z.url({ protocol: /^wss?$/ }).default("wss://api.openai.com/v1/realtime"),
      instructions: z
        .string()
        .default(
          "You are a helpful voice assistant for a smart home. Answer briefly and speak naturally. " +
            "Use the tools you have to read and control the home.",
        ),
      turn_detection: z.enum(["server_vad", "semantic_vad"]).default("server_vad"),
      transcription_model: z.string().min(1).default("gpt-4o-mini-transcribe"),
      /** Sessions kept connected and configured before anyone speaks. */
      pool_size: z.number().int().min(0).max(10).default(1),
    }),
    home_assistant: z
      .object({
        url: z.url({ protocol: /^https?$/ }).optional(),
        /** Long-lived access token. Secret. */
        token: z.string().min(1).optional(),
        /** Internet-reachable URL of Home Assistant: makes HA a native server. */
        public_url: z.url({ protocol: /^https$|^http$/ }).optional(),
        /** Which HA MCP endpoint native mode uses: `sse` → /mcp_server/sse, `http` → /api/mcp. */
        native_endpoint: z.enum(["sse", "http"]).default("sse"),
        /** Approval policy of the derived `home_assistant` server (zero-config, native or direct). */
        require_approval: RequireApprovalSchema.default("always"),
        /** When set, only these Home Assistant tools are exposed. */
        allowed_tools: z.array(z.string().min(1)).optional(),
      })
      .default({ native_endpoint: "sse", require_approval: "always" }),
    mcp_servers: z.array(McpServerSchema).default([]),
    satellites: z
      .object({
        /** Shared token for every satellite. Secret. Generated into the data dir when unset. */
        token: z.string().min(16, "at least 16 characters").optional(),
        devices: z.array(SatelliteDeviceSchema).default([]),
        /** A conversation ends after this many seconds without speech. */
        conversation_idle_s: z.number().int().min(5).max(600).default(30),
        /** Conversations at once over every route (satellites, Wyoming, the talk page). */
        max_conversations: z.number().int().min(1).max(100).default(8),
        /** Firmware dialects accepted on the firmware port; none by default (nothing listens). */
        dialects: z.array(z.enum(DIALECTS)).default([]),
      })
      .default({ devices: [], conversation_idle_s: 30, max_conversations: 8, dialects: [] }),
    listen: z
      .object({
        host: z.string().min(1).default("0.0.0.0"),
        satellite_port: z.number().int().min(0).max(65535).default(8765),
        ingress_port: z.number().int().min(0).max(65535).default(8099),
        /** Where flashed firmwares connect (`satellites.dialects`); bound only when a dialect is on. */
        firmware_port: z.number().int().min(0).max(65535).default(8080),
      })
      .default({ host: "0.0.0.0", satellite_port: 8765, ingress_port: 8099, firmware_port: 8080 }),
    wyoming: z
      .object({
        /** Serve the Wyoming speech-to-text, conversation and text-to-speech programs. */
        enabled: z.boolean().default(true),
        /** TCP port of the Wyoming service (on `listen.host`). */
        port: z.number().int().min(0).max(65535).default(WYOMING_DEFAULT_PORT),
        /** Languages announced for speech-to-text, the conversation agent and the voices; empty: the default list. */
        languages: z
          .array(z.string().regex(LANGUAGE_CODE_RE, "a language code such as en or pt-BR"))
          .default([...WYOMING_DEFAULT_LANGUAGES])
          .transform((l) => (l.length > 0 ? [...new Set(l)] : [...WYOMING_DEFAULT_LANGUAGES])),
        /**
         * Addresses or subnets besides loopback (and, as an add-on, Home Assistant's internal network)
         * that may connect: Wyoming has no authentication.
         */
        allowed_addresses: z
          .array(
            z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()], {
              error: "an IP address or a subnet such as 192.168.1.20 or 192.168.1.0/24",
            }),
          )
          .default([]),
      })
      .default({
        enabled: true,
        port: WYOMING_DEFAULT_PORT,
        languages: [...WYOMING_DEFAULT_LANGUAGES],
        allowed_addresses: [],
      }),
    esphome: EsphomeSchema.default({
      enabled: true,
      discover: true,
      ha_config_dir: "/homeassistant",
      devices: [],
      reply_format: "mp3",
    }),
    approvals: z
      .object({ timeout_s: z.number().int().min(5).max(600).default(30) })
      .default({ timeout_s: 30 }),
    metrics: z
      .object({
        /** Bearer token required on /metrics when set. Secret. */
        token: z.string().min(1).optional(),
      })
      .default({}),
    log_level: z.enum(LOG_LEVELS).default("info"),
  })
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.mcp_servers.forEach((s, i) => {
      const first = seen.get(s.name);
      if (first !== undefined)
        ctx.addIssue({
          code: "custom",
          path: ["mcp_servers", i, "name"],
          message: `duplicate server name "${s.name}"`,
        });
      else seen.set(s.name, i);
    });
    const ids = new Set<string>();
    c.satellites.devices.forEach((d, i) => {
      if (ids.has(d.id))
        ctx.addIssue({
          code: "custom",
          path: ["satellites", "devices", i, "id"],
          message: `duplicate device id "${d.id}"`,
        });
      ids.add(d.id);
    });
    const names = new Set<string>();
    const endpoints = new Set<string>();
    c.esphome.devices.forEach((d, i) => {
      if (d.name !== undefined && names.has(d.name))
        ctx.addIssue({
          code: "custom",
          path: ["esphome", "devices", i, "name"],
          message: `duplicate device name "${d.name}"`,
        });
      if (d.name !== undefined) names.add(d.name);
      const endpoint = `${d.host.toLowerCase()}:${d.port}`;
      if (endpoints.has(endpoint))
        ctx.addIssue({
          code: "custom",
          path: ["esphome", "devices", i, "host"],
          message: `two devices at ${endpoint}`,
        });
      endpoints.add(endpoint);
    });
    const addresses = new Set<string>();
    c.satellites.devices.forEach((d, i) => {
      if (d.address === undefined) return;
      if (addresses.has(d.address))
        ctx.addIssue({
          code: "custom",
          path: ["satellites", "devices", i, "address"],
          message: `two devices with address ${d.address}`,
        });
      addresses.add(d.address);
    });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
