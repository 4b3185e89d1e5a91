/**
 * Tools, approvals and announcements on an ESPHome device, through the whole service with a real MCP
 * server over stdio (the toy server), the emulated Voice PE and the fake Realtime server.
 */
import { afterEach, describe, expect, it } from "vitest";
import { VoiceEvent } from "../src/esphome/api/index.js";
import { toyStdio } from "./fixtures/mcp/helpers.js";
import { tone } from "./fake-realtime/server.js";
import { startHarness, utterance, type Harness } from "./esphome-helpers.js";

const E = VoiceEvent;
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The function call output the service sent upstream in the conversation that heard the device. */
function functionOutput(hh: Harness): string | undefined {
  const conn = hh.fake.connections.find((c) =>
    c.received.some((e) => e.type === "input_audio_buffer.append"),
  );
  const output = conn?.received.find(
    (e) => e.type === "conversation.item.create" && e.item.type === "function_call_output",
  ) as { item: { output: string } } | undefined;
  return output?.item.output;
}

async function takenOver(o: Parameters<typeof startHarness>[0]): Promise<Harness> {
  h = await startHarness({ entries: [{ take_over: true }], ...o });
  await h.waitDevice(h.devices[0]!.name, (d) => d.owner === "openvoice");
  if (h.app.config.mcp_servers.length > 0)
    await expect.poll(() => h!.service.tools.status()[0]?.state, { timeout: 15_000 }).toBe("up");
  return h;
}

describe("ESPHome tools, approvals and announcements", () => {
  it("a tool call that takes 6 s: the run waits for it, then the answer plays, with no error", async () => {
    const hh = await takenOver({
      config: { mcp_servers: [toyStdio("toy", { require_approval: "never" })] },
      fake: { replyAudio: tone(400) },
    });
    hh.fake.script({ kind: "function_call", name: "sleep", arguments: '{"ms":6000}' });
    const run = await hh.devices[0]!.wake(await utterance());
    expect(run.error).toBeNull();
    expect(run.playbackError).toBeNull();
    const types = run.events.map((e) => e.type);
    expect(types).not.toContain(E.ERROR);
    expect(types.slice(-4)).toEqual([E.INTENT_END, E.TTS_START, E.TTS_END, E.RUN_END]);
    expect(run.replyBytes.length).toBeGreaterThan(0);
    expect(functionOutput(hh)).toContain("slept 6000 ms");
  });

  it("an approval waits in the UI; approved there, the tool runs and the answer plays", async () => {
    const hh = await takenOver({
      config: { mcp_servers: [toyStdio("toy", { require_approval: "always" })] },
      fake: { replyAudio: tone(400) },
    });
    hh.fake.script({ kind: "function_call", name: "echo", arguments: '{"text":"lights on"}' });
    const running = hh.devices[0]!.wake(await utterance());
    let pending: { id: string; tool: string }[] = [];
    await expect
      .poll(
        async () => {
          const res = await fetch(`${hh.ingress}/api/approvals`);
          pending = ((await res.json()) as { approvals: { id: string; tool: string }[] }).approvals;
          return pending.length;
        },
        { timeout: 10_000 },
      )
      .toBe(1);
    expect(pending[0]!.tool).toBe("echo");
    const answer = await hh.post(`/api/approvals/${pending[0]!.id}`, { approve: true });
    expect(answer.status).toBe(200);
    const run = await running;
    expect(run.error).toBeNull();
    expect(run.events.map((e) => e.type)).toContain(E.TTS_END);
    expect(functionOutput(hh)).toContain("lights on");
  });

  it("timers: the model starts one with the device's tool, the device gets STARTED, then FINISHED", async () => {
    const hh = await takenOver({ fake: { replyAudio: tone(300) } });
    const dev = hh.devices[0]!;
    hh.fake.script({ kind: "function_call", name: "start_timer", arguments: '{"seconds":2,"name":"tea"}' });
    const run = await dev.wake(await utterance());
    expect(run.error).toBeNull();
    expect(dev.timerEvents[0]).toMatchObject({ type: 0, name: "tea", totalSeconds: 2, isActive: true });
    await expect.poll(() => dev.timerEvents.map((e) => e.type), { timeout: 5000 }).toEqual([0, 3]);
    // The timer tools were offered to this conversation, and the call needed no approval.
    const conn = hh.fake.connections.find((c) =>
      c.received.some((e) => e.type === "input_audio_buffer.append"),
    )!;
    const offered = conn.received
      .flatMap((e) => (e.type === "session.update" && "tools" in e.session ? (e.session.tools ?? []) : []))
      .map((t) => ("name" in t ? t.name : ""));
    expect(offered).toContain("start_timer");
    expect(await (await fetch(`${hh.ingress}/api/approvals`)).json()).toMatchObject({ approvals: [] });
  });

  it("timers survive a reconnect of the device: shown again at once (UPDATED), then FINISHED on time", async () => {
    const hh = await takenOver({ fake: { replyAudio: tone(300) } });
    const dev = hh.devices[0]!;
    hh.fake.script({ kind: "function_call", name: "start_timer", arguments: '{"seconds":4,"name":"pasta"}' });
    await dev.wake(await utterance());
    expect(dev.timerEvents.map((e) => e.type)).toEqual([0]);
    const id = dev.timerEvents[0]!.timerId;
    dev.dropConnections();
    await hh.waitDevice(dev.name, (d) => !d.connected);
    await hh.waitDevice(dev.name, (d) => d.connected && d.owner === "openvoice");
    await expect.poll(() => dev.timerEvents.map((e) => e.type), { timeout: 8000 }).toEqual([0, 1, 3]);
    expect(dev.timerEvents[1]).toMatchObject({ timerId: id, name: "pasta", totalSeconds: 4, isActive: true });
    expect(dev.timerEvents[1]!.secondsLeft).toBeLessThanOrEqual(4);
    expect(dev.timerEvents[2]).toMatchObject({ timerId: id, name: "pasta", secondsLeft: 0 });
  });

  it("an announcement is spoken on the device and answered once it played", async () => {
    const speech = tone(700, 330);
    const hh = await takenOver({ fake: { speechAudio: () => speech } });
    const dev = hh.devices[0]!;
    const res = await hh.post(`/api/esphome/${dev.name}/announce`, { text: "Dinner is ready" });
    expect(res).toEqual({ status: 200, json: { ok: true } });
    expect(dev.announcements).toHaveLength(1);
    const a = dev.announcements[0]!;
    expect(a.text).toBe("Dinner is ready");
    expect(a.record.replyBytes.equals(speech)).toBe(true);
    expect(dev.state).toBe("IDLE");

    // The same on the satellite port, for automations: the shared satellite token is required.
    const post = (auth?: string): Promise<Response> =>
      fetch(`${hh.satellite}/api/esphome/${dev.name}/announce`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify({ text: "The washing machine is done." }),
      });
    expect((await post()).status).toBe(401);
    expect((await post("Bearer wrong-token")).status).toBe(401);
    const ok = await post(`Bearer ${hh.service.auth.sharedToken!}`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true });
    expect(dev.announcements.map((x) => x.text)).toEqual(["Dinner is ready", "The washing machine is done."]);
  });
});
