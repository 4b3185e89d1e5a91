/**
 * What the voice costs (pure): the per-model price table and the arithmetic that turns a Realtime
 * `response.done` usage or an input transcription's usage into US dollars.
 *
 * Prices are USD per million tokens (`per_minute`: USD per minute of audio, for transcription billed by
 * duration). The defaults are OpenAI's published list prices (dated in DOCS.md, "What it costs");
 * `cost.prices` entries replace a model's defaults field by field.
 */
import type { RealtimeResponseUsage } from "openai/resources/realtime/realtime";

export const PRICE_FIELDS = [
  "input_text",
  "input_audio",
  "input_image",
  "cached_text",
  "cached_audio",
  "cached_image",
  "output_text",
  "output_audio",
] as const;
export type TokenPriceField = (typeof PRICE_FIELDS)[number];

/** USD per million tokens of each kind; `per_minute` USD per minute of transcribed audio. */
export type ModelPrice = Partial<Record<TokenPriceField | "per_minute", number>>;

/** One `cost.prices` entry. */
export interface PriceOverride extends ModelPrice {
  readonly model: string;
}

/** Token counts by kind: each token of a response counted once (cached ones only as cached). */
export type TokenCounts = Record<TokenPriceField, number>;

/** Per-modality prices as a model page lists them: [input, cached input, output]; images are input only. */
const tokens = (
  text: [input: number, cached: number, output: number],
  audio: [input: number, cached: number, output: number],
  image?: [input: number, cached: number],
): ModelPrice => ({
  input_text: text[0],
  cached_text: text[1],
  output_text: text[2],
  input_audio: audio[0],
  cached_audio: audio[1],
  output_audio: audio[2],
  ...(image ? { input_image: image[0], cached_image: image[1] } : {}),
});

/**
 * OpenAI's published prices, from each model's page (developers.openai.com/api/docs/models/<model>),
 * read 2026-12-06 (see DOCS.md). Keys are model names without a date suffix. A kind a page does not
 * list (images on the preview models) has no price: usage of it is "no price known", never free.
 */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = {
  "gpt-realtime": tokens([4, 0.4, 16], [32, 0.4, 64], [5, 0.5]),
  "gpt-realtime-1.5": tokens([4, 0.4, 16], [32, 0.4, 64], [5, 0.5]),
  "gpt-realtime-2": tokens([4, 0.4, 24], [32, 0.4, 64], [5, 0.5]),
  "gpt-realtime-mini": tokens([0.6, 0.06, 2.4], [10, 0.3, 20], [0.8, 0.08]),
  "gpt-realtime-2.1-mini": tokens([0.6, 0.06, 2.4], [10, 0.3, 20], [0.8, 0.08]),
  "gpt-4o-realtime-preview": tokens([5, 2.5, 20], [40, 2.5, 80]),
  "gpt-4o-mini-realtime-preview": tokens([0.6, 0.3, 2.4], [10, 0.3, 20]),
  "whisper-1": { per_minute: 0.006 },
  "gpt-realtime-whisper": { per_minute: 0.017 },
  "gpt-transcribe": { per_minute: 0.0045 },
  "gpt-4o-transcribe": { input_text: 2.5, input_audio: 6, output_text: 10 },
  "gpt-4o-mini-transcribe": { input_text: 1.25, input_audio: 3, output_text: 5 },
};

/** A dated snapshot (`gpt-realtime-2025-08-28`) is priced as its model. */
const DATE_SUFFIX = /-\d{4}-\d{2}-\d{2}$/;

export class PriceTable {
  readonly #overrides = new Map<string, ModelPrice>();

  constructor(overrides: readonly PriceOverride[] = []) {
    for (const { model, ...price } of overrides) this.#overrides.set(model, price);
  }

  /**
   * The price of `model`: the override for the exact name, else for its undated name, over the default
   * of the exact or undated name. Undefined when neither knows the model ("no price known").
   */
  of(model: string): ModelPrice | undefined {
    const base = model.replace(DATE_SUFFIX, "");
    const fallback = DEFAULT_PRICES[model] ?? DEFAULT_PRICES[base];
    const override = this.#overrides.get(model) ?? this.#overrides.get(base);
    if (fallback === undefined && override === undefined) return undefined;
    return { ...fallback, ...override };
  }
}

const n = (v: number | undefined): number => (v !== undefined && Number.isFinite(v) && v > 0 ? v : 0);

