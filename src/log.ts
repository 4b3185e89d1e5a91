/**
 * One pino logger for the service; children per satellite / server. Every secret path is redacted.
 * Home Assistant's log level names are mapped onto pino's.
 */
import { pino, type Logger, type DestinationStream } from "pino";
import type { LogLevel } from "./config/model.js";

export type { Logger } from "pino";

const LEVEL_MAP: Record<LogLevel, pino.LevelWithSilent> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  notice: "info",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};

export function pinoLevel(level: LogLevel): pino.LevelWithSilent {
  return LEVEL_MAP[level];
}

/** Paths redacted wherever they appear in a log object (two levels deep covers our shapes). */
export const REDACT_PATHS = [
  "api_key",
  "*.api_key",
  "*.*.api_key",
  "token",
  "*.token",
  "*.*.token",
  "authorization",
  "*.authorization",
  "*.*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "*.headers.*",
  "*.*.headers.*",
  "req.headers.authorization",
  "req.headers.cookie",
  "env",
  "*.env",
  "*.*.env",
  "req.query.token",
  "password",
  "*.password",
];

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; stdout by default. Tests pass a stream to inspect output. */
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: pinoLevel(opts.level),
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
