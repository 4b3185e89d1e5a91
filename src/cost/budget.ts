/**
 * Daily budgets (pure): the calendar day in Home Assistant's time zone, what a day's spend means against
 * the configured budgets, and the sentence a refused conversation carries.
 */

/** Who spends: a device on one route. `id` is the device's id, name, or the route itself. */
export interface DeviceRef {
  readonly id: string;
  readonly route: DeviceRoute;
}
export const DEVICE_ROUTES = ["v1", "dialect", "wyoming", "esphome", "talk"] as const;
export type DeviceRoute = (typeof DEVICE_ROUTES)[number];

/** The ledger's key of a device: route and id. */
export const deviceKey = (d: DeviceRef): string => `${d.route}:${d.id}`;

export interface BudgetSettings {
  /** All devices together, USD per day; undefined: no daily budget. */
  readonly dailyUsd?: number | undefined;
  /** Each device, USD per day; undefined: none. */
  readonly deviceDailyUsd?: number | undefined;
  /** Warn at this share of a budget, in percent. */
  readonly warnPercent: number;
}

/** What was spent on one day (the part a budget decision reads). */
export interface DaySpend {
  readonly totalUsd: number;
  /** Extra dollars allowed for all devices today (added to the daily budget). */
  readonly allowanceUsd: number;
  device(key: string): { readonly usd: number; readonly allowanceUsd: number } | undefined;
}

export interface BudgetView {
  /** The effective budget (configured plus today's allowance); null without one. */
  readonly budgetUsd: number | null;
  readonly spentUsd: number;
  /** spent / budget; 0 without a budget. */
  readonly ratio: number;
  /** At or past `warn_percent` of the budget. */
  readonly warn: boolean;
  /** At or past the budget: new conversations are refused. */
  readonly blocked: boolean;
}

function view(spentUsd: number, configured: number | undefined, allowanceUsd: number, warnPercent: number) {
  if (configured === undefined) return { budgetUsd: null, spentUsd, ratio: 0, warn: false, blocked: false };
  const budgetUsd = configured + allowanceUsd;
  const ratio = budgetUsd > 0 ? spentUsd / budgetUsd : spentUsd > 0 ? Infinity : 1;
  return {
    budgetUsd,
    spentUsd,
    ratio: Number.isFinite(ratio) ? ratio : 1,
    warn: ratio * 100 >= warnPercent,
    blocked: ratio >= 1,
  };
}

/** The daily budget for all devices against `day`. */
export function dailyView(s: BudgetSettings, day: DaySpend): BudgetView {
  return view(day.totalUsd, s.dailyUsd, day.allowanceUsd, s.warnPercent);
}

/** One device's budget against `day`. */
export function deviceView(s: BudgetSettings, day: DaySpend, key: string): BudgetView {
  const d = day.device(key);
  return view(d?.usd ?? 0, s.deviceDailyUsd, d?.allowanceUsd ?? 0, s.warnPercent);
}

/** Why a new conversation of `device` is refused today, or null when it may start. */
export function refusal(s: BudgetSettings, day: DaySpend, device: DeviceRef): string | null {
  const all = dailyView(s, day);
  if (all.blocked) return budgetSentence(all.budgetUsd ?? 0, false);
  const one = deviceView(s, day, deviceKey(device));
  if (one.blocked) return budgetSentence(one.budgetUsd ?? 0, true);
  return null;
}

/** "Today's voice budget of $2.00 is used up; it resets at midnight." */
export function budgetSentence(budgetUsd: number, perDevice: boolean): string {
  const which = perDevice ? " for this device" : "";
  return `Today's voice budget of ${usd(budgetUsd)}${which} is used up; it resets at midnight.`;
}

/** Dollars as people read them: cents, or four decimals below a cent. */
export function usd(value: number): string {
  return value !== 0 && Math.abs(value) < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

/**
 * The calendar day of `epochMs` in `timeZone` (an IANA name such as `Europe/Berlin`), `YYYY-MM-DD`.
 * An unknown zone falls back to UTC.
 */
export function dayOf(epochMs: number, timeZone: string): string {
  const at = new Date(epochMs);
  // Two zones need no formatter, whose first one in a process loads ICU's date data (about 9 MiB of
  // memory and 10 ms): UTC, and the zone the process's own clock runs in (`TZ`, which the Supervisor
  // sets to the system's zone), read from the date's local fields.
  if (timeZone === "UTC") return at.toISOString().slice(0, 10);
  if (timeZone === process.env.TZ) return localDay(at);
  return formatter(timeZone).format(at);
}

function localDay(d: Date): string {
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${String(d.getFullYear()).padStart(4, "0")}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
}

/** The day `days` before `day` (`YYYY-MM-DD`, calendar arithmetic). */
export function dayBefore(day: string, days: number): string {
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d - days)).toISOString().slice(0, 10);
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit" } as const;
    try {
      f = new Intl.DateTimeFormat("en-CA", { ...options, timeZone });
    } catch {
      f = new Intl.DateTimeFormat("en-CA", { ...options, timeZone: "UTC" });
    }
    formatters.set(timeZone, f);
  }
  return f;
}
