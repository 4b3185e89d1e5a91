/**
 * The upstream refuses every session for 10 s in the middle of conversations on every route, then
 * recovers. The whole service runs in this process against the fake Realtime server; the routes are
 * driven the way their real clients drive them: a protocol v1 satellite (push-to-talk), an
 * `underzenith` firmware on the firmware port (`ptt_start`, PCM16 24 kHz, `ptt_stop`), and Home
 * Assistant's Wyoming conversation and speech-to-text calls (one of them streaming when the outage
 * begins). At the start of the outage every socket drops and every new one is answered
 * `insufficient_quota` for as long as it lasts.
 *
 * Must hold: each device is told within 1 s, in words; none is left waiting (a turn started during
 * the outage is told within 1 s too); the upstream is not hammered; within 2 s of recovery every route
 * talks again.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../fake-realtime/server.js";
import { DeviceSocket } from "../firmware-helpers.js";
import { chunkPcm, haHandle, haSttConcurrent, haSttLegacy } from "../wyoming-client.js";
import {
  TalkingSatellite,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  startInProcess,
  tone16k,
  waitFor,
  type InProcessService,
} from "./harness.js";

const OUTAGE_MS = 10_000;
const QUOTA = "OpenAI quota exceeded";
const secrets = makeSecrets("outage");
let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;
const sats: TalkingSatellite[] = [];
const devices: DeviceSocket[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  for (const d of devices) d.close();
  await svc?.close();
  await fake?.close();
});

/** The underzenith firmware's turn: ptt_start, 300 ms of speech, ptt_stop; resolves at `response.done`. */
async function pushToTalk(dev: DeviceSocket, timeoutMs: number): Promise<void> {
  const from = dev.frames.length;
  dev.sendText('{"type":"ptt_start"}');
  for (const chunk of chunkPcm(tone(300), 20)) dev.sendAudio(chunk);
  dev.sendText('{"type":"ptt_stop"}');
  await dev.waitText('"type":"response.done"', timeoutMs, from);
}

/** Home Assistant's conversation call on `conversationId`; resolves with the event that answered it. */
async function ask(port: number, conversationId: string) {
  const { answer } = await haHandle(port, { text: "turn on the kitchen light", conversationId });
  return answer;
}

