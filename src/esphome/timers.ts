/**
 * Timers for an ESPHome voice device the product has taken over (issue 18: what the user would lose, the
 * product gives back). The product keeps the clock; the device only shows timers (LED ring, ringing) from
 * the timer events it is sent, as Home Assistant sends them (`assist_satellite.py`, `TimerEventType`):
 * STARTED when a timer starts, UPDATED when it is paused or resumed, CANCELLED, FINISHED when it runs out.
 * The device counts down by itself between events.
 *
 * Pure: the clock (`now`, `setTimeout`, `clearTimeout`) is injected; no other I/O.
 *
 * The model reaches the timers through {@link DeviceTimerTools}: function tools `start_timer`,
 * `cancel_timer`, `pause_timer`, `resume_timer` and `list_timers`, shaped as the MCP registry's
 * `RoutedTool`s (server {@link TIMER_TOOL_SERVER}) with a `callTool` that never rejects — plug them next to
 * the MCP tools with {@link withDeviceTools}.
 */
import { z } from "zod";
import type { RoutedTool, ToolCallOutcome, ToolProvider } from "../mcp/types.js";

/** `TimerEventType` of the ESPHome API (`api.proto`). */
export const TimerEvent = { STARTED: 0, UPDATED: 1, CANCELLED: 2, FINISHED: 3 } as const;
export type TimerEventKind = (typeof TimerEvent)[keyof typeof TimerEvent];

/** The fields of `VoiceAssistantTimerEventResponse`. */
export interface TimerEventMessage {
  readonly type: TimerEventKind;
  readonly timerId: string;
  readonly name: string;
  readonly totalSeconds: number;
  readonly secondsLeft: number;
  readonly isActive: boolean;
}

export interface TimerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const SYSTEM_CLOCK: TimerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A timer as callers see it. */
export interface TimerView {
  readonly id: string;
  readonly name: string;
  readonly totalSeconds: number;
  readonly secondsLeft: number;
  /** False while paused. */
  readonly isActive: boolean;
}

/** A request the timers cannot do; `message` is words the model can say. */
export class TimerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TimerError";
  }
}

export const MAX_TIMER_SECONDS = 24 * 3600;
export const MAX_TIMERS = 20;

interface Running {
  readonly id: string;
  readonly name: string;
  readonly totalSeconds: number;
  /** Running: when it ends (clock ms). Paused: undefined. */
  endsAt: number | undefined;
  /** Paused: ms left. */
  leftMs: number;
  handle: unknown;
}

/** One device's timers. Events go to `onEvent` in the order things happen. */
export class DeviceTimers {
  readonly #clock: TimerClock;
  readonly #onEvent: (e: TimerEventMessage) => void;
  readonly #timers = new Map<string, Running>();
  #next = 1;

  constructor(o: { onEvent: (e: TimerEventMessage) => void; clock?: TimerClock }) {
    this.#onEvent = o.onEvent;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
  }

