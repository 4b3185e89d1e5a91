/**
 * The per-test upstream of the realtime tests: fake servers and engines made through it are closed
 * after each test (engines first, then the servers they talk to). Call at module or `describe` level.
 */
import { afterEach } from "vitest";
import { RealtimeEngine, type RealtimeEngineOptions } from "../../src/realtime/engine.js";
import { startFakeRealtime, type FakeRealtimeOptions, type FakeRealtimeServer } from "./server.js";

export interface FakeUpstream {
  /** Starts a fake Realtime server, closed after the test. */
  start(opts?: FakeRealtimeOptions): Promise<FakeRealtimeServer>;
  /** An engine closed after the test, before the fake servers. */
  engine(opts: RealtimeEngineOptions): RealtimeEngine;
}

export function useFakeUpstream(): FakeUpstream {
  const servers: FakeRealtimeServer[] = [];
  const engines: RealtimeEngine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
    for (const f of servers.splice(0)) await f.close();
  });
  return {
    async start(opts) {
      const fake = await startFakeRealtime(opts);
      servers.push(fake);
      return fake;
    },
    engine(opts) {
      const engine = new RealtimeEngine(opts);
      engines.push(engine);
      return engine;
    },
  };
}
