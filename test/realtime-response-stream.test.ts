/** What the listener hears of responses, driven directly: a response queue and a recording listener. */
import { describe, expect, it } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { parseServerEvent, type HandledEvent } from "../src/realtime/events.js";
import { ResponseQueue } from "../src/realtime/response-queue.js";
import { ResponseStream } from "../src/realtime/response-stream.js";
import { FAILED_RESPONSE_MESSAGES } from "../src/realtime/upstream-error.js";
import { freshMetrics, silentLogger } from "./fake-realtime/helpers.js";
import { eventId } from "./fake-realtime/memory-transport.js";

function event(e: Record<string, unknown>): HandledEvent {
  const parsed = parseServerEvent(JSON.stringify({ event_id: eventId(), ...e }));
  if (parsed.kind !== "event") throw new Error(`not a handled event: ${JSON.stringify(parsed)}`);
  return parsed.event;
}
const created = (id: string) =>
  event({ type: "response.created", response: { id, object: "realtime.response" } });
const audio = (id: string) =>
  event({
    type: "response.output_audio.delta",
    response_id: id,
    item_id: "item_1",
    output_index: 0,
    content_index: 0,
    delta: "AAAA",
  });
const transcript = (id: string, delta: string) =>
  event({
    type: "response.output_audio_transcript.delta",
    response_id: id,
    item_id: "item_1",
    output_index: 0,
    content_index: 0,
    delta,
  });
const done = (id: string, status: string, status_details?: Record<string, unknown>) =>
  event({
    type: "response.done",
    response: { id, object: "realtime.response", status, ...(status_details ? { status_details } : {}) },
  });

function rig() {
  const sent: RealtimeClientEvent[] = [];
  const heard: [string, unknown][] = [];
  let settled = 0;
  const queue = new ResponseQueue({
    send: (e) => sent.push(e),
    callsInFlight: () => 0,
    closed: () => false,
    turn: () => "client",
    log: silentLogger(),
    settled: () => undefined,
  });
  const stream = new ResponseStream({
    queue,
    emit: (name, ...args) => void heard.push([name, args[0]]),
    error: (e) => void heard.push(["error", e]),
    metrics: freshMetrics(),
    log: silentLogger(),
    settled: () => void settled++,
  });
  return { queue, stream, heard, sent, names: () => heard.map(([n]) => n), settled: () => settled };
}

describe("ResponseStream", () => {
  it("response.start once, on the first audio or transcript; end `done`; other events are not its own", () => {
    const { stream, names, heard, settled } = rig();
    expect(
      stream.route(event({ type: "input_audio_buffer.speech_stopped", audio_end_ms: 1, item_id: "i" })),
    ).toBe(false);
    stream.route(created("r1"));
    expect(names()).toEqual([]);
    stream.route(transcript("r1", "Hi"));
    stream.route(audio("r1"));
    stream.route(done("r1", "completed"));
    expect(names()).toEqual(["response.start", "transcript", "audio", "response.end"]);
    expect(heard.at(-1)).toEqual(["response.end", { id: "r1", reason: "done" }]);
    expect(settled()).toBe(1);
  });

  it("a cancelled response ends with the reason it was cancelled for, or interrupted by new speech", () => {
    const a = rig();
    a.stream.route(created("r1"));
    a.stream.route(audio("r1"));
    a.queue.interrupt();
    a.stream.route(done("r1", "cancelled"));
    expect(a.heard.at(-1)).toEqual(["response.end", { id: "r1", reason: "interrupted" }]);
    const b = rig();
    b.stream.route(created("r2"));
    b.stream.route(audio("r2"));
    b.stream.route(done("r2", "cancelled", { type: "cancelled", reason: "turn_detected" }));
    expect(b.heard.at(-1)).toEqual(["response.end", { id: "r2", reason: "interrupted" }]);
  });

  it("a failure before any audio: response.failed, an error with words to say, and response.end failed", () => {
    const { stream, heard } = rig();
    stream.route(created("r1"));
    stream.route(
      done("r1", "failed", { type: "failed", error: { type: "server_error", code: "rate_limit_exceeded" } }),
    );
    expect(heard).toEqual([
      ["response.failed", { responseId: "r1", message: "rate_limit_exceeded" }],
      ["error", { code: "response_failed", message: FAILED_RESPONSE_MESSAGES.busy, fatal: false }],
      ["response.end", { id: "r1", reason: "failed" }],
    ]);
  });

  it("an abandoned response that never spoke is never heard, not even its failure", () => {
    const { queue, stream, names } = rig();
    queue.request();
    queue.cancelTurn();
    stream.route(created("r1"));
    stream.route(audio("r1"));
    stream.route(transcript("r1", "Hi"));
    stream.route(done("r1", "incomplete"));
    expect(names()).toEqual([]);
  });
});
