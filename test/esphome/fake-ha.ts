/**
 * A fake Home Assistant WebSocket API for tests, written from home-assistant/core's `websocket_api`
 * (`auth.py`, `connection.py`, `messages.py`) and `config/entity_registry.py`: plain WebSocket on 127.0.0.1
 * (port 0) at `/api/websocket` and, as the Supervisor's proxy has it, `/core/websocket`.
 *
 * - Auth phase: sends `{type: "auth_required", ha_version}`; `{type: "auth", access_token}` with the right
 *   token gets `auth_ok`, anything else `auth_invalid` and the connection closed.
 * - Commands need an increasing integer `id` (else `id_reuse`); unknown types get `unknown_command`.
 * - `config/entity_registry/update {entity_id, disabled_by: "user" | null}` changes the entity's
 *   `disabled_by` and answers `{entity_entry}`, plus `reload_delay: 30` when enabling (the integration
 *   reloads after `RELOAD_AFTER_UPDATE_DELAY`); an unknown entity gets `not_found` "Entity not found".
 * - `refuseNext(code, message)` makes the next command fail with that error; `silent` never answers
 *   commands. Every update applied is recorded in order.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

export const FAKE_HA_VERSION = "2026.11.2";
/** Seconds, home-assistant/core `config_entries.RELOAD_AFTER_UPDATE_DELAY`. */
export const RELOAD_AFTER_UPDATE_DELAY = 30;

export interface FakeHaEntity {
  disabled_by: string | null;
  config_entry_id?: string;
  platform?: string;
}

export interface FakeHa {
  /** `http://127.0.0.1:<port>`: what `home_assistant.url` or `OPENVOICE_SUPERVISOR_URL` takes. */
  readonly url: string;
  readonly entities: Map<string, FakeHaEntity>;
  /** Applied updates, in order. */
  readonly updates: { entity_id: string; disabled_by: string | null }[];
  /** Auth attempts with a wrong token. */
  readonly authFailures: () => number;
  /** Connections opened so far. */
  readonly connections: () => number;
  refuseNext(code: string, message: string): void;
  silent: boolean;
  close(): Promise<void>;
}

export async function startFakeHa(o: {
  token: string;
  entities?: Record<string, FakeHaEntity>;
}): Promise<FakeHa> {
  const entities = new Map(Object.entries(o.entities ?? {}));
  const updates: { entity_id: string; disabled_by: string | null }[] = [];
  let authFailures = 0;
  let connections = 0;
  let refusal: { code: string; message: string } | undefined;
  const http = createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true });
  http.on("upgrade", (req, socket, head) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/api/websocket" && path !== "/core/websocket") {
      socket.end("HTTP/1.1 404 Not Found\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws));
  });

  const fake: FakeHa = {
    url: "",
    entities,
    updates,
    authFailures: () => authFailures,
    connections: () => connections,
    refuseNext(code, message) {
      refusal = { code, message };
    },
    silent: false,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };

  function serve(ws: WebSocket): void {
    connections++;
    let authed = false;
    let lastId = 0;
    const send = (m: object): void => ws.send(JSON.stringify(m));
    const error = (id: number, code: string, message: string): void =>
      send({ id, type: "result", success: false, error: { code, message } });
    send({ type: "auth_required", ha_version: FAKE_HA_VERSION });
    ws.on("message", (data: Buffer) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(data.toString()) as Record<string, unknown>;
      } catch {
        ws.close(1003);
        return;
      }
      if (!authed) {
        if (msg.type === "auth" && msg.access_token === o.token) {
          authed = true;
          send({ type: "auth_ok", ha_version: FAKE_HA_VERSION });
        } else {
          authFailures++;
          send({ type: "auth_invalid", message: "Invalid access token or password" });
          ws.close();
        }
        return;
      }
      const id = msg.id;
      if (typeof id !== "number" || !Number.isInteger(id) || typeof msg.type !== "string") {
        error(typeof id === "number" ? id : 0, "invalid_format", "Message incorrectly formatted.");
        return;
      }
      if (id <= lastId) {
        error(id, "id_reuse", "Identifier values have to increase.");
        return;
      }
      lastId = id;
      if (fake.silent) return;
      if (refusal) {
        const r = refusal;
        refusal = undefined;
        error(id, r.code, r.message);
        return;
      }
      if (msg.type !== "config/entity_registry/update") {
        error(id, "unknown_command", "Unknown command.");
        return;
      }
      const entityId = msg.entity_id;
      const entity = typeof entityId === "string" ? entities.get(entityId) : undefined;
      if (typeof entityId !== "string" || !entity) {
        error(id, "not_found", "Entity not found");
        return;
      }
      const result: Record<string, unknown> = {};
      if ("disabled_by" in msg) {
        if (msg.disabled_by !== null && msg.disabled_by !== "user") {
          error(
            id,
            "invalid_format",
            "value must be one of ['user'] for dictionary value @ data['disabled_by']",
          );
          return;
        }
        entity.disabled_by = msg.disabled_by;
        updates.push({ entity_id: entityId, disabled_by: msg.disabled_by });
        if (msg.disabled_by === null) result.reload_delay = RELOAD_AFTER_UPDATE_DELAY;
      }
      send({
        id,
        type: "result",
        success: true,
        result: { entity_entry: { entity_id: entityId, ...entity }, ...result },
      });
    });
  }

  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const { port } = http.address() as AddressInfo;
  return Object.assign(fake, { url: `http://127.0.0.1:${port}` });
}
