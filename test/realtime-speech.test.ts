/** Out-of-band speech, driven directly: a recording `send`, server events through the edge parser. */
import { describe, expect, it } from "vitest";
import type { RealtimeClientEvent } from "openai/resources/realtime/realtime";
import { parseServerEvent, type HandledEvent } from "../src/realtime/events.js";
import { OutOfBandSpeech } from "../src/realtime/speech.js";
import { freshMetrics, metricValue } from "./fake-realtime/helpers.js";
import { eventId } from "./fake-realtime/memory-transport.js";

function event(e: Record<string, unknown>): HandledEvent {
  const parsed = parseServerEvent(JSON.stringify({ event_id: eventId(), ...e }));
  if (parsed.kind !== "event") throw new Error(`not a handled event: ${JSON.stringify(parsed)}`);
  return parsed.event;
}

function rig() {
  const sent: RealtimeClientEvent[] = [];
  const metrics = freshMetrics();
  const speech = new OutOfBandSpeech((e) => sent.push(e), metrics);
  const creates = () =>
    sent.filter(
      (e): e is Extract<RealtimeClientEvent, { type: "response.create" }> => e.type === "response.create",
    );
  const tagOf = (i: number): string => {
    const meta = creates()[i]?.response?.metadata as Record<string, string> | undefined;
    return meta?.openvoice_speech ?? "";
  };
  return { speech, sent, metrics, creates, tagOf };
}

const created = (id: string, tag: string) =>
  event({
    type: "response.created",
    response: { id, object: "realtime.response", metadata: { openvoice_speech: tag } },
  });
const audio = (responseId: string, pcm: Buffer) =>
  event({
    type: "response.output_audio.delta",
    response_id: responseId,
    item_id: "item_1",
    output_index: 0,
    content_index: 0,
    delta: pcm.toString("base64"),
  });
const done = (id: string, status: string) =>
  event({ type: "response.done", response: { id, object: "realtime.response", status } });

describe("OutOfBandSpeech", () => {
  it("asks for a conversation-free response in the voice, hands over its audio, resolves when completed", async () => {
    const { speech, creates, tagOf } = rig();
    const heard: Buffer[] = [];
    const p = speech.speak("Hello there.", "marin", { onAudio: (pcm) => heard.push(pcm) });
    expect(creates()[0]?.response).toMatchObject({
      conversation: "none",
      output_modalities: ["audio"],
      tool_choice: "none",
      audio: { output: { voice: "marin" } },
      input: [{ type: "message", role: "user", content: [{ type: "input_text", text: "Hello there." }] }],
    });
    expect(speech.route(created("resp_s", tagOf(0)))).toBe(true);
    expect(speech.route(audio("resp_s", Buffer.from([1, 2, 3, 4])))).toBe(true);
    expect(speech.route(done("resp_s", "completed"))).toBe(true);
    await p;
    expect(Buffer.concat(heard)).toEqual(Buffer.from([1, 2, 3, 4]));
  });

  it("leaves every other event to the session, including other responses", () => {
    const { speech, tagOf } = rig();
    expect(speech.route(created("resp_conv", "x"))).toBe(false); // nothing in flight
    void speech.speak("Hi", "marin", { onAudio: () => undefined }).catch(() => undefined);
    expect(speech.route(created("resp_conv", "not-ours"))).toBe(false);
    expect(speech.route(audio("resp_conv", Buffer.alloc(2)))).toBe(false);
    expect(speech.route(done("resp_conv", "completed"))).toBe(false);
    expect(speech.route(created("resp_s", tagOf(0)))).toBe(true);
    speech.failAll("end");
  });

  it("rejects when the upstream refuses the request, cuts the response, or the session ends", async () => {
    const { speech, metrics, creates, tagOf } = rig();
    const refused = speech.speak("a", "marin", { onAudio: () => undefined });
    const cut = speech.speak("b", "marin", { onAudio: () => undefined });
    const ended = speech.speak("c", "marin", { onAudio: () => undefined });
    const refusal = event({
      type: "error",
      error: {
        type: "invalid_request_error",
        code: "bad_voice",
        message: "no such voice",
        event_id: creates()[0]?.event_id,
      },
    });
    expect(speech.route(refusal)).toBe(true);
    await expect(refused).rejects.toThrow("speech failed: no such voice");
    expect(await metricValue(metrics, "openvoice_errors_total", { code: "upstream_bad_voice" })).toBe(1);
    speech.route(created("resp_b", tagOf(1)));
    speech.route(done("resp_b", "incomplete"));
    await expect(cut).rejects.toThrow("speech incomplete");
    speech.failAll("the connection to the assistant ended");
    await expect(ended).rejects.toThrow("the connection to the assistant ended");
  });

  it("an abort before the response exists settles at once; after, it also cancels that response", async () => {
    const { speech, sent, tagOf } = rig();
    const early = new AbortController();
    const a = speech.speak("a", "marin", { onAudio: () => undefined, signal: early.signal });
    early.abort();
    await expect(a).rejects.toThrow("speech cancelled");
    const late = new AbortController();
    const b = speech.speak("b", "marin", { onAudio: () => undefined, signal: late.signal });
    speech.route(created("resp_b", tagOf(1)));
    late.abort();
    await expect(b).rejects.toThrow("speech cancelled");
    expect(sent.at(-1)).toEqual({ type: "response.cancel", response_id: "resp_b" });
    // Its late events are no longer taken.
    expect(speech.route(done("resp_b", "cancelled"))).toBe(false);
  });
});
