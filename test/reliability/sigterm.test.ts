/**
 * SIGTERM under load: the real process (`node dist/main.js`) with a stdio MCP child (server-everything),
 * a warm upstream pool and 10 satellites streaming microphone audio and getting replies, one of them in
 * the middle of a long tool call. It exits 0 within 5 s, and no process it started is left (`/proc`).
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, tone, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  alive,
  descendants,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  spawnService,
  tone16k,
  waitFor,
  type ServiceChild,
} from "./harness.js";

const SATELLITES = 10;
const secrets = makeSecrets("sigterm");
let fake: FakeRealtimeServer | undefined;
let svc: ServiceChild | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.stop(2000);
  await fake?.close();
});

describe("SIGTERM under load", () => {
  it(`exits 0 within 5 s with ${SATELLITES} satellites streaming and a stdio MCP child; no child left`, async () => {
    fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 1, replyAudio: tone(20_000) });
    svc = await spawnService(
      reliabilityConfig(fake.url, secrets, { stdio: true, poolSize: 2, logLevel: "info" }),
    );
    await waitFor(() => descendants(svc!.pid).length > 0, 20_000, "the stdio MCP child");
    await waitFor(
      () => /MCP server ready|tools listed|"server":"everything"/.test(svc!.log()),
      20_000,
      "everything up",
    );

    // One satellite's conversation is inside a long tool call…
    fake.script({
      kind: "function_call",
      name: "trigger-long-running-operation",
      arguments: '{"duration":60,"steps":1}',
    });
    const caller = await TalkingSatellite.connect(svc.satelliteUrl, secrets.deviceToken, "hall");
    sats.push(caller);
    caller.ws.send(JSON.stringify({ type: "turn.start" }));
    caller.ws.send(tone16k(100), { binary: true });
    caller.ws.send(JSON.stringify({ type: "turn.end" }));
    await caller.waitFor((f) => f.json?.type === "tool" && f.json.status === "started", 15_000, 0);

    // …the others are streaming audio and listening to long replies.
    for (let i = 1; i < SATELLITES; i++) {
      const s = await TalkingSatellite.connect(svc.satelliteUrl, secrets.satelliteToken, `room-${i}`);
      sats.push(s);
      s.ws.send(JSON.stringify({ type: "turn.start" }));
      s.ws.send(tone16k(100), { binary: true });
      s.ws.send(JSON.stringify({ type: "turn.end" }));
    }
    const streaming = setInterval(() => {
      for (const s of sats) if (s.ws.readyState === s.ws.OPEN) s.ws.send(tone16k(20), { binary: true });
    }, 20);
    try {
      for (const s of sats.slice(1)) await s.waitFor((f) => f.binary !== undefined, 15_000, 0);
      await sleep(500);
      const tree = descendants(svc.pid);
      expect(tree.length).toBeGreaterThanOrEqual(1);
      expect(fake.open.length).toBeGreaterThanOrEqual(SATELLITES);

      const t0 = performance.now();
      svc.child.kill("SIGTERM");
      const exit = await Promise.race([
        svc.exited,
        sleep(8000).then(() => ({ code: -1, signal: null, atMs: performance.now() })),
      ]);
      const tookMs = exit.atMs - t0;
      expect(exit.code, svc.log().slice(-2000)).toBe(0);
      expect(tookMs).toBeLessThan(5000);
      // Nothing the service started outlives it.
      await waitFor(() => tree.every((p) => !alive(p)), 2000, `children ${tree.join(",")} gone`);
      // Satellites were told and closed; the upstream sockets are gone.
      for (const s of sats) {
        await waitFor(() => s.closed, 3000, "satellite closed");
        expect(s.closed?.code).toBe(1001);
      }
      await waitFor(() => fake!.open.length === 0, 3000, "no upstream socket open");
    } finally {
      clearInterval(streaming);
    }
  });

  it("the logs of this run contain no secret", () => {
    const text = svc!.log();
    expect(text).toContain('"msg":"stopped"');
    expect(scanForSecrets(text, secrets)).toEqual([]);
  });
});
