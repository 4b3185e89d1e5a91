/**
 * The `info` reply to `describe`: what Home Assistant needs to create the speech-to-text, conversation
 * and text-to-speech entities (its `WyomingService` keeps a platform for every installed program; the
 * entities take their names from the programs, their languages from installed models and voices, and
 * the TTS voice list from `voices`, shown by `description`).
 *
 * Only the programs actually served are listed: a kind with no registered program is left out, so Home
 * Assistant never offers an entity that would only answer `not_supported`.
 */
import { VOICES, type Config } from "../config/model.js";
import type {
  Attribution,
  AsrProgramInfo,
  HandleProgramInfo,
  InfoData,
  TtsProgramInfo,
  TtsVoiceInfo,
} from "./events.js";

/** Which programs are served, with the capability flags they declare. */
export interface ServedPrograms {
  readonly asr?: { readonly supportsTranscriptStreaming: boolean };
  readonly handle?: object;
  readonly tts?: { readonly supportsSynthesizeStreaming: boolean };
}

/** The display name of every program; Home Assistant names the entities after it. */
export const PROGRAM_NAME = "OpenVoice";

/** The project has no public home page of its own: both point at the API the programs are built on. */
const REALTIME_DOCS = "https://platform.openai.com/docs/guides/realtime";
const OPENVOICE: Attribution = { name: "OpenVoice MCP", url: REALTIME_DOCS };
const OPENAI: Attribution = { name: "OpenAI", url: REALTIME_DOCS };

const capitalised = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** Builds the `info` data from the configuration, the add-on's version and the served programs. */
export function buildInfo(config: Config, version: string, served: ServedPrograms): InfoData {
  const languages = [...config.wyoming.languages];
  const asr: AsrProgramInfo[] = served.asr
    ? [
        {
          name: PROGRAM_NAME,
          attribution: OPENVOICE,
          installed: true,
          description: "Speech to text by the OpenAI Realtime API, in the conversation that answers",
          version,
          models: [
            {
              name: config.openai.transcription_model,
              attribution: OPENAI,
              installed: true,
              description: `OpenAI ${config.openai.transcription_model} through the Realtime API`,
              version: null,
              languages,
            },
          ],
          supports_transcript_streaming: served.asr.supportsTranscriptStreaming,
          requires_external_vad: false,
          // Home Assistant's defaults: far-field microphones gain from them; the upstream expects clean speech.
          prefers_auto_gain_enabled: true,
          prefers_noise_reduction_enabled: true,
        },
      ]
    : [];
  const handle: HandleProgramInfo[] = served.handle
    ? [
        {
          name: PROGRAM_NAME,
          attribution: OPENVOICE,
          installed: true,
          description: "Conversation agent: the OpenAI Realtime model with your MCP tools",
          version,
          models: [
            {
              name: config.openai.model,
              attribution: OPENAI,
              installed: true,
              description: `OpenAI ${config.openai.model}`,
              version: null,
              languages,
            },
          ],
          supports_handled_streaming: false,
          supports_home_control: true,
        },
      ]
    : [];
  const voices: TtsVoiceInfo[] = VOICES.map((voice) => ({
    name: voice,
    attribution: OPENAI,
    installed: true,
    description:
      voice === config.openai.voice ? `${capitalised(voice)} (configured voice)` : capitalised(voice),
    version: null,
    languages,
    speakers: null,
  }));
  const tts: TtsProgramInfo[] = served.tts
    ? [
        {
          name: PROGRAM_NAME,
          attribution: OPENVOICE,
          installed: true,
          description: "The OpenAI Realtime model's own voice",
          version,
          voices,
          supports_synthesize_streaming: served.tts.supportsSynthesizeStreaming,
        },
      ]
    : [];
  return { asr, tts, handle, intent: [], wake: [], mic: [], snd: [] };
}
