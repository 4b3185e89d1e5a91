/**
 * Wyoming framing and event parsing, as pure functions: every event survives being split at every
 * byte boundary, inline data merges under the data part, the writer lays events out like the Python
 * writer, every limit and malformation is a typed `FramingError`, and events parse into the union.
 */
import { describe, expect, it } from "vitest";
import {
  FRAMING_LIMITS,
  FramingError,
  WYOMING_VERSION,
  WyomingFrameReader,
  encodeFrame,
  type WyomingFrame,
} from "../src/wyoming/framing.js";
import { WyomingEvents, parseEvent } from "../src/wyoming/events.js";

const readAll = (bytes: Buffer, cuts: number[]): WyomingFrame[] => {
  const r = new WyomingFrameReader();
  const out: WyomingFrame[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...r.push(bytes.subarray(from, cut)));
    from = cut;
  }
  r.end();
  return out;
};

const framingError = (fn: () => unknown): FramingError => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FramingError);
    return e as FramingError;
  }
  throw new Error("expected a FramingError");
};

const header = (h: Record<string, unknown>): Buffer => Buffer.from(`${JSON.stringify(h)}\n`);

// A stream of three events: data only, data + payload (multi-byte text), neither.
const STREAM = Buffer.concat([
  encodeFrame({ type: "transcribe", data: { language: "de" } }),
  encodeFrame({
    type: "audio-chunk",
    data: { rate: 16000, width: 2, channels: 1, note: "grüße ✓" },
    payload: Buffer.from([0, 1, 2, 3, 0x0a, 5]),
  }),
  encodeFrame({ type: "audio-stop" }),
]);

describe("WyomingFrameReader", () => {
  it("reads the same events whichever byte boundary splits the stream", () => {
    const whole = readAll(STREAM, []);
    expect(whole.map((f) => f.type)).toEqual(["transcribe", "audio-chunk", "audio-stop"]);
    expect(whole[1]!.data).toEqual({ rate: 16000, width: 2, channels: 1, note: "grüße ✓" });
    expect(whole[1]!.payload).toEqual(Buffer.from([0, 1, 2, 3, 0x0a, 5]));
    expect(whole[2]).toEqual({ type: "audio-stop", data: {}, version: WYOMING_VERSION });
    for (let i = 1; i < STREAM.length; i++) expect(readAll(STREAM, [i]), `cut at ${i}`).toEqual(whole);
    for (let i = 1; i < STREAM.length; i += 7)
      for (let j = i + 1; j < STREAM.length; j += 5) expect(readAll(STREAM, [i, j])).toEqual(whole);
    const bytewise = Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1);
    expect(readAll(STREAM, bytewise)).toEqual(whole);
  });

  it("merges inline data under the data part, and takes inline data alone", () => {
    const data = Buffer.from(JSON.stringify({ text: "from the data part", language: "en" }));
    const bytes = Buffer.concat([
      header({
        type: "transcript",
        data: { text: "inline", context: { conversation_id: "c1" } },
        data_length: data.length,
      }),
      data,
      header({ type: "ping", data: { text: "inline only" } }),
    ]);
    const [a, b] = readAll(bytes, []);
    expect(a!.data).toEqual({
      text: "from the data part",
      language: "en",
      context: { conversation_id: "c1" },
    });
    expect(b!.data).toEqual({ text: "inline only" });
  });

  it("accepts CRLF and null lengths, and reports the sender's version", () => {
    const bytes = Buffer.from(
      '{"type":"describe","data_length":null,"payload_length":0,"version":"1.5.3"}\r\n',
    );
    expect(readAll(bytes, [])).toEqual([{ type: "describe", data: {}, version: "1.5.3" }]);
  });

  it("rejects what is not a header: not JSON, no type, bad inline data or lengths", () => {
    const cases: [string, string][] = [
      ["not json at all\n", "bad_header"],
      ["\n", "bad_header"],
      ['["type"]\n', "bad_header"],
      ['{"data":{}}\n', "bad_header"],
      ['{"type":""}\n', "bad_header"],
      ['{"type":"x","data":[1]}\n', "bad_header"],
      ['{"type":"x","data_length":-1}\n', "bad_header"],
      ['{"type":"x","payload_length":1.5}\n', "bad_header"],
      ['{"type":"x","data_length":"3"}\n', "bad_header"],
      ['{"type":"x","data_length":2}\n[]', "bad_data"],
      ['{"type":"x","data_length":3}\nabc', "bad_data"],
    ];
    for (const [input, code] of cases)
      expect(framingError(() => new WyomingFrameReader().push(Buffer.from(input))).code, input).toBe(code);
  });

  it("rejects a header line over 64 KiB as soon as it passes the limit, without waiting for a newline", () => {
    const limit = FRAMING_LIMITS.maxHeaderBytes;
    const atLimit = `{"type":"ping","data":{"text":"${"a".repeat(limit - 40)}"}}`;
    const exact = atLimit + " ".repeat(limit - Buffer.byteLength(atLimit));
    expect(Buffer.byteLength(exact)).toBe(limit);
    expect(new WyomingFrameReader().push(Buffer.from(`${exact}\n`))).toHaveLength(1);

    const r = new WyomingFrameReader();
    expect(r.push(Buffer.from(exact))).toEqual([]);
    expect(framingError(() => r.push(Buffer.from(" "))).code).toBe("header_too_large");
    expect(framingError(() => new WyomingFrameReader().push(Buffer.from(`${exact} \n`))).code).toBe(
      "header_too_large",
    );
  });

  it("rejects data and payloads over 1 MiB from the header alone", () => {
    const max = FRAMING_LIMITS.maxDataBytes;
    expect(
      framingError(() => new WyomingFrameReader().push(header({ type: "x", data_length: max + 1 }))).code,
    ).toBe("data_too_large");
    expect(
      framingError(() => new WyomingFrameReader().push(header({ type: "x", payload_length: max + 1 }))).code,
    ).toBe("payload_too_large");
    const r = new WyomingFrameReader();
    expect(r.push(header({ type: "audio-chunk", payload_length: max }))).toEqual([]);
    const frames = r.push(Buffer.alloc(max, 7));
    expect(frames[0]!.payload!.length).toBe(max);
  });

  it("detects a connection that ends inside an event, and accepts one that ends between events", () => {
    const one = encodeFrame({ type: "audio-chunk", data: { rate: 16000 }, payload: Buffer.alloc(10) });
    for (let i = 1; i < one.length; i++) {
      const r = new WyomingFrameReader();
      r.push(one.subarray(0, i));
      expect(framingError(() => r.end()).code, `ended after ${i} bytes`).toBe("truncated");
    }
    const r = new WyomingFrameReader();
    expect(r.push(one)).toHaveLength(1);
    expect(() => r.end()).not.toThrow();
  });
});

