import { describe, expect, it } from "vitest";
import type { RoutedTool, ToolCallOutcome, ToolProvider } from "../../src/mcp/types.js";
import {
  DeviceTimers,
  DeviceTimerTools,
  spokenDuration,
  TimerError,
  TimerEvent,
  withDeviceTools,
  type TimerClock,
  type TimerEventMessage,
} from "../../src/esphome/timers.js";

/** A clock that moves only when told to, running what falls due in time order. */
class FakeClock implements TimerClock {
  #now = 1_000_000;
  #due: { at: number; fn: () => void; id: number }[] = [];
  #ids = 0;
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#ids;
    this.#due.push({ at: this.#now + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#due = this.#due.filter((d) => d.id !== handle);
  }
  get pending(): number {
    return this.#due.length;
  }
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const next = [...this.#due].sort((a, b) => a.at - b.at)[0];
      if (!next || next.at > end) break;
      this.#due = this.#due.filter((d) => d !== next);
      this.#now = next.at;
      next.fn();
    }
    this.#now = end;
  }
}

function setup() {
  const clock = new FakeClock();
  const events: TimerEventMessage[] = [];
  const timers = new DeviceTimers({ clock, onEvent: (e) => events.push(e) });
  const tools = new DeviceTimerTools(timers, () => clock.now());
  const call = async (name: string, args: unknown): Promise<ToolCallOutcome> =>
    tools.callTool(name, JSON.stringify(args));
  return { clock, events, timers, tools, call };
}