  /** Starts a timer of `seconds` (1 s to 24 h, whole seconds). @throws TimerError */
  start(seconds: number, name = ""): TimerView {
    const total = Math.round(seconds);
    if (!(total >= 1 && total <= MAX_TIMER_SECONDS))
      throw new TimerError("a timer lasts between one second and 24 hours");
    if (this.#timers.size >= MAX_TIMERS) throw new TimerError(`at most ${MAX_TIMERS} timers at once`);
    const t: Running = {
      id: `timer-${this.#next++}`,
      name: name.trim(),
      totalSeconds: total,
      endsAt: this.#clock.now() + total * 1000,
      leftMs: total * 1000,
      handle: undefined,
    };
    this.#timers.set(t.id, t);
    this.#arm(t);
    this.#emit(TimerEvent.STARTED, t);
    return this.#view(t);
  }

  /** Timers matching `ref` (by id, or by name ignoring case); all with `{all: true}`. */
  find(ref: { id?: string; name?: string; all?: boolean }): TimerView[] {
    const all = [...this.#timers.values()];
    if (ref.all) return all.map((t) => this.#view(t));
    if (ref.id !== undefined) return all.filter((t) => t.id === ref.id).map((t) => this.#view(t));
    if (ref.name !== undefined) {
      const wanted = ref.name.trim().toLowerCase();
      return all.filter((t) => t.name.toLowerCase() === wanted).map((t) => this.#view(t));
    }
    return all.length === 1 ? [this.#view(all[0]!)] : [];
  }

  /** Cancels the timers `ref` matches. @throws TimerError when it matches none. */
  cancel(ref: { id?: string; name?: string; all?: boolean }): TimerView[] {
    return this.#each(ref, (t) => {
      this.#clock.clearTimeout(t.handle);
      this.#timers.delete(t.id);
      this.#emit(TimerEvent.CANCELLED, t);
    });
  }

  /** Pauses running timers `ref` matches. @throws TimerError when it matches none. */
  pause(ref: { id?: string; name?: string; all?: boolean }): TimerView[] {
    return this.#each(ref, (t) => {
      if (t.endsAt === undefined) return;
      this.#clock.clearTimeout(t.handle);
      t.leftMs = Math.max(0, t.endsAt - this.#clock.now());
      t.endsAt = undefined;
      this.#emit(TimerEvent.UPDATED, t);
    });
  }

  /** Resumes paused timers `ref` matches. @throws TimerError when it matches none. */
  resume(ref: { id?: string; name?: string; all?: boolean }): TimerView[] {
    return this.#each(ref, (t) => {
      if (t.endsAt !== undefined) return;
      t.endsAt = this.#clock.now() + t.leftMs;
      this.#arm(t);
      this.#emit(TimerEvent.UPDATED, t);
    });
  }

  list(): TimerView[] {
    return [...this.#timers.values()].map((t) => this.#view(t));
  }

  /** Tells the device every timer again (UPDATED, as it is now): a device that reconnected shows them. */
  resend(): void {
    for (const t of this.#timers.values()) this.#emit(TimerEvent.UPDATED, t);
  }

  /** Drops every timer without events (the device is gone or given back). */
  dispose(): void {
    for (const t of this.#timers.values()) this.#clock.clearTimeout(t.handle);
    this.#timers.clear();
  }

  #each(ref: { id?: string; name?: string; all?: boolean }, act: (t: Running) => void): TimerView[] {
    const found = this.find(ref);
    if (found.length === 0) throw new TimerError(this.#noMatch(ref));
    const out: TimerView[] = [];
    for (const v of found) {
      const t = this.#timers.get(v.id);
      if (!t) continue;
      act(t);
      out.push(this.#view(t));
    }
    return out;
  }

  #noMatch(ref: { id?: string; name?: string }): string {
    if (this.#timers.size === 0) return "there is no timer";
    if (ref.id !== undefined) return `no timer with id ${ref.id}`;
    if (ref.name !== undefined) return `no timer named "${ref.name}"`;
    const names = this.list().map((t) => (t.name ? `"${t.name}"` : t.id));
    return `there are ${this.#timers.size} timers (${names.join(", ")}): say which one`;
  }

  #arm(t: Running): void {
    const left = Math.max(0, (t.endsAt ?? 0) - this.#clock.now());
    t.handle = this.#clock.setTimeout(() => {
      if (this.#timers.get(t.id) !== t || t.endsAt === undefined) return;
      this.#timers.delete(t.id);
      t.endsAt = this.#clock.now();
      t.leftMs = 0;
      this.#emit(TimerEvent.FINISHED, t);
    }, left);
  }

  #secondsLeft(t: Running): number {
    const ms = t.endsAt === undefined ? t.leftMs : Math.max(0, t.endsAt - this.#clock.now());
    return Math.ceil(ms / 1000);
  }

  #view(t: Running): TimerView {
    return {
      id: t.id,
      name: t.name,
      totalSeconds: t.totalSeconds,
      secondsLeft: this.#secondsLeft(t),
      isActive: t.endsAt !== undefined && this.#timers.has(t.id),
    };
  }

  #emit(type: TimerEventKind, t: Running): void {
    const v = this.#view(t);
    this.#onEvent({
      type,
      timerId: v.id,
      name: v.name,
      totalSeconds: v.totalSeconds,
      secondsLeft: type === TimerEvent.FINISHED ? 0 : v.secondsLeft,
      isActive: type === TimerEvent.STARTED || (type === TimerEvent.UPDATED && v.isActive),
    });
  }
}

