import { describe, expect, it } from "vitest";
import { createLogger, formatLogLine, pinoLevel } from "../src/log.js";

function capture(format: "line" | "json", level: "trace" | "info" | "warning" = "info") {
  const lines: string[] = [];
  const logger = createLogger({ level, format, destination: { write: (s: string) => void lines.push(s) } });
  return { logger, lines };
}

describe("log lines", () => {
  it("are readable: time LEVEL message key=value", () => {
    const { logger, lines } = capture("line");
    logger.child({ server: "filesystem" }).info({ tools: 3, note: "two words", ok: true }, "connected");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO connected server=filesystem tools=3 note="two words" ok=true\n$/,
    );
  });

  it("print errors with their message and stack frames", () => {
    const { logger, lines } = capture("line");
    logger.error({ err: new TypeError("bad thing") }, "failed");
    const [first, ...frames] = lines[0]!.trimEnd().split("\n");
    expect(first).toMatch(/ ERROR failed err="TypeError: bad thing"$/);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.every((f) => f.startsWith("    at "))).toBe(true);
  });

  it("pass non-JSON through unchanged", () => {
    expect(formatLogLine("plain text")).toBe("plain text\n");
  });

  it("map Home Assistant level names onto pino's", () => {
    expect(pinoLevel("notice")).toBe("info");
    expect(pinoLevel("warning")).toBe("warn");
    const { logger, lines } = capture("line", "warning");
    logger.info("hidden");
    logger.warn("shown");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(" WARN shown");
  });
});

describe("redaction", () => {
  it.each(["line", "json"] as const)("hides secrets in %s output", (format) => {
    const { logger, lines } = capture(format);
    logger.info(
      {
        api_key: "sk-live-secret",
        server: {
          authorization: "Bearer auth-secret",
          headers: { "x-key": "header-secret" },
          env: { T: "env-secret" },
        },
        satellite: { token: "sat-secret" },
        req: { headers: { authorization: "Bearer req-secret" }, query: { token: "query-secret" } },
      },
      "state",
    );
    const out = lines.join("");
    for (const secret of [
      "sk-live-secret",
      "auth-secret",
      "header-secret",
      "env-secret",
      "sat-secret",
      "req-secret",
      "query-secret",
    ])
      expect(out).not.toContain(secret);
    expect(out).toContain("[redacted]");
  });
});
