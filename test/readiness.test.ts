/**
 * `/readyz` tells the truth: the whole service in this process (createApp + wireService) is ready only
 * once the upstream accepted a session with the configured key; otherwise 503 with each failing part in
 * words. `/healthz` stays alive throughout (the Docker HEALTHCHECK uses it, so a bad key is no restart loop).
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import type { ConfigInput } from "../src/config/model.js";
import { FAILED_RESPONSE_MESSAGES } from "../src/realtime/upstream-error.js";
import { UPSTREAM_MESSAGES } from "../src/realtime/upstream-error.js";
import { startFakeRealtime, type FakeRealtimeServer } from "./fake-realtime/server.js";
import { startInProcess, waitFor, type InProcessService } from "./reliability/harness.js";

let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;

afterEach(async () => {
  await svc?.close();
  svc = undefined;
  await fake?.close();
  fake = undefined;
});

const config = (baseUrl: string, apiKey = "sk-test", poolSize = 0): ConfigInput => ({
  openai: { api_key: apiKey, base_url: baseUrl, pool_size: poolSize },
  satellites: { token: "readiness-test-token" },
  listen: { host: "127.0.0.1", satellite_port: 0, ingress_port: 0 },
  log_level: "debug",
});

interface ReadyBody {
  status?: string;
  error?: { code: string };
  reasons?: string[];
}

async function readyz(s: InProcessService): Promise<{ status: number; body: ReadyBody }> {
  const res = await fetch(`${s.baseUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as ReadyBody };
}

/** Polls /readyz until its reasons mention `words` (the first attempt may still be under way). */
const notReadyBecause = (s: InProcessService, words: string) =>
  waitFor(
    async () => {
      const r = await readyz(s);
      return r.status === 503 && r.body.reasons?.some((x) => x.includes(words)) ? r : undefined;
    },
    10_000,
    `/readyz naming "${words}"`,
  );

describe("/readyz", () => {
  it("503 naming an unreachable upstream; /healthz stays 200", async () => {
    svc = await startInProcess(config("ws://127.0.0.1:9/v1/realtime"));
    const r = await notReadyBecause(svc, "Cannot reach OpenAI");
    expect(r.body.error?.code).toBe("not_ready");
    expect(r.body.reasons).toEqual([
      expect.stringMatching(/^upstream: Cannot reach OpenAI: .+\(check the network/),
    ]);
    expect((await fetch(`${svc.baseUrl}/healthz`)).status).toBe(200);
  });

  it("503 naming a rejected key (HTTP 401)", async () => {
    fake = await startFakeRealtime({ apiKey: "sk-the-right-one" });
    svc = await startInProcess(config(fake.url, "sk-a-wrong-one"));
    const r = await notReadyBecause(svc, "OpenAI rejected the API key");
    expect(r.body.reasons).toEqual(["upstream: OpenAI rejected the API key (check openai.api_key)"]);
    expect(fake.rejected.map((x) => x.status)).toContain(401);
    // The ingress status says the same in words.
    expect(svc.service.engine.status().upstream).toMatchObject({
      state: "unreachable",
      lastError: "OpenAI rejected the API key",
      hint: "check openai.api_key",
    });
  });

  it("503 naming an exhausted quota on the socket's first event", async () => {
    fake = await startFakeRealtime({
      refuseSession: () => ({ code: "insufficient_quota", type: "insufficient_quota" }),
    });
    svc = await startInProcess(config(fake.url, "sk-test", 1));
    const r = await notReadyBecause(svc, "OpenAI quota exceeded");
    expect(r.body.reasons).toEqual([
      expect.stringMatching(/^upstream: OpenAI quota exceeded \(check the plan/),
    ]);
  });

  it("200 once a session opens (without a pool, one session is opened and closed to check)", async () => {
    fake = await startFakeRealtime();
    svc = await startInProcess(config(fake.url));
    await waitFor(async () => (await readyz(svc!)).status === 200, 10_000, "/readyz 200");
    expect((await readyz(svc)).body).toEqual({ status: "ready" });
    expect(fake.connections).toHaveLength(1);
    await waitFor(() => fake!.connections[0]!.closed, 5000, "probe session closed");
    expect(fake.connections[0]!.closeInfo).toEqual({ code: 1000, reason: "probe" });
  });
});

describe("DOCS.md", () => {
  const docs = readFileSync(new URL("../DOCS.md", import.meta.url), "utf8");
  it("has a troubleshooting entry for every upstream message and every failed-response message", () => {
    for (const words of Object.values(UPSTREAM_MESSAGES)) expect(docs, words).toContain("`" + words);
    for (const words of Object.values(FAILED_RESPONSE_MESSAGES))
      expect(docs.replace(/\s+/g, " "), words).toContain(words.slice(0, 24));
  });
});
