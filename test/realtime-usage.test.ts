/** Usage metering of upstream events, driven directly with a recording sink. */
import { describe, expect, it } from "vitest";
import type { UsageSink } from "../src/cost/meter.js";
import { parseServerEvent, type HandledEvent } from "../src/realtime/events.js";
import { meterUsage } from "../src/realtime/usage.js";
import { freshMetrics, metricValue } from "./fake-realtime/helpers.js";
import { eventId } from "./fake-realtime/memory-transport.js";

function event(e: Record<string, unknown>): HandledEvent {
  const parsed = parseServerEvent(JSON.stringify({ event_id: eventId(), ...e }));
  if (parsed.kind !== "event") throw new Error(`not a handled event: ${JSON.stringify(parsed)}`);
  return parsed.event;
}

describe("meterUsage", () => {
  it("counts response tokens and hands response and transcription usage to the sink with their models", async () => {
    const metrics = freshMetrics();
    const seen: [string, string][] = [];
    const sink: UsageSink = {
      response: (model) => void seen.push(["response", model]),
      transcription: (model) => void seen.push(["transcription", model]),
    };
    const models = { model: "gpt-realtime", transcription_model: "gpt-4o-mini-transcribe" };
    const usage = {
      total_tokens: 30,
      input_tokens: 10,
      output_tokens: 20,
      input_token_details: { text_tokens: 4, audio_tokens: 6 },
      output_token_details: { text_tokens: 5, audio_tokens: 15 },
    };
    meterUsage(
      event({
        type: "response.done",
        response: { id: "r1", object: "realtime.response", status: "completed", usage },
      }),
      metrics,
      sink,
      models,
    );
    meterUsage(
      event({
        type: "conversation.item.input_audio_transcription.completed",
        item_id: "i1",
        content_index: 0,
        transcript: "hi",
        usage: { type: "duration", seconds: 2 },
      }),
      metrics,
      sink,
      models,
    );
    // Nothing to meter, and no sink at all.
    meterUsage(
      event({ type: "response.done", response: { id: "r2", object: "realtime.response" } }),
      metrics,
      sink,
      models,
    );
    meterUsage(
      event({ type: "response.done", response: { id: "r3", object: "realtime.response", usage } }),
      metrics,
      undefined,
      models,
    );
    expect(seen).toEqual([
      ["response", "gpt-realtime"],
      ["transcription", "gpt-4o-mini-transcribe"],
    ]);
    expect(await metricValue(metrics, "openvoice_tokens_total", { kind: "output_audio" })).toBe(30);
  });
});
