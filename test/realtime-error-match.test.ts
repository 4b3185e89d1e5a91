/** Error ↔ event_id matching, driven directly (pure). */
import { describe, expect, it } from "vitest";
import { clientEventId, errorCode, matchError, type SentRequests } from "../src/realtime/error-match.js";

const sent = (over: Partial<SentRequests> = {}): SentRequests => ({
  responseCreateId: "ov_response_create_1",
  awaitingResponse: true,
  openingUpdateId: "ov_session_update_1",
  configuring: false,
  laterUpdateIds: new Set(["ov_session_update_2"]),
  ...over,
});
const err = (code: string | null, event_id?: string, type = "invalid_request_error") => ({
  type,
  code,
  message: "m",
  ...(event_id !== undefined ? { event_id } : {}),
});

describe("matchError", () => {
  it("a busy refusal is ours when it names our request, or names none while ours is outstanding", () => {
    const busy = "conversation_already_has_active_response";
    expect(matchError(err(busy, "ov_response_create_1"), sent())).toEqual({ kind: "busy", ours: true });
    expect(matchError(err(busy), sent())).toEqual({ kind: "busy", ours: true });
    expect(matchError(err(busy), sent({ awaitingResponse: false }))).toEqual({ kind: "busy", ours: false });
    expect(matchError(err(busy, "speech_x"), sent())).toEqual({ kind: "busy", ours: false });
    // Named after its response.created came: still ours (the server may have started its own response).
    expect(matchError(err(busy, "ov_response_create_1"), sent({ awaitingResponse: false }))).toEqual({
      kind: "busy",
      ours: true,
    });
  });

  it("tolerates the codes of normal operation whatever they name", () => {
    for (const code of ["response_cancel_not_active", "input_audio_buffer_commit_empty"])
      expect(matchError(err(code, "ov_response_create_1"), sent())).toEqual({ kind: "tolerated" });
  });

  it("a refusal naming our outstanding response.create is a refused response, not once it was created", () => {
    expect(matchError(err("bad", "ov_response_create_1"), sent())).toEqual({ kind: "response_refused" });
    expect(matchError(err("bad", "ov_response_create_1"), sent({ awaitingResponse: false }))).toEqual({
      kind: "other",
    });
  });

  it("the opening update is rejected only while setting up; a later one only once", () => {
    expect(matchError(err("bad", "ov_session_update_1"), sent({ configuring: true }))).toEqual({
      kind: "config_rejected",
    });
    expect(matchError(err("bad", "ov_session_update_1"), sent())).toEqual({ kind: "other" });
    expect(matchError(err("bad", "ov_session_update_2"), sent())).toEqual({ kind: "update_rejected" });
    expect(matchError(err("bad", "ov_session_update_2"), sent({ laterUpdateIds: new Set() }))).toEqual({
      kind: "other",
    });
  });

  it("expiry, fatal errors by code or type, and anything else", () => {
    expect(matchError(err("session_expired"), sent())).toEqual({ kind: "expired" });
    expect(matchError(err("invalid_api_key"), sent())).toEqual({ kind: "fatal" });
    expect(matchError(err(null, undefined, "insufficient_quota"), sent())).toEqual({ kind: "fatal" });
    expect(matchError(err("something_new"), sent())).toEqual({ kind: "other" });
  });

  it("names an error by its code, else its type", () => {
    expect(errorCode(err("x"))).toBe("x");
    expect(errorCode(err(null, undefined, "server_error"))).toBe("server_error");
  });
});

describe("clientEventId", () => {
  it("is unique and says what it asked for", () => {
    const a = clientEventId("response_create");
    const b = clientEventId("response_create");
    expect(a).toMatch(/^ov_response_create_[0-9a-z]+$/);
    expect(a).not.toBe(b);
  });
});
