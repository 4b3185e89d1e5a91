/**
 * What a session has told the upstream about its configuration: the opening `session.update`, later
 * ones (turn mode, carried-over context, tools, transcription language, speaker voice), and their
 * `event_id`s, so that an `error` can be matched to the update it refuses (`error-match.ts`).
 */
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import type { Config, McpServerConfig } from "../config/model.js";
import type { Logger } from "../log.js";
import type { RoutedTool } from "../mcp/types.js";
import { clientEventId } from "./error-match.js";
import {
  buildSessionUpdate,
  buildToolsUpdate,
  instructionsWithContext,
  turnDetection,
  type TurnMode,
} from "./session-config.js";

type SessionUpdate = Extract<RealtimeClientEvent, { type: "session.update" }>;

export interface SessionUpdatesOptions {
  readonly openai: Config["openai"];
  readonly send: (event: RealtimeClientEvent) => void;
  readonly log: Logger;
  /** The native servers offered now, and where the session learns that it offers them. */
  readonly native: {
    servers(): McpServerConfig[];
    offer(servers: readonly McpServerConfig[]): void;
  };
  readonly functionTools: () => readonly RoutedTool[];
  readonly turn: TurnMode;
  readonly context?: string | undefined;
  readonly createResponse: boolean;
  readonly contextTokens?: number | undefined;
}

const toolsJson = (u: SessionUpdate): string =>
  JSON.stringify(u.session.type === "realtime" ? u.session.tools : []);

export class SessionUpdates {
  readonly #o: SessionUpdatesOptions;
  #turn: TurnMode;
  #createResponse: boolean;
  #openingId: string | null = null;
  readonly #laterIds = new Set<string>();
  #lastToolsJson = "";

  constructor(opts: SessionUpdatesOptions) {
    this.#o = opts;
    this.#turn = opts.turn;
    this.#createResponse = opts.createResponse;
  }

  /** The session's turn mode as last sent. */
  get turn(): TurnMode {
    return this.#turn;
  }

  /** `event_id` of the opening update, once sent. */
  get openingId(): string | null {
    return this.#openingId;
  }

  /** `event_id`s of later updates no error has refused. */
  get laterIds(): ReadonlySet<string> {
    return this.#laterIds;
  }

  /** An error refused the later update `id`. */
  refused(id: string): void {
    this.#laterIds.delete(id);
  }

  /** Sends the full configuration (once, right after connecting). */
  opening(): void {
    const o = this.#o;
    const native = o.native.servers();
    o.native.offer(native);
    const update = buildSessionUpdate({
      openai: o.openai,
      turn: this.#turn,
      native,
      functions: o.functionTools(),
      ...(o.context ? { context: o.context } : {}),
      createResponse: this.#createResponse,
      ...(o.contextTokens ? { contextTokens: o.contextTokens } : {}),
    });
    this.#lastToolsJson = toolsJson(update);
    this.#openingId = clientEventId("session_update");
    o.send({ ...update, event_id: this.#openingId });
  }

  /** Turn mode and carried-over context for a (warm) session; sends only what changed. */
  configure(opts: { turn: TurnMode; context?: string; createResponse?: boolean }): void {
    const session: SessionUpdate["session"] = { type: "realtime" };
    let changed = false;
    const createResponse = opts.createResponse ?? true;
    if (opts.turn !== this.#turn || createResponse !== this.#createResponse) {
      this.#turn = opts.turn;
      this.#createResponse = createResponse;
      session.audio = {
        input: { turn_detection: turnDetection(opts.turn, this.#o.openai.turn_detection, createResponse) },
      };
      changed = true;
    }
    if (opts.context) {
      session.instructions = instructionsWithContext(this.#o.openai.instructions, opts.context);
      changed = true;
    }
    if (changed) this.#later({ type: "session.update", session });
  }

  /** Sends the tools again when the native list or the client tools changed since last sent. */
  refreshTools(): void {
    const native = this.#o.native.servers();
    const update = buildToolsUpdate(native, this.#o.functionTools());
    const json = toolsJson(update);
    if (json === this.#lastToolsJson) return;
    this.#lastToolsJson = json;
    this.#o.native.offer(native);
    this.#o.log.debug({ tools: native.length }, "re-sending session tools");
    this.#later(update);
  }

  /** The input transcription's language from now on (an ISO-639-1 code). */
  transcriptionLanguage(language: string): void {
    this.#o.send({
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { transcription: { model: this.#o.openai.transcription_model, language } } },
      },
    });
  }

  /** `voice` for what the session says from now on; turn detection off (out-of-band speech only). */
  speaker(voice: string): void {
    this.#turn = "client";
    this.#o.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: null }, output: { voice } } },
    });
  }

  #later(update: SessionUpdate): void {
    const id = clientEventId("session_update");
    this.#laterIds.add(id);
    this.#o.send({ ...update, event_id: id });
  }
}
