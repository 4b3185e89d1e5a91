/**
 * A stdio MCP server (the reference server-everything) is killed with SIGKILL 20 times while calls are
 * in flight, one started directly on the client MCP manager and one started by the model in a
 * satellite conversation. Each time: the in-flight calls are answered with error outputs (the model
 * hears the error), the server is restarted, and a call after the restart succeeds. The service runs
 * in this process; its logs are scanned for secrets at the end.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startFakeRealtime, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  TalkingSatellite,
  alive,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  startInProcess,
  tone16k,
  waitFor,
  type InProcessService,
} from "./harness.js";

const KILLS = 20;
const LONG = "trigger-long-running-operation";
const secrets = makeSecrets("mcpkill");
let fake: FakeRealtimeServer | undefined;
let svc: InProcessService | undefined;
const sats: TalkingSatellite[] = [];

afterAll(async () => {
  for (const s of sats) s.close();
  await svc?.close();
  await fake?.close();
});

describe("stdio MCP server killed under calls", () => {
  it(`is restarted ${KILLS} times; in-flight calls get error outputs; calls after each restart work`, async () => {
    fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 50 });
    svc = await startInProcess(reliabilityConfig(fake.url, secrets, { stdio: true, poolSize: 1 }));
    const tools = svc.service.tools;
    const everything = (): { state: string; restarts: number } =>
      tools.status().find((s) => s.name === "everything") ?? { state: "missing", restarts: -1 };
    await waitFor(() => everything().state === "up", 30_000, "server-everything up");
    const sat = await TalkingSatellite.connect(svc.satelliteUrl, secrets.deviceToken, "hall");
    sats.push(sat);

    const killed: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      const pid = await waitFor(() => everything().state === "up" && tools.childPids()[0], 30_000, "child");
      const restartsBefore = everything().restarts;

      // The model asks for a long operation through the conversation…
      fake.script({ kind: "function_call", name: LONG, arguments: '{"duration":60,"steps":1}' });
      const from = sat.frames.length;
      sat.ws.send(JSON.stringify({ type: "turn.start" }));
      sat.ws.send(tone16k(100), { binary: true });
      sat.ws.send(JSON.stringify({ type: "turn.end" }));
      await sat.waitFor(
        (f) => f.json?.type === "tool" && f.json.status === "started" && f.json.name === LONG,
        15_000,
        from,
      );
      // …and a direct caller has one in flight too.
      const direct = tools.callTool(LONG, '{"duration":60,"steps":1}');
      await sleep(300);
      process.kill(pid, "SIGKILL");
      killed.push(pid);

      const outcome = await direct;
      expect(outcome.ok).toBe(false);
      expect(["crash", "error"]).toContain(outcome.outcome);
      expect(outcome.output.length).toBeGreaterThan(0);
      // The model got an error output for its call and spoke about it.
      await sat.waitFor((f) => f.json?.type === "tool" && f.json.status === "failed", 15_000, from);
      await sat.waitFor((f) => f.json?.type === "response.end", 15_000, from);
      const conn = fake.open.find((c) => c.all("conversation.item.create").length > 0);
      const outputs = (conn?.all("conversation.item.create") ?? []).flatMap((e) =>
        e.item.type === "function_call_output" ? [e.item.output] : [],
      );
      expect(outputs.length).toBeGreaterThanOrEqual(i + 1);
      expect(outputs.at(-1)).toMatch(/stopped|crash|closed|error|unavailable/i);

      // Restarted, and usable again.
      await waitFor(
        () => everything().state === "up" && everything().restarts > restartsBefore,
        30_000,
        `restart #${i + 1}`,
      );
      expect(tools.childPids()[0]).not.toBe(pid);
      const echo = await tools.callTool("echo", JSON.stringify({ message: `back ${i}` }));
      expect(echo).toMatchObject({ ok: true, output: `Echo: back ${i}` });
    }
    expect(everything().restarts).toBeGreaterThanOrEqual(KILLS);
    expect(killed.filter((p) => alive(p))).toEqual([]);
    expect(sat.closed).toBeNull();
    expect(sat.invalid).toEqual([]);

    // Shutdown takes the last child with it.
    const last = tools.childPids();
    await svc.close();
    await waitFor(() => last.every((p) => !alive(p)), 5000, "no child left");
  });

  it("the logs of this run contain no secret", () => {
    const text = svc!.lines.join("");
    expect(text).toContain("MCP server connection lost");
    expect(scanForSecrets(text, secrets)).toEqual([]);
  });
});
