/**
 * The running side of cost: prices every usage a session reports, books it in the ledger under its
 * device and conversation, keeps the cost metrics, refuses new conversations over budget and ends running
 * ones once their answer is over (budget used up, or `cost.max_conversation_minutes` reached).
 */
import type { RealtimeResponseUsage } from "openai/resources/realtime/realtime";
import { BudgetExceededError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import {
  dailyView,
  deviceKey,
  deviceView,
  refusal,
  usd,
  type BudgetSettings,
  type BudgetView,
  type DaySpend,
  type DeviceRef,
  type DeviceRoute,
} from "./budget.js";
import type { CostLedger } from "./ledger.js";
import {
  priceResponse,
  priceTranscription,
  type PriceTable,
  type Priced,
  type TranscriptionUsage,
} from "./prices.js";

/** Where an upstream session reports what it used; the session calls it once per usage. */
export interface UsageSink {
  response(model: string, usage: RealtimeResponseUsage): void;
  transcription(model: string, usage: TranscriptionUsage): void;
}

export interface CostMeterOptions {
  readonly budget: BudgetSettings;
  /** A conversation ends at its next quiet moment after this long; 0: never. */
  readonly maxConversationMs: number;
  readonly prices: PriceTable;
  readonly ledger: CostLedger;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Epoch milliseconds. */
  readonly now?: () => number;
}

/** One priced item, for the transcript lines of the UI. */
export interface RecentCost {
  readonly at: number;
  readonly conversation: string;
  readonly kind: "response" | "transcription";
  /** null: no price known for `model`. */
  readonly usd: number | null;
  readonly model: string;
}

/** `GET /api/cost`. */
export interface CostReport {
  readonly day: string;
  readonly currency: "USD";
  readonly spent_usd: number;
  readonly budget_usd: number | null;
  readonly device_budget_usd: number | null;
  readonly warn_percent: number;
  readonly warn: boolean;
  readonly blocked: boolean;
  /** Models used today with no price known: their usage is counted as $0 and flagged. */
  readonly unpriced_models: string[];
  readonly devices: {
    device: string;
    route: DeviceRoute;
    spent_usd: number;
    budget_usd: number | null;
    warn: boolean;
    blocked: boolean;
  }[];
}

/** What the meter watches of a running conversation (a `LiveConversation`). */
export interface WatchedConversation {
  readonly id: string;
  on(event: "response.start" | "response.end", fn: () => void): unknown;
  on(event: "audio", fn: (e: { pcm: Buffer }) => void): unknown;
  once(event: "closed", fn: () => void): unknown;
  readonly turns: { on(event: "idle", fn: () => void): unknown };
  readonly session?: { readonly isIdle: boolean } | undefined;
  end(reason: string): Promise<void>;
}

const PCM_BYTES_PER_MS = 48;
/** After the last reply's audio should have played, before the conversation ends. */
const PLAYBACK_MARGIN_MS = 1500;
/** A conversation past its time that never goes quiet ends anyway after this long. */
const HARD_END_AFTER_MS = 2 * 60_000;
const RECENT_ITEMS = 50;
const NOTHING_SPENT: DaySpend = { totalUsd: 0, allowanceUsd: 0, device: () => undefined };

export class CostMeter {
  readonly #o: CostMeterOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #recent = new Map<string, RecentCost[]>();
  readonly #warned = new Set<string>();
  /** Accounts of running conversations (`watch`), told when a budget they count against is used up. */
  readonly #watched = new Set<CostAccount>();
  readonly #loaded: Promise<void>;
  #resolveLoaded!: () => void;
  readonly #refresh: NodeJS.Timeout;

  constructor(opts: CostMeterOptions) {
    this.#o = opts;
    this.#log = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#loaded = new Promise((resolve) => (this.#resolveLoaded = resolve));
    this.#refresh = setInterval(() => this.#updateGauges(), 60_000);
    this.#refresh.unref();
    // Nothing is spent before the ledger is read; asking the ledger for "today" would build a time-zone
    // formatter (ICU's zone data, about 10 ms) on the path to listening.
    this.#setGauges(NOTHING_SPENT);
  }

  /** Reads the ledger; new conversations wait for it. Never rejects. */
  async load(): Promise<void> {
    await this.#o.ledger.load().catch((err: unknown) => this.#log.warn({ err }, "cost ledger not loaded"));
    this.#resolveLoaded();
    this.#updateGauges();
  }

  /**
   * Resolves when `device` may start a conversation; rejects with `BudgetExceededError`
   * (`code: "budget_exceeded"`, the sentence as `message`) when today's budget, or the device's, is used up.
   */
  async admit(device: DeviceRef): Promise<void> {
    await this.#loaded;
    this.check(device);
  }

  /** `admit` without waiting for the ledger. */
  check(device: DeviceRef): void {
    const why = refusal(this.#o.budget, this.#o.ledger.spend(), device);
    if (why === null) return;
    this.#log.warn({ device: device.id, route: device.route }, `conversation refused: ${why}`);
    throw new BudgetExceededError(why);
  }

  /** The sink of one conversation's sessions; `attribute` moves it (and what it spent today) to a device. */
  account(conversation: string, device: DeviceRef): CostAccount {
    return new CostAccount(this, conversation, device);
  }

  /**
   * Ends `c` when today's budget or its device's is used up (by `c` or by any other conversation) or it
   * has run `maxConversationMs`: after the answer in
   * progress ends (or at once when none is), once that answer has had time to play on the device. A
   * conversation that keeps talking never waits for a quiet moment; one that neither answers nor goes
   * quiet ends after two minutes more.
   */
  watch(c: WatchedConversation, account: CostAccount): void {
    let playedUntil = 0;
    let replyStart = 0;
    let replyBytes = 0;
    let ending: string | null = null;
    let endTimer: NodeJS.Timeout | undefined;
    let maxTimer: NodeJS.Timeout | undefined;
    let hardTimer: NodeJS.Timeout | undefined;
    const endSoon = (): void => {
      if (ending === null || endTimer !== undefined) return;
      const wait = Math.max(0, playedUntil - this.#now()) + PLAYBACK_MARGIN_MS;
      endTimer = setTimeout(() => {
        this.#log.info({ conversation: c.id, reason: ending }, "conversation ended by the cost limits");
        void c.end(ending ?? "budget_exceeded");
      }, wait);
      endTimer.unref();
    };
    const mark = (reason: string): void => {
      if (ending !== null) return;
      ending = reason;
      hardTimer = setTimeout(() => void c.end(reason), HARD_END_AFTER_MS);
      hardTimer.unref();
      if (c.session?.isIdle ?? true) endSoon();
    };
    c.on("response.start", () => {
      replyStart = this.#now();
      replyBytes = 0;
    });
    c.on("audio", ({ pcm }) => {
      replyBytes += pcm.length;
      playedUntil = replyStart + replyBytes / PCM_BYTES_PER_MS;
    });
    c.turns.on("idle", endSoon);
    c.on("response.end", endSoon);
    account.onBlocked = () => mark("budget_exceeded");
    this.#watched.add(account);
    if (this.#o.maxConversationMs > 0) {
      maxTimer = setTimeout(() => mark("max_duration"), this.#o.maxConversationMs);
      maxTimer.unref();
    }
    c.once("closed", () => {
      clearTimeout(endTimer);
      clearTimeout(maxTimer);
      clearTimeout(hardTimer);
      account.onBlocked = undefined;
      this.#watched.delete(account);
    });
  }

  /** Allows `amountUsd` more today, for every device or for one. */
  allow(amountUsd: number, device?: DeviceRef): void {
    this.#o.ledger.allow(amountUsd, device);
    this.#log.info({ usd: amountUsd, device: device?.id }, "more voice budget allowed for today");
    this.#updateGauges();
  }

  /** Today's spend; what it shows is on disk when the promise resolves. */
  async report(): Promise<CostReport> {
    await this.#loaded;
    await this.#o.ledger.flush();
    this.#updateGauges();
    const ledger = this.#o.ledger;
    const s = this.#o.budget;
    const spend = ledger.spend();
    const day = ledger.day();
    const all = dailyView(s, spend);
    return {
      day: ledger.today(),
      currency: "USD",
      spent_usd: round(spend.totalUsd),
      budget_usd: all.budgetUsd,
      device_budget_usd: s.deviceDailyUsd ?? null,
      warn_percent: s.warnPercent,
      warn: all.warn,
      blocked: all.blocked,
      unpriced_models: [...day.unpriced_models],
      devices: Object.entries(day.devices)
        .map(([key, d]) => {
          const v = deviceView(s, spend, key);
          return {
            device: d.device,
            route: d.route,
            spent_usd: round(d.usd),
            budget_usd: v.budgetUsd,
            warn: v.warn,
            blocked: v.blocked || all.blocked,
          };
        })
        .sort((a, b) => b.spent_usd - a.spent_usd),
    };
  }

  /** The last priced items of `device`, oldest first. */
  recent(device: DeviceRef): readonly RecentCost[] {
    return this.#recent.get(deviceKey(device)) ?? [];
  }

  /** Writes what is pending and stops the gauge refresh. */
  async close(): Promise<void> {
    clearInterval(this.#refresh);
    await this.#o.ledger.flush();
  }

  /** @internal Books one priced usage (`CostAccount` calls it). */
  book(account: CostAccount, kind: RecentCost["kind"], priced: Priced): void {
    const device = account.device;
    this.#o.ledger.add({ device, conversation: account.conversation, usd: priced.usd, model: priced.model });
    if (priced.usd === null)
      this.#log.warn({ model: priced.model }, "no price known for this model (cost.prices)");
    else this.#o.metrics.costUsd.inc({ device: device.id, route: device.route }, priced.usd);
    const key = deviceKey(device);
    const list = this.#recent.get(key) ?? [];
    list.push({
      at: this.#now(),
      conversation: account.conversation,
      kind,
      usd: priced.usd,
      model: priced.model,
    });
    if (list.length > RECENT_ITEMS) list.splice(0, list.length - RECENT_ITEMS);
    this.#recent.set(key, list);
    this.#afterSpend(account);
  }

  /** @internal Moves an account to `device` with what it spent today. */
  move(account: CostAccount, device: DeviceRef): void {
    this.#o.ledger.move(account.conversation, device);
    const from = this.#recent.get(deviceKey(account.device)) ?? [];
    const moved = from.filter((i) => i.conversation === account.conversation);
    if (moved.length > 0) {
      this.#recent.set(
        deviceKey(account.device),
        from.filter((i) => i.conversation !== account.conversation),
      );
      const to = [...(this.#recent.get(deviceKey(device)) ?? []), ...moved].sort((a, b) => a.at - b.at);
      this.#recent.set(deviceKey(device), to.slice(-RECENT_ITEMS));
    }
    this.#afterSpend(account, device);
  }

  /** @internal The price table (accounts price with it). */
  get prices(): PriceTable {
    return this.#o.prices;
  }

  #afterSpend(account: CostAccount, device = account.device): void {
    this.#updateGauges();
    const s = this.#o.budget;
    const spend = this.#o.ledger.spend();
    const day = this.#o.ledger.today();
    const all = dailyView(s, spend);
    const one = deviceView(s, spend, deviceKey(device));
    this.#warnOnce(`${day}:all`, all, "all devices");
    this.#warnOnce(`${day}:${deviceKey(device)}`, one, `device ${device.id}`);
    if (!all.blocked && !one.blocked) return;
    account.onBlocked?.();
    // The other running conversations the used-up budget covers: all of them, or the device's. Wyoming
    // calls are left alone: each conversation call is admitted on its own (`attribute`), and ending one
    // from outside would cut a speech-to-text call short with a wrong error.
    const key = deviceKey(device);
    for (const a of this.#watched)
      if (a !== account && a.device.route !== "wyoming" && (all.blocked || deviceKey(a.device) === key))
        a.onBlocked?.();
  }

  #warnOnce(key: string, v: BudgetView, who: string): void {
    if (!v.warn || this.#warned.has(key) || v.budgetUsd === null) return;
    this.#warned.add(key);
    const level = v.blocked ? "used up" : `at ${Math.round(v.ratio * 100)}%`;
    this.#log.warn(
      { spent_usd: round(v.spentUsd), budget_usd: v.budgetUsd },
      `voice budget of ${usd(v.budgetUsd)} for ${who} ${level} today (${usd(v.spentUsd)} spent)`,
    );
  }

  #updateGauges(): void {
    this.#setGauges(this.#o.ledger.spend());
  }

  #setGauges(spend: DaySpend): void {
    const v = dailyView(this.#o.budget, spend);
    this.#o.metrics.budgetUsd.set(v.budgetUsd ?? 0);
    this.#o.metrics.budgetSpentRatio.set(v.ratio);
    this.#o.metrics.budgetWarn.set(v.warn ? 1 : 0);
  }
}

/** One conversation's spend: its sessions report usage here. */
export class CostAccount implements UsageSink {
  readonly #meter: CostMeter;
  readonly conversation: string;
  #device: DeviceRef;
  /** Called after a usage when a budget this account counts against is used up. */
  onBlocked: (() => void) | undefined;

  constructor(meter: CostMeter, conversation: string, device: DeviceRef) {
    this.#meter = meter;
    this.conversation = conversation;
    this.#device = device;
  }

  get device(): DeviceRef {
    return this.#device;
  }

  response(model: string, usage: RealtimeResponseUsage): void {
    this.#meter.book(this, "response", priceResponse(this.#meter.prices, model, usage));
  }

  transcription(model: string, usage: TranscriptionUsage): void {
    this.#meter.book(this, "transcription", priceTranscription(this.#meter.prices, model, usage));
  }

  /**
   * Moves this conversation, and what it spent today, to `device`. Throws `BudgetExceededError` when
   * `device` may not start a conversation today (the move is kept: the spend is that device's).
   */
  attribute(device: DeviceRef): void {
    if (device.id !== this.#device.id || device.route !== this.#device.route) {
      this.#meter.move(this, device);
      this.#device = device;
    }
    this.#meter.check(device);
  }
}

/** Dollars rounded to a millionth, for reports. */
export const round = (v: number): number => Math.round(v * 1e6) / 1e6;

/** The device a conversation's options name: `device`, else the satellite on protocol v1, else `unknown`. */
export function conversationDevice(opts: { device?: DeviceRef; satelliteId?: string }): DeviceRef {
  if (opts.device) return opts.device;
  if (opts.satelliteId !== undefined) return { id: opts.satelliteId, route: "v1" };
  return { id: "unknown", route: "v1" };
}