/** Where timer tools say they come from (`RoutedTool.server`, tool-call metrics). */
export const TIMER_TOOL_SERVER = "timers";

/** Tools of one device, offered next to the MCP tools. `callTool` never rejects. */
export interface DeviceToolSet {
  tools(): readonly RoutedTool[];
  callTool(name: string, argsJson: string): Promise<ToolCallOutcome>;
}

const Duration = z.number().finite().min(0);
const StartArgs = z
  .object({
    duration_s: Duration.optional(),
    hours: Duration.optional(),
    minutes: Duration.optional(),
    seconds: Duration.optional(),
    name: z.string().max(100).optional(),
  })
  .strict();
const RefArgs = z
  .object({
    name: z.string().max(100).optional(),
    id: z.string().max(64).optional(),
    all: z.boolean().optional(),
  })
  .strict();
const NoArgs = z.object({}).strict();

const REF_PARAMETERS = {
  type: "object",
  properties: {
    name: { type: "string", description: "The timer's name, as the user said it." },
    id: { type: "string", description: "The timer's id from list_timers." },
    all: { type: "boolean", description: "Every timer." },
  },
  additionalProperties: false,
};

const TIMER_TOOLS: readonly RoutedTool[] = [
  {
    name: "start_timer",
    description:
      "Start a timer on this voice device; its light ring shows it and it rings when it runs out. Give the " +
      'duration as hours/minutes/seconds or duration_s, and a name when the user gives one ("pasta").',
    parameters: {
      type: "object",
      properties: {
        hours: { type: "number", minimum: 0 },
        minutes: { type: "number", minimum: 0 },
        seconds: { type: "number", minimum: 0 },
        duration_s: { type: "number", minimum: 0, description: "The whole duration in seconds." },
        name: { type: "string" },
      },
      additionalProperties: false,
    },
    server: TIMER_TOOL_SERVER,
    tool: "start_timer",
  },
  {
    name: "cancel_timer",
    description:
      "Cancel a timer on this voice device, by name or id; with one timer running, no argument needed.",
    parameters: REF_PARAMETERS,
    server: TIMER_TOOL_SERVER,
    tool: "cancel_timer",
  },
  {
    name: "pause_timer",
    description: "Pause a running timer on this voice device (by name or id).",
    parameters: REF_PARAMETERS,
    server: TIMER_TOOL_SERVER,
    tool: "pause_timer",
  },
  {
    name: "resume_timer",
    description: "Resume a paused timer on this voice device (by name or id).",
    parameters: REF_PARAMETERS,
    server: TIMER_TOOL_SERVER,
    tool: "resume_timer",
  },
  {
    name: "list_timers",
    description: "The timers on this voice device, with the time left on each.",
    parameters: { type: "object", properties: {}, additionalProperties: false },
    server: TIMER_TOOL_SERVER,
    tool: "list_timers",
  },
];

/** "1 hour 5 minutes", "30 seconds". */
export function spokenDuration(totalSeconds: number): string {
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  const part = (n: number, unit: string): string[] => (n > 0 ? [`${n} ${unit}${n === 1 ? "" : "s"}`] : []);
  const parts = [...part(h, "hour"), ...part(m, "minute"), ...part(s, "second")];
  return parts.length > 0 ? parts.join(" ") : "0 seconds";
}

const shown = (t: TimerView) => ({
  id: t.id,
  name: t.name || null,
  total: spokenDuration(t.totalSeconds),
  left: spokenDuration(t.secondsLeft),
  paused: !t.isActive,
});

