/**
 * Error ↔ request matching. Every client event that can be refused carries an `event_id` of ours; an
 * upstream `error` names the request it answers (or none), and `matchError` says what it means for the
 * session. Pure: the caller keeps the ids and acts on the verdict.
 */
import { isFatalUpstreamError } from "./upstream-error.js";

/** Upstream error codes that are part of normal operation. */
const TOLERATED = new Set([
  "conversation_already_has_active_response",
  "response_cancel_not_active",
  "input_audio_buffer_commit_empty",
]);
const EXPIRY = new Set(["session_expired"]);

let eventCounter = 0;
/** A fresh client event id (`ov_<kind>_<n>`): it lets the upstream name the request an `error` answers. */
export const clientEventId = (kind: string): string => `ov_${kind}_${(++eventCounter).toString(36)}`;

/** The requests of ours an `error` may answer, as the session knows them when it arrives. */
export interface SentRequests {
  /** `event_id` of our last `response.create` (kept after its `response.created`). */
  readonly responseCreateId: string | null;
  /** That `response.create` has no `response.created` yet. */
  readonly awaitingResponse: boolean;
  /** `event_id` of the opening `session.update`, while the session is still being set up. */
  readonly openingUpdateId: string | null;
  /** The session is waiting to become ready. */
  readonly configuring: boolean;
  /** `event_id`s of later `session.update`s not yet answered by an error. */
  readonly laterUpdateIds: ReadonlySet<string>;
}

export interface UpstreamErrorBody {
  readonly type: string;
  readonly code?: string | null | undefined;
  readonly message?: string | undefined;
  readonly event_id?: string | null | undefined;
}

/**
 * What an upstream `error` means, first match wins:
 * - `busy`: `conversation_already_has_active_response`; `ours` when it names our last `response.create`,
 *   or names nothing while one of ours is outstanding (it is to be sent again later);
 * - `tolerated`: another code of normal operation;
 * - `response_refused`: our outstanding `response.create` was refused for another reason;
 * - `config_rejected`: the opening `session.update` was refused while setting up (fatal for the session);
 * - `update_rejected`: a later `session.update` was refused (the session goes on);
 * - `expired`: the upstream's time limit;
 * - `fatal`: the upstream cannot be used (auth, quota, configuration; see `isFatalUpstreamError`);
 * - `other`: to be logged and otherwise ignored.
 */
export type ErrorMatch =
  | { readonly kind: "busy"; readonly ours: boolean }
  | {
      readonly kind:
        | "tolerated"
        | "response_refused"
        | "config_rejected"
        | "update_rejected"
        | "expired"
        | "fatal"
        | "other";
    };

/** The error's code as metrics and logs name it (its `type` when it has no code). */
export const errorCode = (e: UpstreamErrorBody): string => e.code ?? e.type;

export function matchError(e: UpstreamErrorBody, sent: SentRequests): ErrorMatch {
  const code = errorCode(e);
  const about = e.event_id ?? null;
  if (code === "conversation_already_has_active_response")
    return {
      kind: "busy",
      ours: (about !== null && about === sent.responseCreateId) || (about === null && sent.awaitingResponse),
    };
  if (TOLERATED.has(code)) return { kind: "tolerated" };
  if (about !== null && about === sent.responseCreateId && sent.awaitingResponse)
    return { kind: "response_refused" };
  if (about !== null && about === sent.openingUpdateId && sent.configuring)
    return { kind: "config_rejected" };
  if (about !== null && sent.laterUpdateIds.has(about)) return { kind: "update_rejected" };
  if (EXPIRY.has(code)) return { kind: "expired" };
  if (isFatalUpstreamError(e)) return { kind: "fatal" };
  return { kind: "other" };
}
