/**
 * 10 000 malformed satellite inputs from a seeded generator against the real process
 * (`node dist/main.js`): random bytes, truncated JSON, wrong types, bad tokens, oversized frames,
 * floods, binary before hello, odd byte counts, invalid UTF-8 — over hundreds of connections, 16 at
 * a time. The process stays up, every bad connection gets a typed `error` (a code of the registry in
 * src/errors.ts) or, for what the WebSocket layer refuses itself, a documented close code, and a
 * well-behaved satellite talking at the same time completes its conversation.
 */
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { SATELLITE_ERRORS } from "../../src/errors.js";
import { startFakeRealtime, type FakeRealtimeServer } from "../fake-realtime/server.js";
import {
  SeededRandom,
  TalkingSatellite,
  makeSecrets,
  reliabilityConfig,
  scanForSecrets,
  sleep,
  spawnService,
  type ServiceChild,
} from "./harness.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_123);
const TARGET_INPUTS = 10_000;
const PARALLEL = 16;
const MAX_FRAME = 64 * 1024;
const secrets = makeSecrets("fuzz");
let fake: FakeRealtimeServer | undefined;
let svc: ServiceChild | undefined;

afterAll(async () => {
  await svc?.stop();
  await fake?.close();
});

type Kind =
  | "binary_before_hello"
  | "garbage_text"
  | "truncated_hello"
  | "wrong_types"
  | "bad_token"
  | "oversized"
  | "huge"
  | "flood"
  | "junk_after_hello"
  | "odd_audio"
  | "invalid_utf8";

interface Plan {
  kind: Kind;
  /** Frames to send (text as string, binary as Buffer). */
  frames: (string | Buffer)[];
  /** Typed error codes acceptable for this kind. */
  codes: readonly string[];
  /** Close codes the WebSocket layer itself may use for this kind (no typed error then). */
  bareCloses: readonly number[];
}

let helloCount = 0;
/** A valid hello (each with its own client id: a second connection with the same id replaces the first). */
const hello = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: "hello",
  protocol: 1,
  client_id: `fuzz-${++helloCount}`,
  token: secrets.satelliteToken,
  audio: { in: { rate: 16000 }, out: { rate: 16000 } },
  turn: "client",
  ...over,
});

const WRONG_VALUES: readonly unknown[] = [
  null,
  0,
  -1,
  1.5,
  "",
  "x",
  true,
  [],
  {},
  [1, 2],
  Number.MAX_VALUE,
  "1",
];

