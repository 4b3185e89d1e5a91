/**
 * The meter's pure-ish parts without an upstream: the speech gate that keeps silent turns from being
 * answered, and the warning at `cost.warn_percent` (a log line once a day, the metric, the report).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { SpeechGate } from "../src/audio/speech-gate.js";
import { BudgetExceededError } from "../src/errors.js";
import { CostLedger } from "../src/cost/ledger.js";
import { CostMeter } from "../src/cost/meter.js";
import { PriceTable } from "../src/cost/prices.js";
import { freshMetrics, metricValue, silence } from "./fake-realtime/helpers.js";
import { tone } from "./fake-realtime/server.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("speech gate", () => {
  it("tells speech from silence and a quiet room, per turn", () => {
    const gate = new SpeechGate();
    expect(gate.take()).toBe("none");
    gate.push(silence(800));
    expect(gate.take()).toBe("silent");
    // A hiss at about -60 dBFS is not speech.
    const hiss = Buffer.alloc(24 * 500 * 2);
    for (let i = 0; i < hiss.length; i += 2) hiss.writeInt16LE(((i / 2) % 2 === 0 ? 1 : -1) * 33, i);
    gate.push(hiss);
    expect(gate.take()).toBe("silent");
    gate.push(silence(300));
    gate.push(tone(100));
    gate.push(silence(300));
    expect(gate.take()).toBe("heard");
    // 40 ms of sound is a click, not a turn.
    gate.push(tone(40));
    expect(gate.take()).toBe("silent");
  });

  it("reads audio at an odd byte offset of its buffer, an odd trailing byte ignored", () => {
    /** `bytes` copied to an odd offset of a larger buffer, as `ws` may hand frames out. */
    const atOddOffset = (bytes: Buffer): Buffer => {
      const shifted = Buffer.alloc(bytes.length + 2).subarray(1, bytes.length + 1);
      bytes.copy(shifted);
      return shifted;
    };
    const gate = new SpeechGate();
    const speech = atOddOffset(Buffer.concat([silence(300), tone(100), silence(300)]));
    for (let at = 0; at < speech.length; at += 960) gate.push(speech.subarray(at, at + 960));
    expect(gate.take()).toBe("heard");
    const click = atOddOffset(tone(40));
    for (let at = 0; at < click.length; at += 960) gate.push(click.subarray(at, at + 960));
    expect(gate.take()).toBe("silent");
    // A lone loud byte is no sample.
    gate.push(Buffer.concat([silence(100), Buffer.from([0x7f])]));
    expect(gate.take()).toBe("silent");
  });
});

describe("cost meter", () => {
  it("warns once at warn_percent (log, metric, report) and refuses at the budget", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-meter-"));
    const lines: string[] = [];
    const logger = pino(
      { level: "info" },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    );
    const metrics = freshMetrics();
    const meter = new CostMeter({
      budget: { dailyUsd: 1, warnPercent: 80 },
      maxConversationMs: 0,
      prices: new PriceTable([{ model: "flat", output_text: 1_000_000 }]),
      ledger: new CostLedger({ dataDir: dir, timeZone: () => "UTC", logger }),
      metrics,
      logger,
    });
    await meter.load();
    const kitchen = { id: "kitchen", route: "v1" } as const;
    const account = meter.account("c1", kitchen);
    const spend = (usd: number): void => account.response("flat", { output_tokens: usd });
    spend(0.5);
    expect(await metricValue(metrics, "openvoice_budget_warn")).toBe(0);
    expect((await meter.report()).warn).toBe(false);
    spend(0.3);
    spend(0.1);
    expect(await metricValue(metrics, "openvoice_budget_warn")).toBe(1);
    expect(await metricValue(metrics, "openvoice_budget_spent_ratio")).toBeCloseTo(0.9, 12);
    expect(
      lines.filter((l) => l.includes("voice budget of $1.00 for all devices at 80% today")),
    ).toHaveLength(1);
    expect(await meter.report()).toMatchObject({ warn: true, blocked: false, spent_usd: 0.9 });
    await expect(meter.admit(kitchen)).resolves.toBeUndefined();
    let blocked = 0;
    account.onBlocked = () => blocked++;
    spend(0.1);
    expect(blocked).toBe(1);
    await expect(meter.admit(kitchen)).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(meter.admit({ id: "office", route: "v1" })).rejects.toMatchObject({
      code: "budget_exceeded",
      message: "Today's voice budget of $1.00 is used up; it resets at midnight.",
    });
    meter.allow(0.5);
    await expect(meter.admit(kitchen)).resolves.toBeUndefined();
    expect(await metricValue(metrics, "openvoice_budget_usd")).toBe(1.5);
    await meter.close();
  });
});
