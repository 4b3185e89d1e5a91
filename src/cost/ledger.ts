/**
 * Where the money went: spend per day (in Home Assistant's time zone), per device and route, and per
 * conversation, kept as one JSON file in the data folder. Once `load()` has read the file, every change is
 * written within `writeDelayMs` (100 ms) with a temporary file and a rename, so a crash leaves the previous or the new file, never half
 * of one; `flush()` resolves once everything recorded so far is on disk. Days older than `keepDays` (90)
 * are dropped.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { Logger } from "../log.js";
import { DEVICE_ROUTES, dayBefore, dayOf, deviceKey, type DaySpend, type DeviceRef } from "./budget.js";

export const LEDGER_FILE = "cost-ledger.json";
/** Conversations kept per day (the newest); older ones still count in their device's total. */
const MAX_CONVERSATIONS_PER_DAY = 2000;

const money = z.number().finite().nonnegative();
const DeviceDaySchema = z.object({
  device: z.string(),
  route: z.enum(DEVICE_ROUTES),
  usd: money,
  allowance_usd: money.default(0),
  /** Usages of a model with no price known (counted, not priced). */
  unpriced: z.number().int().nonnegative().default(0),
});
const ConversationDaySchema = z.object({
  device: z.string(),
  route: z.enum(DEVICE_ROUTES),
  usd: money,
  started: z.number(),
});
const DayRecordSchema = z.object({
  allowance_usd: money.default(0),
  devices: z.record(z.string(), DeviceDaySchema).default({}),
  conversations: z.record(z.string(), ConversationDaySchema).default({}),
  unpriced_models: z.array(z.string()).default([]),
});
const LedgerFileSchema = z.object({ version: z.literal(1), days: z.record(z.string(), DayRecordSchema) });

export type DeviceDay = z.infer<typeof DeviceDaySchema>;
export type DayRecord = z.infer<typeof DayRecordSchema>;

export interface LedgerOptions {
  readonly dataDir: string;
  /** Epoch milliseconds. */
  readonly now?: () => number;
  /** Home Assistant's IANA time zone; read on every call (it may be learned after start-up). */
  readonly timeZone: () => string;
  readonly logger: Logger;
  readonly keepDays?: number;
  readonly writeDelayMs?: number;
}

/** One priced (or unpriceable) usage. */
export interface LedgerEntry {
  readonly device: DeviceRef;
  readonly conversation: string;
  /** null: the model has no price known. */
  readonly usd: number | null;
  readonly model: string;
}

export class CostLedger {
  readonly #o: LedgerOptions;
  readonly #file: string;
  readonly #now: () => number;
  #days: Record<string, DayRecord> = {};
  #timer: NodeJS.Timeout | undefined;
  #dirty = false;
  /** The file was read (or found missing or unusable): until then nothing is written over it. */
  #loaded = false;
  #writing: Promise<void> = Promise.resolve();

  constructor(opts: LedgerOptions) {
    this.#o = opts;
    this.#file = join(opts.dataDir, LEDGER_FILE);
    this.#now = opts.now ?? Date.now;
  }

