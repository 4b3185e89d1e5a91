import { describe, expect, it } from "vitest";
import { SATELLITE_ERRORS } from "../src/errors.js";
import {
  ClientMessageSchema,
  ServerMessageSchema,
  encodeServerMessage,
  errorMessage,
  parseClientMessage,
} from "../src/satellite/wires/v1-protocol.js";

const hello = {
  type: "hello",
  protocol: 1,
  client_id: "kitchen",
  audio: { in: { rate: 16000 }, out: { rate: 24000 } },
};

describe("satellite protocol v1: client messages", () => {
  it("accepts every client message type with its fields", () => {
    const ok = [
      hello,
      { ...hello, name: "Kitchen", token: "t".repeat(20), turn: "client" },
      { type: "turn.start" },
      { type: "turn.start", wake_word: "ok nabu" },
      { type: "turn.end" },
      { type: "cancel", reason: "button" },
      { type: "playback.done", played_ms: 1234.5 },
      { type: "approval.reply", id: "appr_1", approve: true },
    ];
    for (const m of ok) {
      const r = parseClientMessage(JSON.stringify(m));
      expect(r, JSON.stringify(m)).toMatchObject({ ok: true, msg: { type: m.type } });
    }
  });

  it("defaults turn to server_vad and ignores unknown fields", () => {
    const r = parseClientMessage(JSON.stringify({ ...hello, firmware: "1.2" }));
    expect(r.ok && r.msg).toEqual({ ...hello, turn: "server_vad" });
  });

  it("gives bad_message for invalid JSON, non-objects, missing or unknown types and bad fields", () => {
    const bad: [string, RegExp][] = [
      ["{not json", /invalid JSON/],
      ["[1,2]", /JSON object/],
      ["42", /JSON object/],
      ['{"no":"type"}', /type/],
      ['{"type":"dance"}', /unknown message type "dance"/],
      ['{"type":"playback.done","played_ms":-1}', /played_ms/],
      ['{"type":"playback.done"}', /played_ms/],
      ['{"type":"approval.reply","id":"x","approve":"yes"}', /approve/],
      [JSON.stringify({ ...hello, audio: { in: { rate: 44100 }, out: { rate: 16000 } } }), /audio\.in\.rate/],
      [JSON.stringify({ ...hello, client_id: "bad id with spaces" }), /client_id/],
      [JSON.stringify({ ...hello, audio: undefined }), /audio/],
    ];
    for (const [text, why] of bad) {
      const r = parseClientMessage(text);
      expect(r.ok, text).toBe(false);
      if (!r.ok) {
        expect(r.code, text).toBe("bad_message");
        expect(r.message, text).toMatch(why);
      }
    }
  });

  it("gives unsupported_protocol for a hello with another protocol number", () => {
    const r = parseClientMessage(JSON.stringify({ ...hello, protocol: 2 }));
    expect(r).toMatchObject({ ok: false, code: "unsupported_protocol" });
    expect(parseClientMessage(JSON.stringify({ ...hello, protocol: "1" }))).toMatchObject({
      ok: false,
      code: "bad_message",
    });
  });

  it("rejects client messages of a server type", () => {
    expect(ClientMessageSchema.safeParse({ type: "playback.clear" }).success).toBe(false);
  });
});

describe("satellite protocol v1: server messages", () => {
  it("error frames carry the registry's fatal flag and default text", () => {
    for (const code of Object.keys(SATELLITE_ERRORS) as (keyof typeof SATELLITE_ERRORS)[]) {
      const m = errorMessage(code);
      expect(m).toEqual({
        type: "error",
        code,
        message: SATELLITE_ERRORS[code].message,
        fatal: SATELLITE_ERRORS[code].fatal,
      });
      expect(ServerMessageSchema.safeParse(m).success).toBe(true);
    }
    expect(errorMessage("bad_audio", "odd").message).toBe("odd");
  });

  it("encodes with type first and validates every documented shape", () => {
    const msgs = [
      {
        type: "session_ready",
        protocol: 1,
        session_id: "s",
        audio: { in: { rate: 16000 }, out: { rate: 16000 } },
        turn: "client",
      },
      { type: "state", value: "speaking" },
      { type: "response.start", id: "r" },
      { type: "response.end", id: "r", reason: "interrupted" },
      { type: "playback.clear" },
      { type: "transcript", role: "user", text: "hi", final: true },
      { type: "tool", name: "HassTurnOn", server: "ha", status: "completed" },
      { type: "approval.request", id: "a", server: "ha", tool: "unlock", arguments: "{}", timeout_s: 30 },
      { type: "session.end", reason: "shutdown" },
    ] as const;
    for (const m of msgs) {
      const parsed = ServerMessageSchema.parse(m);
      expect(encodeServerMessage(parsed).startsWith(`{"type":"${m.type}"`)).toBe(true);
    }
    expect(ServerMessageSchema.safeParse({ type: "response.end", id: "r", reason: "exploded" }).success).toBe(
      false,
    );
    expect(ServerMessageSchema.safeParse({ type: "state", value: "sleeping" }).success).toBe(false);
  });
});
