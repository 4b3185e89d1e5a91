/**
 * One pino logger for the service; children per satellite / server. Every secret path is redacted.
 * Home Assistant's log level names are mapped onto pino's.
 *
 * Output is either pino's JSON lines or, for the add-on log, readable lines
 * `2026-01-01T00:00:00.000Z INFO message key=value key2="two words"`. Both are written synchronously
 * on the calling thread (no worker transports), so nothing is lost when the process exits.
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
  "encryption_key",
  "*.encryption_key",
  "*.*.encryption_key",
  "noise_psk",
  "*.noise_psk",
  "*.*.noise_psk",
];

export type LogFormat = "line" | "json";

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; stdout by default. Tests pass a stream to inspect output. */
  destination?: DestinationStream;
  /** `line` (readable) by default on stdout; `json` by default when a destination is given. */
  format?: LogFormat;
}

/** A value as it appears after `key=`: bare when plain, JSON-quoted otherwise. */
function formatValue(v: unknown): string {
  if (typeof v === "string") return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  return JSON.stringify(v) ?? "undefined";
}

interface SerializedError {
  type?: string;
  message?: string;
  stack?: string;
}

/**
 * Turns one pino JSON record into a readable line. Errors (`err`) print as `err="Type: message"`
 * followed by their stack, indented, on the next lines. Returns the input unchanged if it is not a record.
 */
export function formatLogLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  const { time, level, msg, err, ...fields } = rec;
  let line = `${typeof time === "string" ? time : new Date().toISOString()} ${(typeof level === "string" ? level : "info").toUpperCase()}`;
  if (typeof msg === "string" && msg !== "") line += ` ${msg}`;
  for (const [k, v] of Object.entries(fields)) line += ` ${k}=${formatValue(v)}`;
  let stack = "";
  if (typeof err === "object" && err !== null) {
    const e = err as SerializedError;
    line += ` err=${formatValue(`${e.type ?? "Error"}: ${e.message ?? ""}`)}`;
    if (typeof e.stack === "string") {
      const frames = e.stack.split("\n").filter((l) => /^\s+at /.test(l));
      if (frames.length > 0) stack = `\n${frames.map((f) => `    ${f.trim()}`).join("\n")}`;
    }
  } else if (err !== undefined) {
    line += ` err=${formatValue(err)}`;
  }
  return `${line}${stack}\n`;
}

/** A destination that rewrites each pino record as a readable line before passing it on. */
export function lineDestination(target: DestinationStream): DestinationStream {
  return { write: (chunk: string) => target.write(formatLogLine(chunk)) };
}

export function createLogger(opts: LoggerOptions): Logger {
  const target = opts.destination ?? pino.destination({ fd: 1, sync: true });
  const format = opts.format ?? (opts.destination ? "json" : "line");
  return pino(
    {
      level: pinoLevel(opts.level),
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    format === "line" ? lineDestination(target) : target,
  );
}
