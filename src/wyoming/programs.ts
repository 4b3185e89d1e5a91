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
  /** Ends every conversation the programs started; call on shutdown. */
  close(): Promise<void>;
}

export function createAssistPrograms(
  opts: Omit<AssistSessionsOptions, "logger"> & { readonly logger: Logger },
): AssistPrograms {
  const sessions = new AssistSessions({ ...opts, logger: opts.logger.child({ component: "assist" }) });
  return {
    programs: {
      asr: createAsrProgram(sessions),
      handle: createHandleProgram(sessions),
      tts: createTtsProgram(sessions),
    },
    close: () => sessions.close(),
  };
}
