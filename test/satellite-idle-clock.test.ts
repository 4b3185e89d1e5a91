import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { IdleClock } from "../src/satellite/idle-clock.js";

describe("IdleClock", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("fires once after the delay when nothing keeps it busy", () => {
    let idle = 0;
    const clock = new IdleClock({ delayMs: 1000, busy: () => false, onIdle: () => idle++ });
    clock.arm();
    vi.advanceTimersByTime(999);
    expect(idle).toBe(0);
    vi.advanceTimersByTime(1);
    expect([idle, clock.armed]).toEqual([1, false]);
    vi.advanceTimersByTime(5000);
    expect(idle).toBe(1);
  });

  it("re-arming starts over; clear stops it", () => {
    let idle = 0;
    const clock = new IdleClock({ delayMs: 1000, busy: () => false, onIdle: () => idle++ });
    clock.arm();
    vi.advanceTimersByTime(800);
    clock.arm();
    vi.advanceTimersByTime(800);
    expect(idle).toBe(0);
    clock.clear();
    vi.advanceTimersByTime(5000);
    expect([idle, clock.armed]).toEqual([0, false]);
  });

  it("a busy conversation waits another full delay", () => {
    let busy = true;
    let idle = 0;
    const clock = new IdleClock({ delayMs: 1000, busy: () => busy, onIdle: () => idle++ });
    clock.arm();
    vi.advanceTimersByTime(2500);
    expect([idle, clock.armed]).toEqual([0, true]);
    busy = false;
    vi.advanceTimersByTime(500);
    expect(idle).toBe(1);
  });
});