/** The timer tools of one device over its {@link DeviceTimers}. */
export class DeviceTimerTools implements DeviceToolSet {
  readonly #timers: DeviceTimers;
  readonly #now: () => number;

  constructor(timers: DeviceTimers, now: () => number = () => performance.now()) {
    this.#timers = timers;
    this.#now = now;
  }

  tools(): readonly RoutedTool[] {
    return TIMER_TOOLS;
  }

  callTool(name: string, argsJson: string): Promise<ToolCallOutcome> {
    const started = this.#now();
    const done = (ok: boolean, outcome: ToolCallOutcome["outcome"], output: unknown): ToolCallOutcome => ({
      ok,
      output: typeof output === "string" ? output : JSON.stringify(output),
      server: TIMER_TOOL_SERVER,
      tool: name,
      durationMs: this.#now() - started,
      outcome,
    });
    let args: unknown;
    try {
      args = argsJson.trim() === "" ? {} : JSON.parse(argsJson);
    } catch {
      return Promise.resolve(done(false, "bad_arguments", "the arguments are not valid JSON"));
    }
    try {
      return Promise.resolve(this.#call(name, args, done));
    } catch (err) {
      if (err instanceof TimerError) return Promise.resolve(done(false, "error", err.message));
      throw err;
    }
  }

  #call(
    name: string,
    args: unknown,
    done: (ok: boolean, outcome: ToolCallOutcome["outcome"], output: unknown) => ToolCallOutcome,
  ): ToolCallOutcome {
    const bad = (e: z.ZodError): ToolCallOutcome =>
      done(
        false,
        "bad_arguments",
        e.issues.map((i) => `${i.path.join(".") || "arguments"}: ${i.message}`).join("; "),
      );
    switch (name) {
      case "start_timer": {
        const a = StartArgs.safeParse(args);
        if (!a.success) return bad(a.error);
        const seconds =
          (a.data.duration_s ?? 0) +
          (a.data.hours ?? 0) * 3600 +
          (a.data.minutes ?? 0) * 60 +
          (a.data.seconds ?? 0);
        const t = this.#timers.start(seconds, a.data.name);
        return done(true, "success", { started: shown(t) });
      }
      case "cancel_timer":
      case "pause_timer":
      case "resume_timer": {
        const a = RefArgs.safeParse(args);
        if (!a.success) return bad(a.error);
        const ref = {
          ...(a.data.id === undefined ? {} : { id: a.data.id }),
          ...(a.data.name === undefined ? {} : { name: a.data.name }),
          ...(a.data.all === undefined ? {} : { all: a.data.all }),
        };
        const key = name === "cancel_timer" ? "cancelled" : name === "pause_timer" ? "paused" : "resumed";
        const act =
          name === "cancel_timer"
            ? this.#timers.cancel(ref)
            : name === "pause_timer"
              ? this.#timers.pause(ref)
              : this.#timers.resume(ref);
        return done(true, "success", { [key]: act.map(shown) });
      }
      case "list_timers": {
        const a = NoArgs.safeParse(args);
        if (!a.success) return bad(a.error);
        return done(true, "success", { timers: this.#timers.list().map(shown) });
      }
      default:
        return done(false, "unknown_tool", `no tool named ${name}`);
    }
  }
}

/**
 * `base` plus a device's tools: the device's tools are listed after `base`'s, and a name both have goes to
 * the device. Status and change notifications stay `base`'s.
 */
export function withDeviceTools(base: ToolProvider, device: DeviceToolSet): ToolProvider {
  const own = new Set(device.tools().map((t) => t.name));
  return {
    tools: () => [...base.tools().filter((t) => !own.has(t.name)), ...device.tools()],
    callTool: (name, argsJson, opts) =>
      own.has(name) ? device.callTool(name, argsJson) : base.callTool(name, argsJson, opts),
    onToolsChanged: (listener) => base.onToolsChanged(listener),
    status: () => base.status(),
  };
}
