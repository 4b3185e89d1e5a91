/**
 * The Realtime upstream dies 20 times in the middle of a conversation: each time the conversation
 * recovers (reply audio and transcript after the kill), and afterwards no upstream socket, satellite
 * or timer is left behind. The whole service runs in this process (createApp + wireService) against
 * the fake Realtime server; every log line is kept and scanned for secrets at the end.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  activeResources,
  makeSecrets,
  metricTotal,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  startInProcess,
  tone16k,
  waitFor,
  type InProcessService,
} from "./harness.js";

const KILLS = 20;
const POOL = 1;
const secrets = makeSecrets("upkill");
let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.close();
  await fake?.close();
});

const metric = (name: string): Promise<number> => metricTotal(svc!, name);

describe("upstream killed during conversations", () => {
  it(`recovers ${KILLS} times out of ${KILLS}, then leaks no socket or timer`, async () => {
    fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 20, replyTranscript: "Done." });
    svc = await startInProcess(reliabilityConfig(fake.url, secrets, { poolSize: POOL }), {
      realtime: { limits: { reconnectDelaysMs: [0, 100, 200, 400, 800] } },
    });
    await waitFor(() => svc!.service.engine.status().pool.ready === POOL, 10_000, "warm pool");
    await sleep(300);
    const before = activeResources();

    const sat = await TalkingSatellite.connect(svc.satelliteUrl, secrets.satelliteToken, "kitchen");
    sats.push(sat);
    const first = await sat.turn();
    expect(first.end).toMatchObject({ reason: "done" });
    expect(first.audioBytes).toBeGreaterThan(0);

    let recoveries = 0;
    for (let i = 0; i < KILLS; i++) {
      // A long reply is playing when the upstream socket dies.
      fake.script({ kind: "speak", audio: tone(6000), transcript: `long reply ${i}` });
      const from = sat.frames.length;
      sat.ws.send(JSON.stringify({ type: "turn.start" }));
      sat.ws.send(tone16k(200), { binary: true });
      sat.ws.send(JSON.stringify({ type: "turn.end" }));
      await sat.waitFor((f) => f.binary !== undefined, 10_000, from);
      const serving = await waitFor(() => fake!.open.find((c) => c.responseActive), 5000, "active response");
      serving.drop();
      // The interrupted reply ends; the conversation carries on over a new upstream session.
      await sat.waitFor((f) => f.json?.type === "response.end", 10_000, from);
      fake.script({ kind: "speak", transcript: `recovered ${i}` });
      const after = await sat.turn({ timeoutMs: 20_000 });
      expect(after.end).toMatchObject({ reason: "done" });
      expect(after.audioBytes).toBeGreaterThan(0);
      expect(after.transcripts).toContain(`recovered ${i}`);
      recoveries++;
    }
    expect(recoveries).toBe(KILLS);
    expect(await metric("openvoice_realtime_reconnects_total")).toBe(KILLS);
    expect(sat.closed).toBeNull();
    expect(sat.invalid).toEqual([]);

    // The satellite leaves: its conversation ends and only the warm pool stays connected.
    sat.ws.close(1000, "bye");
    await waitFor(() => svc!.service.satellites.size === 0, 5000, "satellite gone");
    await waitFor(() => svc!.service.engine.status().conversations === 0, 5000, "conversation ended");
    await waitFor(() => fake!.open.length === POOL, 10_000, `only ${POOL} upstream socket(s) open`);
    await waitFor(() => svc!.service.engine.status().pool.ready === POOL, 10_000, "pool refilled");
    await sleep(500);
    const after = activeResources();
    // Sockets: ours (pool upstream + listeners) and the fake's side; both back to where they were.
    await waitFor(
      () => (activeResources().TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0),
      5000,
      `TCP sockets back to ${before.TCPSocketWrap} (now ${JSON.stringify(activeResources())})`,
    );
    // Timers: 20 recoveries must not leave 20 of anything behind (a little slack for timers in flight).
    expect(after.Timeout ?? 0, JSON.stringify({ before, after })).toBeLessThanOrEqual(
      (before.Timeout ?? 0) + 2,
    );
    expect(after.Immediate ?? 0).toBeLessThanOrEqual((before.Immediate ?? 0) + 1);
  });

  it("the logs of this run contain no secret", () => {
    const text = svc!.lines.join("");
    expect(text.length).toBeGreaterThan(1000);
    expect(text).toContain("conversation carried over");
    expect(scanForSecrets(text, secrets)).toEqual([]);
  });
});
