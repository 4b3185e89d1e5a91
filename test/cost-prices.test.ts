/**
 * The price arithmetic (pure): real `response.done` usage shapes with and without
 * `cached_tokens_details`, transcription billed by tokens and by duration, overrides, unknown models,
 * budgets and the calendar day.
 */
import type { RealtimeResponseUsage } from "openai/resources/realtime/realtime";
import { describe, expect, it } from "vitest";
import { budgetSentence, dayBefore, dayOf, refusal, usd, type DaySpend } from "../src/cost/budget.js";
import {
  PriceTable,
  priceResponse,
  priceTranscription,
  responseTokens,
  type TokenCounts,
} from "../src/cost/prices.js";

/** A response.done usage as the API sent it (gpt-realtime, a later turn of a conversation). */
const WITH_DETAILS: RealtimeResponseUsage = {
  total_tokens: 1821,
  input_tokens: 1789,
  output_tokens: 32,
  input_token_details: {
    text_tokens: 1313,
    audio_tokens: 476,
    image_tokens: 0,
    cached_tokens: 1152,
    cached_tokens_details: { text_tokens: 1024, audio_tokens: 128, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 9, audio_tokens: 23 },
};

/** Older sessions report `cached_tokens` without the per-modality split. */
const WITHOUT_DETAILS: RealtimeResponseUsage = {
  total_tokens: 1821,
  input_tokens: 1789,
  output_tokens: 32,
  input_token_details: { text_tokens: 1313, audio_tokens: 476, cached_tokens: 1152 },
  output_token_details: { text_tokens: 9, audio_tokens: 23 },
};

const sum = (t: TokenCounts): number => Object.values(t).reduce((a, b) => a + b, 0);
const table = new PriceTable();

describe("response usage", () => {
  it("prices every token kind once, by cached_tokens_details", () => {
    const t = responseTokens(WITH_DETAILS);
    expect(t).toEqual({
      input_text: 289,
      input_audio: 348,
      input_image: 0,
      cached_text: 1024,
      cached_audio: 128,
      cached_image: 0,
      output_text: 9,
      output_audio: 23,
    });
    expect(sum(t)).toBe(WITH_DETAILS.input_tokens! + WITH_DETAILS.output_tokens!);
    const expected = (289 * 4 + 348 * 32 + 1024 * 0.4 + 128 * 0.4 + 9 * 16 + 23 * 64) / 1e6;
    expect(priceResponse(table, "gpt-realtime", WITH_DETAILS).usd).toBeCloseTo(expected, 12);
  });

  it("without cached_tokens_details takes cached tokens from text first, then audio", () => {
    const t = responseTokens(WITHOUT_DETAILS);
    expect(t.cached_text).toBe(1152);
    expect(t.cached_audio).toBe(0);
    expect(t.input_text).toBe(1313 - 1152);
    expect(t.input_audio).toBe(476);
    expect(sum(t)).toBe(1821);
  });

  it("prices image tokens and cached images", () => {
    const usage: RealtimeResponseUsage = {
      input_tokens: 300,
      output_tokens: 0,
      input_token_details: {
        text_tokens: 100,
        image_tokens: 200,
        cached_tokens: 50,
        cached_tokens_details: { image_tokens: 50 },
      },
    };
    expect(priceResponse(table, "gpt-realtime", usage).usd).toBeCloseTo(
      (100 * 4 + 150 * 5 + 50 * 0.5) / 1e6,
      12,
    );
  });

  it("a dated snapshot uses its model's prices; an override replaces only the fields it names", () => {
    expect(priceResponse(table, "gpt-realtime-2025-08-28", WITH_DETAILS).usd).toBe(
      priceResponse(table, "gpt-realtime", WITH_DETAILS).usd,
    );
    const cheaper = new PriceTable([{ model: "gpt-realtime", output_audio: 32 }]);
    const delta = (23 * 64 - 23 * 32) / 1e6;
    expect(priceResponse(cheaper, "gpt-realtime", WITH_DETAILS).usd! + delta).toBeCloseTo(
      priceResponse(table, "gpt-realtime", WITH_DETAILS).usd!,
      12,
    );
  });

  it("an unknown model without an override has no price (never free); an override prices it", () => {
    expect(priceResponse(table, "my-proxy-model", WITH_DETAILS).usd).toBeNull();
    const priced = new PriceTable([
      {
        model: "my-proxy-model",
        input_text: 1,
        input_audio: 1,
        cached_text: 1,
        cached_audio: 1,
        output_text: 1,
        output_audio: 1,
      },
    ]);
    expect(priceResponse(priced, "my-proxy-model", WITH_DETAILS).usd).toBeCloseTo(1821 / 1e6, 12);
    // A kind used but not priced by the override: no price, rather than a silent zero.
    const partial = new PriceTable([{ model: "my-proxy-model", input_text: 1 }]);
    expect(priceResponse(partial, "my-proxy-model", WITH_DETAILS).usd).toBeNull();
  });

  it("an empty usage costs nothing", () => {
    expect(priceResponse(table, "gpt-realtime", {}).usd).toBe(0);
  });
});

describe("transcription usage", () => {
  it("by tokens (gpt-4o-mini-transcribe)", () => {
    const priced = priceTranscription(table, "gpt-4o-mini-transcribe", {
      type: "tokens",
      input_tokens: 120,
      output_tokens: 14,
      input_token_details: { audio_tokens: 110, text_tokens: 10 },
    });
    expect(priced.usd).toBeCloseTo((110 * 3 + 10 * 1.25 + 14 * 5) / 1e6, 12);
  });

  it("by duration (whisper-1)", () => {
    expect(priceTranscription(table, "whisper-1", { type: "duration", seconds: 90 }).usd).toBeCloseTo(
      0.009,
      12,
    );
    // A token-priced model billed by duration has no per-minute price: flagged, not free.
    expect(priceTranscription(table, "gpt-4o-transcribe", { type: "duration", seconds: 5 }).usd).toBeNull();
  });
});

describe("the built-in prices", () => {
  // OpenAI's model pages (developers.openai.com/api/docs/models/<model>), read 2026-12-06: USD per
  // million tokens as [input, cached input, output] per modality, or per minute of audio.
  const PUBLISHED: Record<string, { text?: number[]; audio?: number[]; image?: number[]; minute?: number }> =
    {
      "gpt-realtime": { text: [4, 0.4, 16], audio: [32, 0.4, 64], image: [5, 0.5] },
      "gpt-realtime-1.5": { text: [4, 0.4, 16], audio: [32, 0.4, 64], image: [5, 0.5] },
      "gpt-realtime-2": { text: [4, 0.4, 24], audio: [32, 0.4, 64], image: [5, 0.5] },
      "gpt-realtime-mini": { text: [0.6, 0.06, 2.4], audio: [10, 0.3, 20], image: [0.8, 0.08] },
      "gpt-realtime-2.1-mini": { text: [0.6, 0.06, 2.4], audio: [10, 0.3, 20], image: [0.8, 0.08] },
      "gpt-4o-realtime-preview": { text: [5, 2.5, 20], audio: [40, 2.5, 80] },
      "gpt-4o-mini-realtime-preview": { text: [0.6, 0.3, 2.4], audio: [10, 0.3, 20] },
      // Transcription: text in and out, audio in.
      "gpt-4o-transcribe": { text: [2.5, NaN, 10], audio: [6] },
      "gpt-4o-mini-transcribe": { text: [1.25, NaN, 5], audio: [3] },
      "whisper-1": { minute: 0.006 },
      "gpt-realtime-whisper": { minute: 0.017 },
      "gpt-transcribe": { minute: 0.0045 },
    };

  it("are OpenAI's published prices, and nothing a model page does not list", () => {
    for (const [model, p] of Object.entries(PUBLISHED)) {
      const expected: Record<string, number> = {};
      const put = (key: string, v: number | undefined): void => {
        if (v !== undefined && !Number.isNaN(v)) expected[key] = v;
      };
      put("input_text", p.text?.[0]);
      put("cached_text", p.text?.[1]);
      put("output_text", p.text?.[2]);
      put("input_audio", p.audio?.[0]);
      put("cached_audio", p.audio?.[1]);
      put("output_audio", p.audio?.[2]);
      put("input_image", p.image?.[0]);
      put("cached_image", p.image?.[1]);
      put("per_minute", p.minute);
      expect(table.of(model), model).toEqual(expected);
    }
  });
});

describe("the worked example of DOCS.md", () => {
  it("a one-minute exchange at the default settings costs $0.071", () => {
    const answer = (uncached: [number, number], cached: [number, number]): RealtimeResponseUsage => ({
      input_tokens: uncached[0] + uncached[1] + cached[0] + cached[1],
      output_tokens: 230,
      input_token_details: {
        text_tokens: uncached[0] + cached[0],
        audio_tokens: uncached[1] + cached[1],
        cached_tokens: cached[0] + cached[1],
        cached_tokens_details: { text_tokens: cached[0], audio_tokens: cached[1] },
      },
      output_token_details: { text_tokens: 30, audio_tokens: 200 },
    });
    const answers = [
      answer([1500, 100], [0, 0]),
      answer([30, 300], [1500, 100]),
      answer([30, 300], [1530, 400]),
    ].map((u) => priceResponse(table, "gpt-realtime", u).usd!);
    expect(answers.map((a) => a.toFixed(4))).toEqual(["0.0225", "0.0236", "0.0238"]);
    const transcription = priceTranscription(table, "gpt-4o-mini-transcribe", {
      type: "tokens",
      input_tokens: 300,
      output_tokens: 60,
      input_token_details: { audio_tokens: 300 },
    }).usd!;
    expect(transcription.toFixed(4)).toBe("0.0012");
    expect((answers.reduce((a, b) => a + b) + transcription).toFixed(3)).toBe("0.071");
    // "more than half of it the model's spoken answers (600 audio tokens at $64 per million, $0.038)"
    expect(((600 * 64) / 1e6).toFixed(3)).toBe("0.038");
    expect((600 * 64) / 1e6 / (answers.reduce((a, b) => a + b) + transcription)).toBeGreaterThan(0.5);
    // "Ten short commands a day (10 s each way, each a conversation of its own) cost about $0.23"
    const heard = priceTranscription(table, "gpt-4o-mini-transcribe", {
      type: "tokens",
      input_tokens: 100,
      output_tokens: 20,
      input_token_details: { audio_tokens: 100 },
    }).usd!;
    expect((10 * (answers[0]! + heard)).toFixed(2)).toBe("0.23");
  });
});

describe("budgets and days", () => {
  const day = (total: number, devices: Record<string, number> = {}, allowance = 0): DaySpend => ({
    totalUsd: total,
    allowanceUsd: allowance,
    device: (k) => (devices[k] === undefined ? undefined : { usd: devices[k], allowanceUsd: 0 }),
  });
  const s = { dailyUsd: 2, deviceDailyUsd: 0.5, warnPercent: 80 };

  it("refuses at the daily budget with the sentence, and one device at its own", () => {
    expect(refusal(s, day(1.99), { id: "kitchen", route: "v1" })).toBeNull();
    expect(refusal(s, day(2), { id: "kitchen", route: "v1" })).toBe(
      "Today's voice budget of $2.00 is used up; it resets at midnight.",
    );
    expect(refusal(s, day(0.6, { "v1:kitchen": 0.5 }), { id: "kitchen", route: "v1" })).toBe(
      budgetSentence(0.5, true),
    );
    expect(refusal(s, day(0.6, { "v1:kitchen": 0.5 }), { id: "office", route: "v1" })).toBeNull();
    // Allowed more today: the budget grows by it.
    expect(refusal(s, day(2.5, {}, 1), { id: "kitchen", route: "v1" })).toBeNull();
    expect(refusal({ warnPercent: 80 }, day(1000), { id: "kitchen", route: "v1" })).toBeNull();
  });

  it("formats dollars", () => {
    expect(usd(2)).toBe("$2.00");
    expect(usd(0.0042)).toBe("$0.0042");
  });

  it("days end at local midnight in the given time zone", () => {
    // 2026-03-01 22:59:59 UTC is 23:59:59 in Berlin (UTC+1): still Sunday there; a second later Monday.
    const before = Date.UTC(2026, 2, 1, 22, 59, 59);
    expect(dayOf(before, "Europe/Berlin")).toBe("2026-03-01");
    expect(dayOf(before + 1000, "Europe/Berlin")).toBe("2026-03-02");
    expect(dayOf(before + 1000, "UTC")).toBe("2026-03-01");
    expect(dayOf(before, "Not/A_Zone")).toBe("2026-03-01");
    expect(dayBefore("2026-03-01", 1)).toBe("2026-02-28");
  });
});

describe("dayOf without a formatter", () => {
  /** What a formatter says the day is in `timeZone`: the reference the fast paths must agree with. */
  const dayFormatter = (timeZone: string): Intl.DateTimeFormat =>
    new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit", timeZone });

  it("is the calendar date in UTC, the same as a formatter for the zone gives", () => {
    const formatter = dayFormatter("UTC");
    for (const iso of [
      "2026-03-01T23:59:59.999Z",
      "2026-03-02T00:00:00.000Z",
      "2024-02-29T12:00:00Z",
      "1999-12-31T23:00:00Z",
    ]) {
      const t = Date.parse(iso);
      expect(dayOf(t, "UTC")).toBe(formatter.format(new Date(t)));
    }
    expect(dayOf(Date.parse("2026-03-01T23:59:59.999Z"), "UTC")).toBe("2026-03-01");
  });

  it("reads a day in the process's own zone from the clock, as a formatter for the zone does", () => {
    const formatter = dayFormatter("Europe/Berlin");
    const saved = process.env.TZ;
    process.env.TZ = "Europe/Berlin";
    try {
      // Around both of 2026's clock changes in Berlin, and around midnight on either side of them.
      const instants = [
        "2026-03-28T22:59:59Z",
        "2026-03-28T23:00:00Z",
        "2026-03-29T00:59:59Z",
        "2026-03-29T01:00:00Z",
        "2026-03-29T21:59:59Z",
        "2026-03-29T22:00:00Z",
        "2026-10-24T21:59:59Z",
        "2026-10-24T22:00:00Z",
        "2026-10-25T22:59:59Z",
        "2026-10-25T23:00:00Z",
      ];
      for (const iso of instants) {
        const t = Date.parse(iso);
        expect(dayOf(t, "Europe/Berlin"), iso).toBe(formatter.format(new Date(t)));
      }
      expect(dayOf(Date.parse("2026-03-29T22:00:00Z"), "Europe/Berlin")).toBe("2026-03-30");
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});
