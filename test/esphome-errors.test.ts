/**
 * Failures reach an emulated Voice PE as Home Assistant reports them: the ERROR voice event with a short
 * code and words, and the device back to idle. A refused start (the day's budget used up) carries the
 * engine's code and sentence; a fatal upstream error during a run (the conversation's `error` with
 * `fatal: true`, then `closed`) ends the run the same way, and the next wake is answered again.
 */
import { afterEach, describe, expect, it } from "vitest";
import { VoiceEvent } from "../src/esphome/api/index.js";
import { metricValue } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";
import { FULL_RUN, startHarness, utterance, type Harness } from "./esphome-helpers.js";

const E = VoiceEvent;

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("ESPHome errors on the device", () => {
  it("a start refused by the day's budget: ERROR budget_exceeded with the sentence, the device idle", async () => {
    // 2 s of reply costs $0.00256 (40 audio output tokens at $64 per million): over the $0.002 budget.
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { replyAudio: tone(2000), audioSpeed: 8 },
      config: { cost: { daily_budget_usd: 0.002 } },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const first = await dev.wake(await utterance());
    expect(first.events.map((e) => e.type)).toEqual(FULL_RUN);
    // At once: the conversation the budget ends after its answer may still be there; the run says why.
    const racing = await dev.wake(await utterance());
    expect(racing.error?.code).toBe("budget_exceeded");
    expect(racing.error?.message).toMatch(/voice budget is used up/i);
    expect(dev.state).toBe("IDLE");
    // Once it has ended, the start itself is refused with the engine's sentence.
    await expect.poll(() => h!.service.engine.status().conversations, { timeout: 10_000 }).toBe(0);
    const refused = await dev.wake(await utterance());
    expect(refused.error).toEqual({
      code: "budget_exceeded",
      message: expect.stringMatching(
        /^Today's voice budget of \$0\.0020 is used up; it resets at midnight\.$/,
      ),
    });
    expect(refused.events.map((e) => e.type)).toEqual([E.RUN_START, E.STT_START, E.ERROR, E.RUN_END]);
    expect(dev.state).toBe("IDLE");
    expect(
      await metricValue(h.app.metrics, "openvoice_esphome_turns_total", {
        device: dev.name,
        outcome: "error",
      }),
    ).toBe(2);
    const view = await h.waitDevice(dev.name, (d) => d.last_turn?.outcome === "error");
    expect(view.last_turn!.error).toMatch(/budget.*\(budget_exceeded\)/);
  });

  it("a start the upstream refuses: ERROR upstream_unavailable with the reason in words, the device idle", async () => {
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { refuseSession: () => ({ code: "invalid_api_key", type: "invalid_request_error" }) },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const run = await dev.wake(await utterance());
    expect(run.events.map((e) => e.type)).toEqual([E.RUN_START, E.STT_START, E.ERROR, E.RUN_END]);
    expect(run.error?.code).toBe("upstream_unavailable");
    expect(run.error?.message).toMatch(/key/i);
    expect(run.error?.message).not.toMatch(/invalid_api_key/);
    expect(dev.state).toBe("IDLE");
  });

  it("a fatal upstream error while the device awaits the answer: ERROR upstream_unavailable in words, the device idle, the next wake answered", async () => {
    h = await startHarness({
      entries: [{ take_over: true }],
      fake: { replyAudio: tone(300), replyDelayMs: 3000 },
    });
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (d) => d.owner === "openvoice");
    const running = dev.wake(await utterance());
    await expect.poll(() => dev.state, { timeout: 10_000 }).toBe("AWAITING_RESPONSE");
    const conn = h.fake.connections.find((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    )!;
    conn.send({
      type: "error",
      event_id: "event_fatal",
      error: {
        type: "insufficient_quota",
        code: "insufficient_quota",
        message: "You exceeded your current quota, please check your plan and billing details.",
        param: null,
        event_id: null,
      },
    });
    const run = await running;
    expect(run.error?.code).toBe("upstream_unavailable");
    expect(run.error?.message).toMatch(/quota/i);
    const types = run.events.map((e) => e.type);
    expect(types.slice(-2)).toEqual([E.ERROR, E.RUN_END]);
    expect(types).not.toContain(E.TTS_END);
    expect(dev.state).toBe("IDLE");
    const next = await dev.wake(await utterance());
    expect(next.error).toBeNull();
    expect(next.events.map((e) => e.type)).toEqual(FULL_RUN);
  });
});
