/**
 * Home Assistant's WebSocket API, for the few commands the ESPHome route needs (taking a device's voice
 * assistant over: its `assist_satellite` entity disabled / enabled).
 *
 * The protocol (home-assistant/core `websocket_api`): the server opens with `{type: "auth_required"}`; the
 * client sends `{type: "auth", access_token}`; the server answers `auth_ok` or `auth_invalid` (and closes).
 * Commands carry an increasing integer `id`; each is answered by `{id, type: "result", success, result}` or
 * `{id, type: "result", success: false, error: {code, message}}`.
 *
 * Where: as an add-on `ws://supervisor/core/websocket` with `SUPERVISOR_TOKEN` (the Supervisor's proxy);
 * outside one `<home_assistant.url>/api/websocket` with `home_assistant.token`. One connection per call:
 * these commands are rare (a user turning a takeover on or off), so nothing stays connected.
 */
import WebSocket from "ws";
import { z } from "zod";
import { supervisorBaseUrl, type HaEnv } from "../ha/derive.js";
import { toBuffer } from "../satellite/wires/link.js";

export interface HaWebSocketTarget {
  /** `ws://` or `wss://` URL of the WebSocket API. */
  readonly url: string;
  /** Access token. Secret. */
  readonly token: string;
  readonly via: "supervisor" | "home_assistant.url";
}

export type HaWebSocketFailure = "unreachable" | "auth_invalid" | "timeout" | "protocol" | "command_failed";

/** A failed call; `message` is words a user understands. */
export class HaWebSocketError extends Error {
  readonly code: HaWebSocketFailure;
  /** Home Assistant's own error code for `command_failed` (`not_found`, `unauthorized`, ...). */
  readonly haCode: string | undefined;
  constructor(code: HaWebSocketFailure, message: string, haCode?: string) {
    super(message);
    this.name = "HaWebSocketError";
    this.code = code;
    this.haCode = haCode;
  }
}

/** Where the WebSocket API is: the Supervisor proxy as an add-on, else `home_assistant.url` + `token`. */
export function haWebSocketTarget(
  ha: { readonly url?: string | undefined; readonly token?: string | undefined },
  env: HaEnv,
): HaWebSocketTarget | { readonly reason: string } {
  const supervisorToken = env.SUPERVISOR_TOKEN?.trim();
  if (supervisorToken)
    return {
      url: `${toWs(supervisorBaseUrl(env))}/core/websocket`,
      token: supervisorToken,
      via: "supervisor",
    };
  if (ha.url && ha.token)
    return {
      url: `${toWs(ha.url.replace(/\/+$/, ""))}/api/websocket`,
      token: ha.token,
      via: "home_assistant.url",
    };
  return {
    reason:
      "Home Assistant's WebSocket API is not configured: run as an add-on, or set home_assistant.url and " +
      "home_assistant.token",
  };
}

const toWs = (httpUrl: string): string => httpUrl.replace(/^http(s?):\/\//i, (_m, s: string) => `ws${s}://`);

const ServerMessage = z.looseObject({ type: z.string(), id: z.number().int().optional() });
const ResultMessage = z.object({
  id: z.number().int(),
  type: z.literal("result"),
  success: z.boolean(),
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

/** What Home Assistant says after an entity was enabled again. */
export interface EntityUpdateResult {
  /** Seconds until Home Assistant reloads the integration and the entity is back. */
  readonly reloadDelayS?: number;
  /** Home Assistant must restart before the entity is back. */
  readonly requireRestart?: boolean;
}

export interface HaWebSocketClientOptions {
  /** Whole call (connect, auth, command). Default 10 000 ms. */
  readonly timeoutMs?: number;
}

export class HaWebSocketClient {
  readonly #target: HaWebSocketTarget;
  readonly #timeoutMs: number;

  constructor(target: HaWebSocketTarget, o: HaWebSocketClientOptions = {}) {
    this.#target = target;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
  }

  /**
   * `config/entity_registry/update` with `disabled_by: "user"` (disable) or `null` (enable).
   * @throws HaWebSocketError
   */
  async setEntityDisabled(entityId: string, disabled: boolean): Promise<EntityUpdateResult> {
    const result = await this.command({
      type: "config/entity_registry/update",
      entity_id: entityId,
      disabled_by: disabled ? "user" : null,
    });
    const r = z
      .object({ reload_delay: z.number().optional(), require_restart: z.boolean().optional() })
      .safeParse(result);
    if (!r.success) return {};
    return {
      ...(r.data.reload_delay === undefined ? {} : { reloadDelayS: r.data.reload_delay }),
      ...(r.data.require_restart === undefined ? {} : { requireRestart: r.data.require_restart }),
    };
  }

  /**
   * Connects, authenticates, sends one command (`id` is added) and resolves with its `result`.
   * @throws HaWebSocketError
   */
  command(message: { type: string } & Record<string, unknown>): Promise<unknown> {
    const where =
      this.#target.via === "supervisor" ? "Home Assistant (through the Supervisor)" : this.#target.url;
    return new Promise<unknown>((resolve, reject) => {
      const ws = new WebSocket(this.#target.url, { handshakeTimeout: this.#timeoutMs });
      let settled = false;
      const finish = (err: HaWebSocketError | undefined, value?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.removeAllListeners("message");
        ws.close();
        if (err) reject(err);
        else resolve(value);
      };
      const timer = setTimeout(
        () => finish(new HaWebSocketError("timeout", `${where} did not answer within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      const id = 1;
      ws.on("error", (err: NodeJS.ErrnoException) =>
        finish(new HaWebSocketError("unreachable", `cannot reach ${where} (${err.code ?? err.message})`)),
      );
      ws.on("unexpected-response", (_req, res) =>
        finish(
          new HaWebSocketError("unreachable", `${where} refused the WebSocket (HTTP ${res.statusCode})`),
        ),
      );
      ws.on("close", () =>
        finish(new HaWebSocketError("protocol", `${where} closed the connection before answering`)),
      );
      ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
        let parsed: unknown;
        try {
          if (isBinary) throw new Error("binary");
          parsed = JSON.parse(toBuffer(data).toString("utf8"));
        } catch {
          finish(new HaWebSocketError("protocol", `${where} sent something that is not JSON`));
          return;
        }
        const msg = ServerMessage.safeParse(parsed);
        if (!msg.success) {
          finish(new HaWebSocketError("protocol", `${where} sent a message without a type`));
          return;
        }
        switch (msg.data.type) {
          case "auth_required":
            ws.send(JSON.stringify({ type: "auth", access_token: this.#target.token }));
            return;
          case "auth_ok":
            ws.send(JSON.stringify({ ...message, id }));
            return;
          case "auth_invalid":
            finish(new HaWebSocketError("auth_invalid", `${where} refused the access token`));
            return;
          case "result": {
            const r = ResultMessage.safeParse(parsed);
            if (!r.success || r.data.id !== id) return;
            if (r.data.success) finish(undefined, r.data.result ?? null);
            else
              finish(
                new HaWebSocketError(
                  "command_failed",
                  `Home Assistant refused ${message.type}: ${r.data.error?.message ?? "no reason given"}`,
                  r.data.error?.code,
                ),
              );
            return;
          }
          default:
            return; // events and pongs are not ours
        }
      });
    });
  }
}