function plan(r: SeededRandom): Plan {
  const kind = r.pick<Kind>([
    "binary_before_hello",
    "garbage_text",
    "truncated_hello",
    "wrong_types",
    "wrong_types",
    "bad_token",
    "oversized",
    "huge",
    "flood",
    "junk_after_hello",
    "junk_after_hello",
    "junk_after_hello",
    "odd_audio",
    "invalid_utf8",
  ]);
  const ok = JSON.stringify(hello());
  switch (kind) {
    case "binary_before_hello":
      return { kind, frames: [r.bytes(r.int(1, 4000))], codes: ["bad_hello"], bareCloses: [] };
    case "garbage_text": {
      const s = Array.from({ length: r.int(1, 300) }, () => String.fromCharCode(r.int(32, 126))).join("");
      return { kind, frames: [s], codes: ["bad_hello"], bareCloses: [] };
    }
    case "truncated_hello":
      return { kind, frames: [ok.slice(0, r.int(0, ok.length - 1))], codes: ["bad_hello"], bareCloses: [] };
    case "wrong_types": {
      const key = r.pick(["type", "protocol", "client_id", "audio", "turn", "token"]);
      // Strings are valid client ids: only non-strings are wrong there.
      const values = key === "client_id" ? WRONG_VALUES.filter((v) => typeof v !== "string") : WRONG_VALUES;
      const msg = hello({ [key]: r.pick(values) });
      if (r.next() < 0.3) msg.audio = { in: { rate: r.pick([8000, 44100, "16000"]) }, out: { rate: 16000 } };
      return {
        kind,
        frames: [JSON.stringify(msg)],
        codes: ["bad_hello", "unsupported_protocol", "unauthorized"],
        bareCloses: [],
      };
    }
    case "bad_token":
      return {
        kind,
        frames: [JSON.stringify(hello({ token: r.bytes(12).toString("hex") }))],
        codes: ["unauthorized"],
        bareCloses: [],
      };
    case "oversized": {
      const frame = r.next() < 0.5 ? r.bytes(r.int(MAX_FRAME + 1, MAX_FRAME * 3)) : "x".repeat(MAX_FRAME + 1);
      return {
        kind,
        frames: r.next() < 0.5 ? [frame] : [ok, frame],
        codes: ["frame_too_large"],
        bareCloses: [],
      };
    }
    case "huge":
      return {
        kind,
        frames: [ok, Buffer.alloc(MAX_FRAME * 4 + r.int(1, 1000))],
        codes: [],
        bareCloses: [1009],
      };
    case "flood":
      return {
        kind,
        frames: [ok, ...Array.from({ length: 450 }, () => Buffer.alloc(2))],
        codes: ["rate_limited"],
        bareCloses: [],
      };
    case "junk_after_hello": {
      const junk = Array.from({ length: r.int(1, 12) }, () => {
        const v = r.int(0, 5);
        if (v === 0)
          return JSON.stringify({ type: "approval.reply", id: r.pick(WRONG_VALUES), approve: "yes" });
        if (v === 1) return JSON.stringify({ type: r.bytes(4).toString("hex") });
        if (v === 2) return JSON.stringify({ type: "playback.done", played_ms: r.pick(WRONG_VALUES) });
        if (v === 3) return '{"type":"turn.st'.slice(0, r.int(1, 15));
        if (v === 4) return JSON.stringify(r.pick(WRONG_VALUES));
        return JSON.stringify({ type: "hello", protocol: 1 });
      });
      return { kind, frames: [ok, ...junk], codes: ["bad_message"], bareCloses: [] };
    }
    case "odd_audio": {
      const odd = Array.from({ length: r.int(1, 10) }, () => r.bytes(2 * r.int(0, 500) + 1));
      return { kind, frames: [ok, ...odd], codes: ["bad_audio"], bareCloses: [] };
    }
    case "invalid_utf8":
      return {
        kind,
        frames: [Buffer.from([0x7b, 0xff, 0xfe, 0xc3, 0x28])],
        codes: ["bad_hello", "bad_message"],
        bareCloses: [1007],
      };
  }
}

interface Outcome {
  kind: Kind;
  errors: string[];
  close: number | null;
  sent: number;
}

/** Sends one plan's frames and waits (bounded) for a typed error or a close. */
function runPlan(url: string, p: Plan, invalidUtf8Text: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 20 });
    const out: Outcome = { kind: p.kind, errors: [], close: null, sent: 0 };
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(settle);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
      resolve(out);
    };
    const timer = setTimeout(finish, 8000);
    let settle: NodeJS.Timeout | undefined;
    ws.on("error", () => undefined);
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      try {
        const m = JSON.parse((data as Buffer).toString("utf8")) as { type?: unknown; code?: unknown };
        if (m.type === "error" && typeof m.code === "string") {
          out.errors.push(m.code);
          // Non-fatal errors: give the rest a moment to arrive, then leave.
          clearTimeout(settle);
          settle = setTimeout(finish, 300);
        }
      } catch {
        out.errors.push("<unparseable>");
      }
    });
    ws.on("close", (code) => {
      out.close = code;
      finish();
    });
    ws.on("open", () => {
      for (const f of p.frames) {
        if (ws.readyState !== WebSocket.OPEN) break;
        if (typeof f === "string") ws.send(f);
        else if (p.kind === "invalid_utf8" && invalidUtf8Text) ws.send(f, { binary: false });
        else if (p.kind === "invalid_utf8" || p.kind === "garbage_text") ws.send(f, { binary: false });
        else ws.send(f, { binary: true });
        out.sent++;
      }
      if (p.kind !== "huge" && p.frames.length === 0) finish();
    });
  });
}