describe("DeviceTimers", () => {
  it("starts, counts down on the clock and finishes with a FINISHED event", () => {
    const { clock, events, timers } = setup();
    const t = timers.start(90, " Pasta ");
    expect(t).toEqual({ id: "timer-1", name: "Pasta", totalSeconds: 90, secondsLeft: 90, isActive: true });
    expect(events).toEqual([
      {
        type: TimerEvent.STARTED,
        timerId: "timer-1",
        name: "Pasta",
        totalSeconds: 90,
        secondsLeft: 90,
        isActive: true,
      },
    ]);
    clock.advance(30_500);
    expect(timers.list()[0]!.secondsLeft).toBe(60);
    clock.advance(59_499);
    expect(events).toHaveLength(1);
    clock.advance(1);
    expect(events[1]).toEqual({
      type: TimerEvent.FINISHED,
      timerId: "timer-1",
      name: "Pasta",
      totalSeconds: 90,
      secondsLeft: 0,
      isActive: false,
    });
    expect(timers.list()).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it("pause keeps the time left and sends UPDATED; resume sends UPDATED and finishes later", () => {
    const { clock, events, timers } = setup();
    timers.start(60, "tea");
    clock.advance(20_000);
    timers.pause({ name: "TEA" });
    expect(events.at(-1)).toMatchObject({ type: TimerEvent.UPDATED, secondsLeft: 40, isActive: false });
    clock.advance(600_000); // paused: nothing happens
    expect(events).toHaveLength(2);
    expect(timers.list()[0]).toMatchObject({ secondsLeft: 40, isActive: false });
    timers.resume({ name: "tea" });
    expect(events.at(-1)).toMatchObject({ type: TimerEvent.UPDATED, secondsLeft: 40, isActive: true });
    clock.advance(40_000);
    expect(events.at(-1)).toMatchObject({ type: TimerEvent.FINISHED, name: "tea" });
  });

  it("cancels by id, by name, the only one, or all; a finished timer cannot be cancelled", () => {
    const { clock, events, timers } = setup();
    const a = timers.start(100, "eggs");
    timers.start(200, "rice");
    timers.start(300);
    expect(timers.cancel({ id: a.id })).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({ type: TimerEvent.CANCELLED, timerId: a.id, isActive: false });
    expect(() => timers.cancel({})).toThrow(/there are 2 timers \("rice", timer-3\): say which one/);
    timers.cancel({ name: "Rice" });
    expect(timers.cancel({})[0]!.id).toBe("timer-3"); // the only one left
    timers.start(5, "x");
    timers.start(6, "y");
    expect(timers.cancel({ all: true })).toHaveLength(2);
    expect(() => timers.cancel({ name: "x" })).toThrow(new TimerError("there is no timer"));
    clock.advance(10_000);
    expect(events.filter((e) => e.type === TimerEvent.FINISHED)).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it("refuses durations outside 1 s to 24 h and more than 20 timers", () => {
    const { timers } = setup();
    expect(() => timers.start(0)).toThrow(TimerError);
    expect(() => timers.start(24 * 3600 + 1)).toThrow(/between one second and 24 hours/);
    for (let i = 0; i < 20; i++) timers.start(60);
    expect(() => timers.start(60)).toThrow(/at most 20 timers/);
  });

  it("dispose drops everything silently", () => {
    const { clock, events, timers } = setup();
    timers.start(10);
    timers.dispose();
    clock.advance(20_000);
    expect(events).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });
});

describe("timer tools", () => {
  it("offer five function tools of server timers with object parameters", () => {
    const { tools } = setup();
    expect(tools.tools().map((t) => t.name)).toEqual([
      "start_timer",
      "cancel_timer",
      "pause_timer",
      "resume_timer",
      "list_timers",
    ]);
    for (const t of tools.tools()) {
      expect(t.server).toBe("timers");
      expect(t.parameters).toMatchObject({ type: "object", properties: expect.any(Object) });
    }
  });

  it("start_timer takes hours/minutes/seconds or duration_s; list and cancel answer in words the model can use", async () => {
    const { call, clock, events } = setup();
    const started = await call("start_timer", { minutes: 5, seconds: 30, name: "pizza" });
    expect(started).toMatchObject({ ok: true, outcome: "success", server: "timers", tool: "start_timer" });
    expect(JSON.parse(started.output)).toEqual({
      started: {
        id: "timer-1",
        name: "pizza",
        total: "5 minutes 30 seconds",
        left: "5 minutes 30 seconds",
        paused: false,
      },
    });
    await call("start_timer", { duration_s: 3600 });
    clock.advance(61_000);
    const listed = JSON.parse((await call("list_timers", {})).output) as { timers: { left: string }[] };
    expect(listed.timers.map((t) => t.left)).toEqual(["4 minutes 29 seconds", "58 minutes 59 seconds"]);
    const cancelled = await call("cancel_timer", { name: "pizza" });
    expect(JSON.parse(cancelled.output)).toMatchObject({ cancelled: [{ name: "pizza" }] });
    expect(events.map((e) => e.type)).toEqual([TimerEvent.STARTED, TimerEvent.STARTED, TimerEvent.CANCELLED]);
    const paused = await call("pause_timer", {});
    expect(JSON.parse(paused.output)).toMatchObject({ paused: [{ paused: true }] });
    await call("resume_timer", { id: "timer-2" });
    expect(events.map((e) => e.type).slice(3)).toEqual([TimerEvent.UPDATED, TimerEvent.UPDATED]);
  });

  it("bad arguments, impossible requests and unknown tools come back as ok:false, never thrown", async () => {
    const { call, tools } = setup();
    expect(await call("start_timer", { minutes: -1 })).toMatchObject({ ok: false, outcome: "bad_arguments" });
    expect(await call("start_timer", { minutes: 1, color: "red" })).toMatchObject({
      ok: false,
      outcome: "bad_arguments",
    });
    expect(await tools.callTool("start_timer", "{not json")).toMatchObject({
      ok: false,
      outcome: "bad_arguments",
      output: "the arguments are not valid JSON",
    });
    expect(await call("start_timer", {})).toMatchObject({
      ok: false,
      outcome: "error",
      output: "a timer lasts between one second and 24 hours",
    });
    expect(await call("cancel_timer", { name: "nothing" })).toMatchObject({
      ok: false,
      output: "there is no timer",
    });
    expect(await call("set_alarm", {})).toMatchObject({ ok: false, outcome: "unknown_tool" });
    expect((await tools.callTool("list_timers", "")).ok).toBe(true);
  });

  it("withDeviceTools lists the device's tools after the MCP tools and routes calls by name", async () => {
    const { tools } = setup();
    const calls: string[] = [];
    const mcpTool: RoutedTool = {
      name: "HassTurnOn",
      description: "",
      parameters: { type: "object", properties: {} },
      server: "home_assistant",
      tool: "HassTurnOn",
    };
    const clash: RoutedTool = { ...mcpTool, name: "list_timers", tool: "list_timers" };
    const base: ToolProvider = {
      tools: () => [mcpTool, clash],
      callTool: (name) => {
        calls.push(name);
        return Promise.resolve({ ok: true, output: "done", durationMs: 1, outcome: "success" });
      },
      onToolsChanged: () => () => undefined,
      status: () => [],
    };
    const both = withDeviceTools(base, tools);
    expect(both.tools().map((t) => `${t.server}:${t.name}`)).toEqual([
      "home_assistant:HassTurnOn",
      "timers:start_timer",
      "timers:cancel_timer",
      "timers:pause_timer",
      "timers:resume_timer",
      "timers:list_timers",
    ]);
    await both.callTool("HassTurnOn", "{}");
    const listed = await both.callTool("list_timers", "{}");
    expect(listed.server).toBe("timers");
    expect(calls).toEqual(["HassTurnOn"]);
  });

  it("spokenDuration", () => {
    expect(spokenDuration(3661)).toBe("1 hour 1 minute 1 second");
    expect(spokenDuration(7200)).toBe("2 hours");
    expect(spokenDuration(0)).toBe("0 seconds");
  });
});