describe("encodeFrame", () => {
  const split = (b: Buffer) => {
    const nl = b.indexOf(0x0a);
    return {
      header: JSON.parse(b.subarray(0, nl).toString()) as Record<string, unknown>,
      rest: b.subarray(nl + 1),
    };
  };

  it("puts data in the data part with its length, never inline, and the payload after it", () => {
    const { header: h, rest } = split(
      encodeFrame({
        type: "audio-chunk",
        data: { rate: 24000, width: 2, channels: 1 },
        payload: Buffer.from("pcm"),
      }),
    );
    const data = JSON.stringify({ rate: 24000, width: 2, channels: 1 });
    expect(h).toEqual({
      type: "audio-chunk",
      version: WYOMING_VERSION,
      data_length: Buffer.byteLength(data),
      payload_length: 3,
    });
    expect(rest.toString()).toBe(`${data}pcm`);
  });

  it("omits zero lengths and drops undefined values", () => {
    expect(split(encodeFrame({ type: "transcript-stop" })).header).toEqual({
      type: "transcript-stop",
      version: WYOMING_VERSION,
    });
    const stop = encodeFrame(WyomingEvents.audioStop());
    expect(split(stop).header).not.toHaveProperty("data_length");
    expect(split(stop).rest.length).toBe(0);
    expect(split(encodeFrame({ type: "x", payload: Buffer.alloc(0) })).header).not.toHaveProperty(
      "payload_length",
    );
  });

  it("counts data_length in bytes, not characters", () => {
    const { header: h, rest } = split(encodeFrame(WyomingEvents.handled({ text: "Das Licht ist aus ✓" })));
    expect(h.data_length).toBe(rest.length);
    expect(rest.length).toBeGreaterThan(JSON.stringify({ text: "Das Licht ist aus ✓" }).length);
  });
});

describe("parseEvent", () => {
  const frame = (type: string, data: Record<string, unknown> = {}, payload?: Buffer): WyomingFrame => ({
    type,
    data,
    ...(payload ? { payload } : {}),
  });

  it("reads Python's nulls as absent and the payload as audio", () => {
    const p = parseEvent(
      frame("audio-chunk", { rate: 16000, width: 2, channels: 1, timestamp: null }, Buffer.from("ab")),
    );
    expect(p).toEqual({
      kind: "event",
      event: {
        type: "audio-chunk",
        rate: 16000,
        width: 2,
        channels: 1,
        timestamp: undefined,
        audio: Buffer.from("ab"),
      },
    });
    const empty = parseEvent(frame("audio-chunk", { rate: 16000, width: 2, channels: 1 }));
    expect(empty.kind === "event" && empty.event.type === "audio-chunk" && empty.event.audio.length).toBe(0);
  });

  it("reads a conversation transcript with its context and keeps unknown context keys", () => {
    const p = parseEvent(
      frame("transcript", {
        text: "turn on the light",
        language: "en",
        context: { conversation_id: "01J", device_id: "dev", extra: 1 },
      }),
    );
    expect(p.kind === "event" && p.event).toEqual({
      type: "transcript",
      text: "turn on the light",
      language: "en",
      context: { conversation_id: "01J", device_id: "dev", satellite_id: undefined, extra: 1 },
    });
  });

  it("reads synthesize with a voice by name, and the streaming events", () => {
    const p = parseEvent(frame("synthesize", { text: "Hi", voice: { name: "marin", speaker: null } }));
    expect(p.kind === "event" && p.event.type === "synthesize" && p.event.voice?.name).toBe("marin");
    for (const t of ["synthesize-start", "synthesize-stop", "describe", "audio-stop"])
      expect(parseEvent(frame(t)).kind, t).toBe("event");
    expect(parseEvent(frame("synthesize-chunk", { text: "Hel" })).kind).toBe("event");
  });

  it("skips unknown types and reports invalid data of known ones", () => {
    expect(parseEvent(frame("run-satellite"))).toEqual({ kind: "unknown", type: "run-satellite" });
    const bad = parseEvent(frame("audio-start", { rate: "fast", width: 2, channels: 1 }));
    expect(bad.kind).toBe("invalid");
    expect(bad.kind === "invalid" && bad.message).toMatch(/rate/);
    expect(parseEvent(frame("transcript", {})).kind).toBe("invalid");
    expect(parseEvent(frame("synthesize", { text: 5 })).kind).toBe("invalid");
  });
});