/**
 * Splits a `response.done` usage into token kinds, each token once. `input_tokens` includes the cached
 * tokens: they are taken out of their modality, by `cached_tokens_details` or, when it is absent, text
 * first, then audio, then image. Tokens a side's total has beyond its breakdown count as text.
 */
export function responseTokens(usage: RealtimeResponseUsage): TokenCounts {
  const inDetails = usage.input_token_details ?? {};
  const outDetails = usage.output_token_details ?? {};
  const text = n(inDetails.text_tokens);
  const audio = n(inDetails.audio_tokens);
  const image = n(inDetails.image_tokens);
  const cached = n(inDetails.cached_tokens);
  const split = inDetails.cached_tokens_details;
  let cachedText: number;
  let cachedAudio: number;
  let cachedImage: number;
  if (split !== undefined && split !== null) {
    cachedText = Math.min(text, n(split.text_tokens));
    cachedAudio = Math.min(audio, n(split.audio_tokens));
    cachedImage = Math.min(image, n(split.image_tokens));
  } else {
    cachedText = Math.min(text, cached);
    cachedAudio = Math.min(audio, cached - cachedText);
    cachedImage = Math.min(image, cached - cachedText - cachedAudio);
  }
  const cachedByModality = cachedText + cachedAudio + cachedImage;
  // Cached tokens of no known modality are priced as cached text and come out of the unexplained rest.
  const cachedOther = Math.max(0, cached - cachedByModality);
  const inputRest = Math.max(0, n(usage.input_tokens) - text - audio - image - cachedOther);
  const outText = n(outDetails.text_tokens);
  const outAudio = n(outDetails.audio_tokens);
  return {
    input_text: text - cachedText + inputRest,
    input_audio: audio - cachedAudio,
    input_image: image - cachedImage,
    cached_text: cachedText + cachedOther,
    cached_audio: cachedAudio,
    cached_image: cachedImage,
    output_text: outText + Math.max(0, n(usage.output_tokens) - outText - outAudio),
    output_audio: outAudio,
  };
}

/** The input transcription's usage (`conversation.item.input_audio_transcription.completed`). */
export type TranscriptionUsage =
  | {
      type: "tokens";
      input_tokens?: number;
      output_tokens?: number;
      input_token_details?: { audio_tokens?: number; text_tokens?: number };
    }
  | { type: "duration"; seconds: number };

/** Token kinds of a token-billed transcription (input audio/text, output text; nothing cached). */
export function transcriptionTokens(usage: Extract<TranscriptionUsage, { type: "tokens" }>): TokenCounts {
  const d = usage.input_token_details ?? {};
  const audio = n(d.audio_tokens);
  const text = n(d.text_tokens);
  const rest = Math.max(0, n(usage.input_tokens) - audio - text);
  return { ...ZERO_TOKENS, input_audio: audio, input_text: text + rest, output_text: n(usage.output_tokens) };
}

export const ZERO_TOKENS: Readonly<TokenCounts> = Object.freeze({
  input_text: 0,
  input_audio: 0,
  input_image: 0,
  cached_text: 0,
  cached_audio: 0,
  cached_image: 0,
  output_text: 0,
  output_audio: 0,
});

/** A priced usage: `usd` null when the model has no price for something it used ("no price known"). */
export interface Priced {
  readonly usd: number | null;
  readonly model: string;
}

/** USD for `counts` at `price`; null when a kind with tokens has no price. */
export function priceTokens(counts: TokenCounts, price: ModelPrice | undefined): number | null {
  let usd = 0;
  for (const kind of PRICE_FIELDS) {
    const count = counts[kind];
    if (count === 0) continue;
    const perMillion = price?.[kind];
    if (perMillion === undefined) return null;
    usd += (count * perMillion) / 1_000_000;
  }
  return usd;
}

/** The dollars of one `response.done` usage of `model`. */
export function priceResponse(table: PriceTable, model: string, usage: RealtimeResponseUsage): Priced {
  return { model, usd: priceTokens(responseTokens(usage), table.of(model)) };
}

/** The dollars of one input transcription of `model`, billed by tokens or by duration. */
export function priceTranscription(table: PriceTable, model: string, usage: TranscriptionUsage): Priced {
  const price = table.of(model);
  if (usage.type === "duration") {
    const perMinute = price?.per_minute;
    return { model, usd: perMinute === undefined ? null : (n(usage.seconds) / 60) * perMinute };
  }
  return { model, usd: priceTokens(transcriptionTokens(usage), price) };
}