describe("an upstream out of quota for 10 s in the middle of conversations", () => {
  it("tells every route within 1 s, leaves nobody waiting, and talks again within 2 s of recovery", async () => {
    fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 20, replyTranscript: "Done." });
    const base = reliabilityConfig(fake.url, secrets, { poolSize: 1, logLevel: "info" });
    svc = await startInProcess({
      ...base,
      satellites: { ...base.satellites, dialects: ["underzenith"] },
      listen: { ...base.listen, firmware_port: 0 },
    });
    await waitFor(() => svc!.service.engine.status().pool.ready === 1, 10_000, "warm pool");
    const wyoming = svc.service.wyoming!.port!;
    const firmwarePort = svc.service.firmwarePort!;

    // Every route is in a conversation.
    const sat = await TalkingSatellite.connect(svc.satelliteUrl, secrets.satelliteToken, "kitchen");
    sats.push(sat);
    expect((await sat.turn()).end).toMatchObject({ reason: "done" });
    const dev = await DeviceSocket.connect(`ws://127.0.0.1:${firmwarePort}/device/ws`, {
      headers: { Authorization: `Bearer ${secrets.satelliteToken}` },
    });
    devices.push(dev);
    dev.sendText(
      '{"type":"hello","protocol":1,"client_type":"voice_pe","client_id":"Kitchen PE","name":"Voice PE"}',
    );
    await dev.waitText('"type":"session_ready"');
    await pushToTalk(dev, 10_000);
    expect((await ask(wyoming, "living-room"))?.type).toBe("handled");

    // Home Assistant is streaming a speech-to-text turn when the outage begins.
    const appends = (): number =>
      fake!.connections.reduce((n, c) => n + c.all("input_audio_buffer.append").length, 0);
    const appended = appends();
    const sttInFlight = haSttConcurrent(wyoming, { chunks: chunkPcm(tone16k(4000)), intervalMs: 60 });
    await waitFor(() => appends() > appended, 5000, "speech-to-text audio upstream");

    // The outage: every socket drops, every new one is refused until it ends.
    const satFrom = sat.frames.length;
    const devFrom = dev.frames.length;
    const t0 = performance.now();
    fake.fault("quota", { dropOpen: true });
    const sttToldMs = await sttInFlight.then((r) => {
      expect(r.text).toBeNull();
      expect(String(r.error?.data.text)).toContain(QUOTA);
      return performance.now() - t0;
    });

    const satTold = await sat.waitFor((f) => f.json?.type === "error", 3000, satFrom);
    const satToldMs = satTold.at - t0;
    expect(satTold.json).toMatchObject({ code: "upstream_unavailable", message: QUOTA });
    await sat.waitFor((f) => f.json?.type === "state" && f.json.value === "idle", 1000, satFrom);
    const devTold = await dev.waitText('"type":"error"', 3000, devFrom);
    const devToldMs = devTold.at - t0;
    expect(JSON.parse(devTold.text!)).toMatchObject({ error: { message: QUOTA } });
    expect(satToldMs).toBeLessThan(1000);
    expect(devToldMs).toBeLessThan(1000);
    expect(sttToldMs).toBeLessThan(1000);

    // Turns started during the outage are told within 1 s on every route.
    await sleep(1000);
    const during: Record<string, number> = {};
    const satTurn = sat.frames.length;
    let t = performance.now();
    sat.ws.send(JSON.stringify({ type: "turn.start" }));
    await sat.waitFor((f) => f.json?.type === "error", 3000, satTurn);
    during.v1 = performance.now() - t;
    sat.ws.send(JSON.stringify({ type: "turn.end" }));
    const devTurn = dev.frames.length;
    t = performance.now();
    dev.sendText('{"type":"ptt_start"}');
    await dev.waitText('"type":"error"', 3000, devTurn);
    during.underzenith = performance.now() - t;
    dev.sendText('{"type":"ptt_stop"}');
    t = performance.now();
    const handled = await ask(wyoming, "living-room");
    during.wyomingHandle = performance.now() - t;
    expect(handled?.type).toBe("error");
    expect(String(handled?.data.text)).toContain(QUOTA);
    t = performance.now();
    const stt = await haSttLegacy(wyoming, { chunks: chunkPcm(tone16k(300)) });
    during.wyomingStt = performance.now() - t;
    expect(stt.text).toBeNull();
    expect(String(stt.error?.data.text)).toContain(QUOTA);
    for (const ms of Object.values(during)) expect(ms).toBeLessThan(1000);

    // Refused for as long as it lasts, and not hammered meanwhile.
    await sleep(Math.max(0, t0 + OUTAGE_MS - performance.now()));
    const attempts = fake.faultAttempts;
    expect(attempts).toBeLessThanOrEqual(15);

    // Recovery: every route talks again within 2 s.
    fake.fault(null);
    const t1 = performance.now();
    const after: Record<string, number> = {};
    await Promise.all([
      sat.turn({ timeoutMs: 2000 }).then((r) => {
        expect(r.end).toMatchObject({ reason: "done" });
        expect(r.audioBytes).toBeGreaterThan(0);
        after.v1 = performance.now() - t1;
      }),
      pushToTalk(dev, 2000).then(() => (after.underzenith = performance.now() - t1)),
      ask(wyoming, "living-room").then((a) => {
        expect(a?.type).toBe("handled");
        after.wyoming = performance.now() - t1;
      }),
    ]);
    for (const ms of Object.values(after)) expect(ms).toBeLessThan(2000);

    // Nobody was dropped or left in an invalid state; the log holds no secret.
    expect(sat.closed).toBeNull();
    expect(dev.closed).toBeNull();
    expect(sat.invalid).toEqual([]);
    expect(scanForSecrets(svc.lines.join(""), secrets)).toEqual([]);
    console.log(
      `outage: told v1 ${satToldMs.toFixed(0)} ms, underzenith ${devToldMs.toFixed(0)} ms, ` +
        `Wyoming speech-to-text ${sttToldMs.toFixed(0)} ms; ` +
        `during ${JSON.stringify(mapMs(during))}; ${attempts} refused attempts in ${OUTAGE_MS / 1000} s; ` +
        `after recovery ${JSON.stringify(mapMs(after))}`,
    );
  });
});

function mapMs(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]));
}
