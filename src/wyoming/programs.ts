/**
 * The three Assist programs over one `AssistSessions`, ready for `WyomingServer.register`.
 */
import type { Logger } from "../log.js";
import { createAsrProgram } from "./asr.js";
import { AssistSessions, type AssistSessionsOptions } from "./assist.js";
import { createHandleProgram } from "./handle.js";
import type { WyomingPrograms } from "./program.js";
import { createTtsProgram } from "./tts.js";

export interface AssistPrograms {
  readonly programs: Required<WyomingPrograms>;
  /** Opens the speaker session for text-to-speech ahead of the first call. Never rejects. */
  warmUp(): Promise<void>;
  /** Ends every conversation the programs started; call on shutdown. */
  close(): Promise<void>;
}

export function createAssistPrograms(
  opts: Omit<AssistSessionsOptions, "logger"> & { readonly logger: Logger },
): AssistPrograms {
  const logger = opts.logger.child({ component: "assist" });
  const sessions = new AssistSessions({ ...opts, logger });
  return {
    programs: {
      asr: createAsrProgram(sessions),
      handle: createHandleProgram(sessions),
      tts: createTtsProgram(sessions),
    },
    warmUp: async () => {
      try {
        await opts.engine.prepareSpeech?.();
      } catch (err) {
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, "no speaker session yet");
      }
    },
    close: () => sessions.close(),
  };
}