describe("malformed satellite input", () => {
  it(`${TARGET_INPUTS} seeded malformed inputs: typed errors, process alive, a good satellite unaffected`, async () => {
    fake = await startFakeRealtime({ apiKey: secrets.apiKey, audioSpeed: 20 });
    svc = await spawnService(reliabilityConfig(fake.url, secrets, { poolSize: 1, logLevel: "info" }));
    const r = new SeededRandom(SEED);

    // The good satellite talks the whole time the fuzzing runs.
    const good = await TalkingSatellite.connect(svc.satelliteUrl, secrets.deviceToken, "hall");
    let fuzzing = true;
    const goodTurns: string[] = [];
    const talking = (async () => {
      while (fuzzing || goodTurns.length < 3) {
        const t = await good.turn({ frameGapMs: 20, timeoutMs: 20_000 });
        goodTurns.push(t.end.type === "response.end" ? t.end.reason : "?");
        if (t.audioBytes === 0) goodTurns.push("no-audio");
      }
    })().then(
      () => null,
      (err: unknown) => err,
    );

    const outcomes: Outcome[] = [];
    let planned = 0;
    const queue: Plan[] = [];
    while (planned < TARGET_INPUTS) {
      const p = plan(r);
      queue.push(p);
      planned += p.frames.length;
    }
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < queue.length) {
          const p = queue[next++]!;
          outcomes.push(await runPlan(svc!.satelliteUrl, p, true));
        }
      }),
    );
    fuzzing = false;
    expect(await talking).toBeNull();

    const sent = outcomes.reduce((n, o) => n + o.sent, 0);
    expect(sent).toBeGreaterThanOrEqual(TARGET_INPUTS * 0.95);
    expect(outcomes.length).toBeGreaterThan(150);
    const known = new Set(Object.keys(SATELLITE_ERRORS));
    const untyped = outcomes.filter((o) => {
      const p = queue.find((q) => q.kind === o.kind)!;
      const typed = o.errors.length > 0 && o.errors.every((c) => known.has(c));
      const expected = o.errors.some((c) => p.codes.includes(c));
      return !((typed && expected) || (o.errors.length === 0 && p.bareCloses.includes(o.close ?? -1)));
    });
    expect(
      untyped.slice(0, 5).map((o) => JSON.stringify(o)),
      `${untyped.length} of ${outcomes.length} connections without the expected typed error`,
    ).toEqual([]);
    // Fatal kinds were closed with the registry's close code.
    for (const o of outcomes)
      if (o.errors.length > 0 && SATELLITE_ERRORS[o.errors[0] as keyof typeof SATELLITE_ERRORS]?.fatal)
        expect(o.close, JSON.stringify(o)).toBe(
          SATELLITE_ERRORS[o.errors[0] as keyof typeof SATELLITE_ERRORS].status,
        );
    expect(outcomes.some((o) => o.errors.includes("internal"))).toBe(false);
    const kinds = new Set(outcomes.map((o) => o.kind));
    expect(kinds.size).toBe(11);

    // The process is alive and serving; the good satellite had whole, undisturbed turns.
    expect(svc.child.exitCode).toBeNull();
    expect((await fetch(`${svc.baseUrl}/healthz`)).status).toBe(200);
    expect(goodTurns.length).toBeGreaterThanOrEqual(3);
    expect(
      goodTurns.every((t) => t === "done"),
      goodTurns.join(","),
    ).toBe(true);
    expect(good.closed).toBeNull();
    expect(good.invalid).toEqual([]);
    good.close();
    await sleep(100);
    expect(svc.log()).not.toMatch(/"level":(50|60)/);
  });

  it("the logs of this run contain no secret", async () => {
    const result = await svc!.stop();
    expect(result.code).toBe(0);
    const text = svc!.log();
    expect(text).toContain("frame_too_large");
    expect(scanForSecrets(text, secrets)).toEqual([]);
  });
});
