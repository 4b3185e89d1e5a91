/**
 * Why the Realtime upstream cannot be used, in words a user can act on. Every way a session can fail to
 * open (refused upgrade, network, timeout, a fatal `error` event, a rejected `session.update`) becomes one
 * `UpstreamUnavailableError`; `/readyz`, the ingress status, satellites and Wyoming clients all show its
 * `message` (and `hint`) as is.
 */
import { UpstreamConnectError } from "./transport.js";

/**
 * `auth`: the key was refused; `quota`: the account is out of quota; `config`: the upstream rejected our
 * configuration (model, session.update); `silent`: the connection opened and the upstream said nothing
 * within the handshake deadline (a refusal in effect); `network`, `timeout`, `refused`, `closed`: the
 * connection; `error`: any other fatal upstream error.
 */
export type UpstreamFailureKind =
  "auth" | "quota" | "config" | "silent" | "refused" | "network" | "timeout" | "closed" | "error";

export class UpstreamUnavailableError extends Error {
  readonly code = "upstream_unavailable" as const;
  readonly kind: UpstreamFailureKind;
  /** What the user can check, e.g. "check openai.api_key"; shown after the message in status views. */
  readonly hint: string | undefined;
  /** HTTP status of a refused WebSocket upgrade, if that is how it failed. */
  readonly status: number | undefined;
  constructor(
    kind: UpstreamFailureKind,
    message: string,
    opts: { hint?: string; status?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "UpstreamUnavailableError";
    this.kind = kind;
    this.hint = opts.hint;
    this.status = opts.status;
  }

  /** `message (hint)`: the one-line form for status pages and logs. */
  get detail(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

/** The words every upstream failure starts with; DOCS.md explains each (a test keeps them in step). */
export const UPSTREAM_MESSAGES = {
  keyRejected: "OpenAI rejected the API key",
  quotaExceeded: "OpenAI quota exceeded",
  rateLimited: "OpenAI is rate limiting this key",
  deactivated: "OpenAI deactivated the account",
  modelUnknown: "OpenAI does not offer the configured model",
  sessionRejected: "OpenAI rejected the session configuration",
  refused: "OpenAI refused the connection",
  unreachable: "Cannot reach OpenAI",
  noAnswer: "OpenAI did not answer",
  notConfirmed: "OpenAI did not confirm the session configuration",
  closedDuringSetup: "OpenAI closed the connection during set-up",
  ended: "OpenAI ended the session",
  failed: "OpenAI session failed",
} as const;
const M = UPSTREAM_MESSAGES;
export const KEY_REJECTED = M.keyRejected;
export const QUOTA_EXCEEDED = M.quotaExceeded;
const KEY_HINT = "check openai.api_key";
const QUOTA_HINT = "check the plan and billing of the OpenAI account";

/** Upstream `error` codes after which a session cannot go on. */
const FATAL_CODES = new Set([
  "invalid_api_key",
  "insufficient_quota",
  "model_not_found",
  "session_not_found",
  "account_deactivated",
]);

/** Whether an upstream `error` event ends the session. */
export function isFatalUpstreamError(e: { type: string; code?: string | null | undefined }): boolean {
  return (
    FATAL_CODES.has(e.code ?? "") ||
    e.type === "authentication_error" ||
    e.type === "insufficient_quota" ||
    e.type === "permission_error"
  );
}

/** A fatal upstream `error` event in words. */
export function fromUpstreamError(e: {
  type: string;
  code?: string | null | undefined;
  message: string;
}): UpstreamUnavailableError {
  const code = e.code ?? e.type;
  if (code === "invalid_api_key" || e.type === "authentication_error" || e.type === "permission_error")
    return new UpstreamUnavailableError("auth", KEY_REJECTED, { hint: KEY_HINT });
  if (code === "insufficient_quota" || e.type === "insufficient_quota")
    return new UpstreamUnavailableError("quota", QUOTA_EXCEEDED, { hint: QUOTA_HINT });
  if (code === "account_deactivated")
    return new UpstreamUnavailableError("auth", M.deactivated, { hint: KEY_HINT });
  if (code === "model_not_found")
    return new UpstreamUnavailableError("config", `${M.modelUnknown}: ${e.message}`, {
      hint: "check openai.model",
    });
  return new UpstreamUnavailableError("error", `${M.ended}: ${e.message}`);
}

/** Our `session.update` was answered with an `error` naming it. */
export function sessionRejected(message: string): UpstreamUnavailableError {
  return new UpstreamUnavailableError("config", `${M.sessionRejected}: ${message}`, {
    hint: "check the openai options",
  });
}

/** Any failure of `RealtimeSession.open()` in words (already-typed errors pass through). */
export function toUpstreamUnavailable(err: unknown): UpstreamUnavailableError {
  if (err instanceof UpstreamUnavailableError) return err;
  if (err instanceof UpstreamConnectError) {
    if (err.status === 401 || err.status === 403)
      return new UpstreamUnavailableError("auth", KEY_REJECTED, {
        hint: KEY_HINT,
        status: err.status,
        cause: err,
      });
    if (err.status === 429)
      return new UpstreamUnavailableError("quota", M.rateLimited, {
        hint: QUOTA_HINT,
        status: err.status,
        cause: err,
      });
    if (err.outcome === "refused")
      return new UpstreamUnavailableError("refused", `${M.refused} (HTTP ${err.status ?? "?"})`, {
        hint: "check openai.base_url",
        ...(err.status !== undefined ? { status: err.status } : {}),
        cause: err,
      });
    if (err.outcome === "timeout")
      return new UpstreamUnavailableError("timeout", `${M.noAnswer}: ${err.message}`, {
        hint: "check the network connection",
        cause: err,
      });
    return new UpstreamUnavailableError("network", `${M.unreachable}: ${err.message}`, {
      hint: "check the network connection and openai.base_url",
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new UpstreamUnavailableError("error", `${M.failed}: ${message}`, { cause: err });
}

/** Spoken-friendly words for a response that failed before saying anything (DOCS.md lists them). */
export const FAILED_RESPONSE_MESSAGES = {
  busy: "Sorry, the assistant is busy right now. Please try again in a moment.",
  filtered: "Sorry, I can't answer that.",
  tooLong: "Sorry, that answer got too long. Please ask again.",
  other: "Sorry, something went wrong while answering. Please try again.",
} as const;

/** The words for a failed or incomplete `response.done` from its status, reason and error code. */
export function failedResponseMessage(
  status: string | undefined,
  reason: string | undefined,
  code: string | undefined,
): string {
  const m = FAILED_RESPONSE_MESSAGES;
  if (code === "rate_limit_exceeded") return m.busy;
  if (status === "incomplete" && reason === "content_filter") return m.filtered;
  if (status === "incomplete" && reason === "max_output_tokens") return m.tooLong;
  return m.other;
}
