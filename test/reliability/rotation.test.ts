/**
 * The 60-minute session limit, compressed: sessions last 4 s upstream (the fake expires them with
 * `session_expired` + close 1001 at that age), and the engine rotates 2.5 s before the limit. A
 * satellite talks continuously with replies of 1.2 s real-time audio. Every rotation happens between
 * turns (no reply is cut, no reconnect is needed) and each new session carries the earlier transcript.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  makeSecrets,
  metricTotal,
  reliabilityConfig,
  scanForSecrets,
  startInProcess,
  waitFor,
  type InProcessService,
} from "./harness.js";

const SESSION_MAX_MS = 4000;
const ROTATE_BEFORE_MS = 2500;
const TURNS = 14;
const secrets = makeSecrets("rotate");
let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.close();
  await fake?.close();
});

const metric = (name: string): Promise<number> => metricTotal(svc!, name);

const instructionsOf = (s: unknown): string =>
  typeof s === "object" && s !== null && "instructions" in s && typeof s.instructions === "string"
    ? s.instructions
    : "";

describe("the session time limit, time-compressed", () => {
  it("rotates between turns before the limit and keeps the conversation's context", async () => {
    fake = await startFakeRealtime({
      apiKey: secrets.apiKey,
      audioSpeed: 1,
      maxSessionMs: SESSION_MAX_MS,
      userTranscript: "what is the weather",
    });
    svc = await startInProcess(reliabilityConfig(fake.url, secrets, { poolSize: 0 }), {
      realtime: {
        limits: { sessionMaxMs: SESSION_MAX_MS, rotateBeforeMs: ROTATE_BEFORE_MS, idleRecycleMs: 60_000 },
      },
    });
    const sat = await TalkingSatellite.connect(svc.satelliteUrl, secrets.satelliteToken, "kitchen");
    sats.push(sat);

    const t0 = Date.now();
    for (let i = 0; i < TURNS; i++) {
      fake.script({ kind: "speak", audio: tone(1200), transcript: `answer number ${i}` });
      const r = await sat.turn({ timeoutMs: 15_000 });
      expect(r.end, `turn ${i}`).toMatchObject({ reason: "done" });
      expect(r.transcripts).toContain(`answer number ${i}`);
      expect(r.audioBytes).toBeGreaterThan(0);
    }
    const elapsed = Date.now() - t0;
    // Without a pool, start-up opens one session to check the key and closes it ("probe").
    const sessions = fake.connections.filter((c) => c.closeInfo?.reason !== "probe");
    // Several limits' worth of talking went by, and no session reached its limit.
    expect(elapsed).toBeGreaterThan(2 * SESSION_MAX_MS);
    const rotations = await metric("openvoice_realtime_session_rotations_total");
    expect(rotations).toBeGreaterThanOrEqual(2);
    expect(sessions.length).toBe(rotations + 1);
    expect(await metric("openvoice_realtime_reconnects_total")).toBe(0);
    // The last swap may have happened just now: let its close handshake finish.
    await waitFor(() => sessions.slice(0, -1).every((c) => c.closed), 5000, "rotated sessions closed");
    for (const c of sessions.slice(0, -1)) {
      expect(c.closeInfo?.code, "closed by us, not expired").toBe(1000);
      expect(c.all("response.cancel")).toEqual([]);
    }
    // Context: each new session's instructions carry the turns heard before it was created.
    for (const c of sessions.slice(1)) {
      const update = c.all("session.update")[0];
      const text = instructionsOf(update?.session);
      expect(text).toContain("User: what is the weather");
      expect(text).toMatch(/Assistant: answer number \d+/);
    }
    const last = instructionsOf(sessions.at(-1)!.all("session.update")[0]?.session);
    const heard = Number(/answer number (\d+)(?![\s\S]*answer number)/.exec(last)?.[1] ?? -1);
    expect(heard).toBeGreaterThanOrEqual(TURNS - 6);
    // Every turn was committed once, on exactly one session.
    expect(sessions.reduce((n, c) => n + c.all("input_audio_buffer.commit").length, 0)).toBe(TURNS);
  });

  it("the logs of this run contain no secret", () => {
    const text = svc!.lines.join("");
    expect(text).toContain("upstream session rotated");
    expect(scanForSecrets(text, secrets)).toEqual([]);
  });
});
