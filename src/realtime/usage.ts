/**
 * Usage an upstream session reports, of conversation and out-of-band responses alike and of input
 * transcription: counted in the token metrics and handed to the sink that prices it.
 */
import type { Config } from "../config/model.js";
import type { UsageSink } from "../cost/meter.js";
import { recordTokenUsage, type Metrics } from "../metrics.js";
import type { HandledEvent } from "./events.js";

/** Meters `e` when it carries usage (`response.done`, a completed input transcription); else nothing. */
export function meterUsage(
  e: HandledEvent,
  metrics: Metrics,
  sink: UsageSink | undefined,
  models: Pick<Config["openai"], "model" | "transcription_model">,
): void {
  if (e.type === "response.done" && e.response.usage) {
    recordTokenUsage(metrics, e.response.usage);
    sink?.response(models.model, e.response.usage);
  } else if (e.type === "conversation.item.input_audio_transcription.completed" && e.usage)
    sink?.transcription(models.transcription_model, e.usage);
}
