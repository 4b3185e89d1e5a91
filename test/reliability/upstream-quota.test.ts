/**
 * The upstream answers the first three connection attempts with `insufficient_quota` (as the first event
 * of the socket, the way an out-of-quota key is answered), then recovers. The real process
 * (`node dist/main.js`) never exits; `/readyz` and a satellite that asks for a conversation are told why
 * in words; once the upstream accepts sessions, `/readyz` turns 200 and the first conversation completes.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  spawnService,
  waitFor,
  type ServiceChild,
} from "./harness.js";

const REFUSED = 3;
const secrets = makeSecrets("quota");
let fake: FakeRealtimeServer | undefined;
let svc: ServiceChild | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.stop();
  await fake?.close();
});

async function readyz(base: string): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`${base}/readyz`);
  const body = (await res.json()) as { reasons?: string[] };
  return { status: res.status, reasons: body.reasons ?? [] };
}

describe("an out-of-quota upstream that recovers", () => {
  it(`survives ${REFUSED} refused attempts, tells satellites why, then talks`, async () => {
    let refusals = 0;
    fake = await startFakeRealtime({
      apiKey: secrets.apiKey,
      audioSpeed: 20,
      replyTranscript: "Back again.",
      refuseSession: (attempt) => {
        if (attempt > REFUSED) return undefined;
        refusals++;
        return {
          code: "insufficient_quota",
          type: "insufficient_quota",
          message: "You exceeded your current quota, please check your plan and billing details.",
        };
      },
    });
    svc = await spawnService(reliabilityConfig(fake.url, secrets, { poolSize: 1 }));
    const exited = { value: false };
    void svc.exited.then(() => (exited.value = true));

    // The warm pool's first attempt is refused: not ready, and why.
    const first = await waitFor(
      async () => {
        const r = await readyz(svc!.baseUrl);
        return r.status === 503 && r.reasons.some((x) => x.includes("OpenAI quota exceeded")) ? r : undefined;
      },
      15_000,
      "/readyz naming the quota",
    );
    expect(first.reasons).toEqual([expect.stringMatching(/^upstream: OpenAI quota exceeded/)]);

    // A satellite that asks for a conversation meanwhile hears the same reason: its attempt comes
    // right after the pool's first one, well before the pool's first retry (0.5 s later).
    const sat = await TalkingSatellite.connect(svc.satelliteUrl, secrets.satelliteToken, "kitchen");
    sats.push(sat);
    expect(refusals).toBeLessThan(REFUSED);
    sat.ws.send(JSON.stringify({ type: "turn.start" }));
    const told = await sat.waitFor((f) => f.json?.type === "error", 15_000, 0);
    expect(told.json).toMatchObject({ type: "error", code: "upstream_unavailable" });
    expect(told.json?.type === "error" && told.json.message).toBe("OpenAI quota exceeded");
    sat.ws.send(JSON.stringify({ type: "turn.end" }));

    // The pool retries with backoff; once the upstream accepts, the service is ready.
    await waitFor(
      async () => (await readyz(svc!.baseUrl)).status === 200,
      30_000,
      "/readyz 200 after recovery",
    );
    expect(refusals).toBe(REFUSED);

    // The first conversation after recovery completes.
    const turn = await sat.turn({ timeoutMs: 20_000 });
    expect(turn.end).toMatchObject({ type: "response.end", reason: "done" });
    expect(turn.audioBytes).toBeGreaterThan(0);
    expect(turn.transcripts).toContain("Back again.");
    expect(sat.invalid).toEqual([]);

    // The process never exited, and it did not retry in a hot loop or flood the log.
    expect(exited.value).toBe(false);
    expect(svc.child.exitCode).toBeNull();
    const log = svc.log();
    expect(log).not.toMatch(/uncaught exception|unhandled rejection/);
    const warnings = log
      .split("\n")
      .filter((l) => l.includes('"msg":"could not open a realtime session"') && l.includes('"level":40'));
    expect(warnings.length).toBeLessThanOrEqual(2);
    expect(fake.connections.length).toBeLessThanOrEqual(REFUSED + 3);
    expect(scanForSecrets(log, secrets)).toEqual([]);
  });
});
