import { afterEach, describe, expect, it } from "vitest";
import { PlaybackPacer, type PacerClock } from "../src/audio/pacer.js";

/** A clock that moves only when told to, running due ticks in time order. */
class ManualClock implements PacerClock {
  #t = 0;
  readonly #tickers = new Set<{ ms: number; next: number; tick: () => void }>();

  now(): number {
    return this.#t;
  }

  every(ms: number, tick: () => void): () => void {
    const entry = { ms, next: this.#t + ms, tick };
    this.#tickers.add(entry);
    return () => this.#tickers.delete(entry);
  }

  get tickers(): number {
    return this.#tickers.size;
  }

  advance(ms: number): void {
    const end = this.#t + ms;
    for (;;) {
      let due: { ms: number; next: number; tick: () => void } | undefined;
      for (const e of this.#tickers) if (e.next <= end && (!due || e.next < due.next)) due = e;
      if (!due) break;
      this.#t = due.next;
      due.next += due.ms;
      due.tick();
    }
    this.#t = end;
  }
}

interface Sent {
  at: number;
  samples: Int16Array;
}

function setup(options: { frameMs?: number; leadMs?: number; maxQueueMs?: number } = {}) {
  const clock = new ManualClock();
  const sent: Sent[] = [];
  const pacer = new PlaybackPacer(
    (frame) => {
      expect(frame.length % 2).toBe(0);
      sent.push({
        at: clock.now(),
        samples: new Int16Array(frame.buffer, frame.byteOffset, frame.length / 2),
      });
    },
    { sampleRate: 16000, clock, ...options },
  );
  let drains = 0;
  pacer.on("drain", () => drains++);
  return { clock, sent, pacer, drains: () => drains };
}

/** A ramp so frames can be checked for order and completeness. */
function ramp(start: number, length: number): Int16Array {
  const x = new Int16Array(length);
  for (let i = 0; i < length; i++) x[i] = (start + i) % 30000;
  return x;
}

const ms = (samples: number): number => samples / 16;

describe("PlaybackPacer", () => {
  it("sends the 200 ms lead at once, then one 20 ms frame per 20 ms", () => {
    const { clock, sent, pacer } = setup();
    pacer.push(ramp(0, 16000), "item_1");
    expect(sent.length).toBe(10);
    expect(sent.every((f) => f.at === 0 && f.samples.length === 320)).toBe(true);
    clock.advance(1000);
    expect(sent.length).toBe(50);
    for (let k = 10; k < 50; k++) expect(sent[k]!.at, `frame ${k}`).toBe((k - 9) * 20);
    expect(pacer.queuedMs).toBe(0);
  });

  it("is paced, not dumped: never more than the lead ahead of real time", () => {
    const { clock, sent, pacer } = setup();
    pacer.push(ramp(0, 16000 * 5));
    for (let t = 0; t < 5000; t += 7) {
      clock.advance(7);
      const sentMs = ms(sent.reduce((n, f) => n + f.samples.length, 0));
      expect(sentMs).toBeLessThanOrEqual(clock.now() + 200 + 10);
      expect(sentMs).toBeGreaterThanOrEqual(Math.min(5000, clock.now() + 200 - 20));
    }
  });

  it("supports 40 ms frames and a custom lead", () => {
    const { clock, sent, pacer } = setup({ frameMs: 40, leadMs: 120 });
    pacer.push(ramp(0, 16000));
    expect(sent.map((f) => f.samples.length)).toEqual([640, 640, 640]);
    clock.advance(40);
    expect(sent.length).toBe(4);
  });

  it("delivers exactly the pushed audio, in order, whatever the chunking", () => {
    const { clock, sent, pacer } = setup();
    const audio = ramp(7, 16000 + 123);
    for (let at = 0, i = 0; at < audio.length; i++) {
      const n = [1, 333, 17, 4000, 2][i % 5]!;
      pacer.push(audio.subarray(at, at + n), "item_1");
      at += n;
    }
    pacer.end();
    clock.advance(2000);
    const got = new Int16Array(sent.reduce((n, f) => n + f.samples.length, 0));
    let at = 0;
    for (const f of sent) {
      got.set(f.samples, at);
      at += f.samples.length;
    }
    expect(Array.from(got)).toEqual(Array.from(audio));
    expect(sent.slice(0, -1).every((f) => f.samples.length === 320)).toBe(true);
    expect(sent[sent.length - 1]!.samples.length).toBe(123);
  });

  it("holds a partial frame until end(), then flushes it and emits drain once", () => {
    const { clock, sent, pacer, drains } = setup();
    pacer.push(ramp(0, 320 * 3 + 100));
    clock.advance(500);
    expect(sent.length).toBe(3);
    expect(pacer.queuedMs).toBeCloseTo(ms(100));
    expect(drains()).toBe(0);
    expect(clock.tickers).toBe(0); // nothing due until more audio or end()
    pacer.end();
    expect(sent.length).toBe(4);
    expect(sent[3]!.samples.length).toBe(100);
    expect(drains()).toBe(1);
    clock.advance(500);
    expect(drains()).toBe(1);
  });

  it("emits drain when the last whole frame goes out", () => {
    const { clock, pacer, drains } = setup();
    pacer.push(ramp(0, 320 * 20));
    expect(drains()).toBe(0);
    clock.advance(199);
    expect(drains()).toBe(0);
    clock.advance(1);
    expect(drains()).toBe(1);
    expect(clock.tickers).toBe(0);
  });

  it("clear() drops the queue at once and reports what was heard and sent", () => {
    const { clock, sent, pacer } = setup();
    pacer.push(ramp(0, 16000 * 2), "item_7");
    clock.advance(300);
    expect(pacer.active).toBe(true);
    const position = pacer.clear();
    expect(position).toEqual({ itemId: "item_7", playedMs: 300, sentMs: 500 });
    const count = sent.length;
    clock.advance(1000);
    expect(sent.length).toBe(count);
    expect(pacer.queuedMs).toBe(0);
    expect(pacer.active).toBe(false);
    expect(clock.tickers).toBe(0);
    expect(pacer.position()).toEqual({ itemId: undefined, playedMs: 0, sentMs: 0 });
  });

  it("estimates the play head from the clock, capped by what was sent", () => {
    const { clock, pacer } = setup();
    pacer.push(ramp(0, 16000 / 10), "a"); // 100 ms: all of it goes out at once
    clock.advance(40);
    expect(pacer.position()).toEqual({ itemId: "a", playedMs: 40, sentMs: 100 });
    clock.advance(500);
    expect(pacer.playedMs()).toBe(100);
    expect(pacer.active).toBe(false);
  });

  it("reports the position within the item at the play head when items follow each other", () => {
    const { clock, pacer } = setup();
    pacer.push(ramp(0, 1600), "first"); // 100 ms
    pacer.push(ramp(0, 16000), "second");
    clock.advance(60);
    expect(pacer.position()).toEqual({ itemId: "first", playedMs: 60, sentMs: 100 });
    clock.advance(90);
    // 150 ms heard: 100 of "first", 50 of "second". Sent: the 200 ms lead plus a frame per tick up to
    // t = 140, so 340 ms, 240 of them "second".
    expect(pacer.clear()).toEqual({ itemId: "second", playedMs: 50, sentMs: 240 });
  });

  it("restarts the lead after the device ran dry, keeping the item's position", () => {
    const { clock, sent, pacer } = setup();
    pacer.push(ramp(0, 1600), "slow"); // 100 ms, sent at once
    clock.advance(1000); // device played it and sat idle
    pacer.push(ramp(0, 16000), "slow");
    expect(sent.length).toBe(5 + 10); // a fresh 200 ms lead
    clock.advance(50);
    expect(pacer.position()).toEqual({ itemId: "slow", playedMs: 150, sentMs: 300 + 20 * 2 });
  });

  it("keeps memory bounded: audio beyond maxQueueMs is dropped and counted", () => {
    const { clock, sent, pacer } = setup({ maxQueueMs: 1000 });
    expect(pacer.push(ramp(0, 16000 * 1.5))).toBe(8000);
    expect(pacer.queuedMs).toBe(1000 - 200);
    expect(pacer.push(ramp(0, 16000))).toBe(16000 - 3200); // room for what the lead freed
    pacer.end();
    clock.advance(5000);
    expect(ms(sent.reduce((n, f) => n + f.samples.length, 0))).toBe(1200);
  });

  it("bookkeeping does not grow with the replies of a long connection", () => {
    const { clock, sent, pacer, drains } = setup();
    for (let reply = 0; reply < 2000; reply++) {
      pacer.push(ramp(0, 800), `item_${reply}`); // 50 ms
      pacer.end();
      clock.advance(100); // played out
      expect(pacer.bookkeeping().items, `reply ${reply}`).toBeLessThanOrEqual(2);
    }
    expect(drains()).toBe(2000);
    expect(ms(sent.reduce((n, f) => n + f.samples.length, 0))).toBe(2000 * 50);
    // Barge-in still reports the reply at the play head.
    pacer.push(ramp(0, 16000), "last");
    clock.advance(30);
    expect(pacer.clear()).toMatchObject({ itemId: "last", playedMs: 30 });
  });

  it("gives back the queue memory of a long reply once it has been sent", () => {
    const { clock, pacer } = setup();
    pacer.push(ramp(0, 16000 * 30), "long"); // 30 s arrive at once
    expect(pacer.bookkeeping().ringMs).toBeGreaterThanOrEqual(29_800);
    pacer.end();
    clock.advance(31_000);
    expect(pacer.queuedMs).toBe(0);
    expect(pacer.bookkeeping().ringMs).toBeLessThanOrEqual(1000);
    pacer.push(ramp(0, 16000 * 2), "next"); // still works after shrinking
    pacer.end();
    clock.advance(3000);
    expect(pacer.position()).toMatchObject({ itemId: "next", playedMs: 2000, sentMs: 2000 });
  });

  it("ignores pushes after close()", () => {
    const { clock, sent, pacer } = setup();
    pacer.push(ramp(0, 16000));
    pacer.close();
    pacer.close();
    expect(pacer.push(ramp(0, 320))).toBe(320);
    clock.advance(1000);
    expect(sent.length).toBe(10);
  });

  it("stops at once when the sender clears it mid-burst, without a drain", () => {
    const clock = new ManualClock();
    let frames = 0;
    let drained = false;
    const pacer: PlaybackPacer = new PlaybackPacer(
      () => {
        if (++frames === 3) pacer.clear();
      },
      { sampleRate: 16000, clock },
    );
    pacer.on("drain", () => (drained = true));
    pacer.push(ramp(0, 16000));
    clock.advance(1000);
    expect(frames).toBe(3);
    expect(drained).toBe(false);
    expect(clock.tickers).toBe(0);
  });

  it("rejects bad options", () => {
    const send = (): void => {};
    expect(() => new PlaybackPacer(send, { sampleRate: 16000, frameMs: 10 })).toThrow(RangeError);
    expect(() => new PlaybackPacer(send, { sampleRate: 16000, frameMs: 50 })).toThrow(RangeError);
    expect(() => new PlaybackPacer(send, { sampleRate: 16000, frameMs: 20.01 })).toThrow(RangeError);
    expect(() => new PlaybackPacer(send, { sampleRate: 16000, leadMs: 10 })).toThrow(RangeError);
    expect(() => new PlaybackPacer(send, { sampleRate: 0 })).toThrow(RangeError);
    expect(() => new PlaybackPacer(send, { sampleRate: 16000, maxQueueMs: 5 })).toThrow(RangeError);
  });
});

describe("PlaybackPacer on the system clock", () => {
  let pacer: PlaybackPacer | undefined;
  afterEach(() => pacer?.close());

  it("paces in real time with unref'd timers", async () => {
    const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timeouts();
    const sendTimes: number[] = [];
    const started = performance.now();
    pacer = new PlaybackPacer(() => sendTimes.push(performance.now() - started), { sampleRate: 24000 });
    const drained = new Promise<void>((resolve) => pacer!.once("drain", resolve));
    pacer.push(new Int16Array(24000 / 2)); // 500 ms
    expect(sendTimes.length).toBe(10);
    expect(timeouts()).toBe(before); // the pending ticker does not hold the process open
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([
      drained,
      new Promise((_, reject) => {
        guard = setTimeout(() => reject(new Error("no drain within 5 s")), 5000);
      }),
    ]).finally(() => clearTimeout(guard));
    expect(sendTimes.length).toBe(25);
    // 300 ms beyond the lead must take about 300 ms of wall time (generous bounds: shared machine).
    expect(sendTimes[24]!).toBeGreaterThanOrEqual(250);
    expect(sendTimes[24]!).toBeLessThan(3000);
  });
});
