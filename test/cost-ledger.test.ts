/**
 * The cost ledger on disk: written atomically soon after each change, read back after a restart, days
 * rolling over at local midnight in Home Assistant's time zone (injected clock), 90 days kept.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CostLedger, LEDGER_FILE } from "../src/cost/ledger.js";
import { silentLogger } from "./fake-realtime/helpers.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const kitchen = { id: "kitchen", route: "v1" } as const;
const office = { id: "office", route: "dialect" } as const;

async function ledgerAt(clock: { t: number }, timeZone = "Europe/Berlin"): Promise<CostLedger> {
  dir ??= await mkdtemp(join(tmpdir(), "openvoice-ledger-"));
  return new CostLedger({
    dataDir: dir,
    now: () => clock.t,
    timeZone: () => timeZone,
    logger: silentLogger(),
  });
}

describe("cost ledger", () => {
  it("books per device and conversation, writes within the delay, and reads it back after a restart", async () => {
    const clock = { t: Date.UTC(2026, 5, 10, 12) };
    const a = await ledgerAt(clock);
    await a.load(); // no file yet: an empty ledger
    a.add({ device: kitchen, conversation: "c1", usd: 0.25, model: "gpt-realtime" });
    a.add({ device: kitchen, conversation: "c1", usd: 0.05, model: "gpt-4o-mini-transcribe" });
    a.add({ device: office, conversation: "c2", usd: 0.1, model: "gpt-realtime" });
    a.add({ device: office, conversation: "c2", usd: null, model: "my-model" });
    // Written by the timer (100 ms) without anyone asking, within the half second DOCS promise.
    const file = join(dir!, LEDGER_FILE);
    await expect
      .poll(
        () =>
          readFile(file, "utf8").then(
            () => true,
            () => false,
          ),
        { timeout: 500, interval: 20 },
      )
      .toBe(true);
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { days: Record<string, unknown> };
    expect(Object.keys(onDisk.days)).toEqual(["2026-06-10"]);
    expect((await readdir(dir!)).filter((f) => f.endsWith(".tmp"))).toEqual([]);

    const b = await ledgerAt(clock);
    await b.load();
    const spend = b.spend();
    expect(spend.totalUsd).toBeCloseTo(0.4, 12);
    expect(spend.device("v1:kitchen")?.usd).toBeCloseTo(0.3, 12);
    expect(b.day().conversations.c2).toMatchObject({ device: "office", route: "dialect", usd: 0.1 });
    expect(b.day().unpriced_models).toEqual(["my-model"]);
    expect(b.day().devices["dialect:office"]?.unpriced).toBe(1);
  });

  it("spend booked before the file is read is added to it, never written over it", async () => {
    const clock = { t: Date.UTC(2026, 5, 10, 12) };
    const before = await ledgerAt(clock);
    await before.load();
    before.add({ device: kitchen, conversation: "c1", usd: 0.25, model: "gpt-realtime" });
    await before.flush();
    const after = await ledgerAt(clock);
    // A usage arrives while the service is still starting, and the write delay passes before the read.
    after.add({ device: office, conversation: "c2", usd: 0.1, model: "gpt-realtime" });
    await new Promise((r) => setTimeout(r, 300));
    await after.load();
    expect(after.spend().totalUsd).toBeCloseTo(0.35, 12);
    await after.flush();
    const again = await ledgerAt(clock);
    await again.load();
    expect(again.spend().totalUsd).toBeCloseTo(0.35, 12);
  });

  it("rolls over at local midnight in Home Assistant's time zone, not UTC", async () => {
    // 23:59 in Berlin on 2026-06-10 is 21:59 UTC (summer time).
    const clock = { t: Date.UTC(2026, 5, 10, 21, 59) };
    const l = await ledgerAt(clock);
    l.add({ device: kitchen, conversation: "late", usd: 1, model: "gpt-realtime" });
    l.allow(2);
    expect(l.today()).toBe("2026-06-10");
    clock.t += 60_000; // 00:00 in Berlin, still 22:00 on the 10th in UTC
    expect(l.today()).toBe("2026-06-11");
    expect(l.spend().totalUsd).toBe(0);
    expect(l.spend().allowanceUsd).toBe(0);
    l.add({ device: kitchen, conversation: "early", usd: 0.5, model: "gpt-realtime" });
    expect(l.spend().totalUsd).toBe(0.5);
    expect(l.spend("2026-06-10")).toMatchObject({ totalUsd: 1, allowanceUsd: 2 });
  });

  it("moves a conversation's spend to the device it turned out to serve", async () => {
    const l = await ledgerAt({ t: Date.UTC(2026, 5, 10, 12) });
    const wyoming = { id: "wyoming", route: "wyoming" } as const;
    l.add({ device: wyoming, conversation: "w1", usd: 0.01, model: "gpt-4o-mini-transcribe" });
    l.add({ device: wyoming, conversation: "w2", usd: 0.02, model: "gpt-4o-mini-transcribe" });
    l.move("w1", { id: "voice-pe-1", route: "wyoming" });
    expect(l.spend().device("wyoming:wyoming")?.usd).toBeCloseTo(0.02, 12);
    expect(l.spend().device("wyoming:voice-pe-1")?.usd).toBeCloseTo(0.01, 12);
    expect(l.spend().totalUsd).toBeCloseTo(0.03, 12);
  });

  it("keeps 90 days", async () => {
    const clock = { t: Date.UTC(2026, 0, 1, 12) };
    const l = await ledgerAt(clock, "UTC");
    for (let d = 0; d < 100; d++) {
      l.add({ device: kitchen, conversation: `c${d}`, usd: 0.01, model: "gpt-realtime" });
      clock.t += 86_400_000;
    }
    l.add({ device: kitchen, conversation: "last", usd: 0.01, model: "gpt-realtime" });
    const days = l.days();
    expect(days).toHaveLength(90);
    expect(days.at(-1)).toBe("2026-04-11");
    expect(days[0]).toBe("2026-01-12");
  });

  it("a damaged file is kept aside and the ledger starts empty", async () => {
    dir = await mkdtemp(join(tmpdir(), "openvoice-ledger-"));
    await writeFile(join(dir, LEDGER_FILE), "{not json");
    const l = await ledgerAt({ t: Date.UTC(2026, 5, 10, 12) });
    await l.load();
    expect(l.spend().totalUsd).toBe(0);
    expect(await readdir(dir)).toContain(`${LEDGER_FILE}.bad`);
  });
});