  /** Today's key (`YYYY-MM-DD`) in Home Assistant's time zone. */
  today(): string {
    return dayOf(this.#now(), this.#o.timeZone());
  }

  /** The record of `day` (default today); an empty one when nothing was spent. */
  day(day = this.today()): DayRecord {
    return this.#days[day] ?? DayRecordSchema.parse({});
  }

  /** Day keys with a record, oldest first. */
  days(): string[] {
    return Object.keys(this.#days).sort();
  }

  /** `day`'s spend as the budget policy reads it. */
  spend(day = this.today()): DaySpend {
    const rec = this.day(day);
    let total = 0;
    for (const d of Object.values(rec.devices)) total += d.usd;
    return {
      totalUsd: total,
      allowanceUsd: rec.allowance_usd,
      device: (key) => {
        const d = rec.devices[key];
        return d && { usd: d.usd, allowanceUsd: d.allowance_usd };
      },
    };
  }

  /** Adds one usage to today's device and conversation. */
  add(e: LedgerEntry): void {
    const rec = this.#today();
    const dev = this.#device(rec, e.device);
    const conv = (rec.conversations[e.conversation] ??= {
      device: e.device.id,
      route: e.device.route,
      usd: 0,
      started: this.#now(),
    });
    if (e.usd === null) {
      dev.unpriced++;
      if (!rec.unpriced_models.includes(e.model)) rec.unpriced_models.push(e.model);
    } else {
      dev.usd += e.usd;
      conv.usd += e.usd;
    }
    this.#trimConversations(rec);
    this.#changed();
  }

  /** Moves what `conversation` spent today to `to` (a Wyoming call that learned its device). */
  move(conversation: string, to: DeviceRef): void {
    const rec = this.#today();
    const conv = rec.conversations[conversation];
    if (!conv || (conv.device === to.id && conv.route === to.route)) return;
    const from = rec.devices[deviceKey({ id: conv.device, route: conv.route })];
    if (from) from.usd = Math.max(0, from.usd - conv.usd);
    this.#device(rec, to).usd += conv.usd;
    conv.device = to.id;
    conv.route = to.route;
    this.#changed();
  }

  /** Allows `usd` more today, for all devices or for one. */
  allow(usd: number, device?: DeviceRef): void {
    const rec = this.#today();
    if (device) this.#device(rec, device).allowance_usd += usd;
    else rec.allowance_usd += usd;
    this.#changed();
  }

  /**
   * Resolves once every change so far is on disk (or failed to write, which is logged). Before `load()`
   * has read the file, nothing is written (the changes are written after it).
   */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#dirty && this.#loaded) {
      this.#dirty = false;
      const json = JSON.stringify({ version: 1, days: this.#days });
      this.#writing = this.#writing.then(() => this.#write(json));
    }
    await this.#writing;
  }

  /**
   * Reads the file and adds it under what was recorded since start-up. A missing file is an empty
   * ledger; an unreadable one is logged and kept aside (`.bad`), never thrown.
   */
  async load(): Promise<void> {
    try {
      await this.#read();
    } finally {
      this.#loaded = true;
      if (this.#dirty) this.#changed();
    }
  }

  async #read(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.#file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        this.#o.logger.warn({ err }, "cost ledger unreadable");
      return;
    }
    let parsed: z.infer<typeof LedgerFileSchema>;
    try {
      parsed = LedgerFileSchema.parse(JSON.parse(text));
    } catch (err) {
      this.#o.logger.warn({ err }, "cost ledger invalid; starting a new one (the old one is kept as .bad)");
      await rename(this.#file, `${this.#file}.bad`).catch(() => undefined);
      return;
    }
    for (const [key, loaded] of Object.entries(parsed.days)) {
      const rec = this.#days[key];
      if (!rec) {
        this.#days[key] = loaded;
        continue;
      }
      rec.allowance_usd += loaded.allowance_usd;
      for (const [k, d] of Object.entries(loaded.devices)) {
        const mine = rec.devices[k];
        if (!mine) rec.devices[k] = d;
        else {
          mine.usd += d.usd;
          mine.allowance_usd += d.allowance_usd;
          mine.unpriced += d.unpriced;
        }
      }
      for (const [k, c] of Object.entries(loaded.conversations)) rec.conversations[k] ??= c;
      for (const m of loaded.unpriced_models)
        if (!rec.unpriced_models.includes(m)) rec.unpriced_models.push(m);
    }
    this.#prune();
  }

  #today(): DayRecord {
    const key = this.today();
    let rec = this.#days[key];
    if (!rec) {
      rec = DayRecordSchema.parse({});
      this.#days[key] = rec;
      this.#prune();
    }
    return rec;
  }

  #device(rec: DayRecord, d: DeviceRef): DeviceDay {
    return (rec.devices[deviceKey(d)] ??= {
      device: d.id,
      route: d.route,
      usd: 0,
      allowance_usd: 0,
      unpriced: 0,
    });
  }

  #trimConversations(rec: DayRecord): void {
    const ids = Object.keys(rec.conversations);
    if (ids.length <= MAX_CONVERSATIONS_PER_DAY) return;
    ids.sort((a, b) => rec.conversations[a]!.started - rec.conversations[b]!.started);
    for (const id of ids.slice(0, ids.length - MAX_CONVERSATIONS_PER_DAY)) delete rec.conversations[id];
  }

  #prune(): void {
    const oldest = dayBefore(this.today(), (this.#o.keepDays ?? 90) - 1);
    for (const key of Object.keys(this.#days)) if (key < oldest) delete this.#days[key];
  }

  #changed(): void {
    this.#dirty = true;
    if (this.#timer !== undefined || !this.#loaded) return;
    this.#timer = setTimeout(() => void this.flush(), this.#o.writeDelayMs ?? 100);
  }

  async #write(json: string): Promise<void> {
    const tmp = `${this.#file}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, json, { mode: 0o600, flush: true });
      await rename(tmp, this.#file);
    } catch (err) {
      this.#dirty = true;
      this.#o.logger.error({ err }, "cost ledger could not be written");
    }
  }
}
