import { pino } from "pino";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseConfig, type LoadResult } from "../../src/config/load.js";
import { MASK, maskSecrets } from "../../src/config/mask.js";
import type { Config } from "../../src/config/model.js";
import { formatProblem } from "../../src/config/problems.js";
import { REDACT_PATHS } from "../../src/log.js";

const KEY = Buffer.alloc(32, 7).toString("base64");

function ok(r: LoadResult): Config {
  if (!r.ok) throw new Error(r.problems.map(formatProblem).join("\n"));
  return r.config;
}
const problems = (r: LoadResult): string[] => (r.ok ? [] : r.problems.map(formatProblem));
const yaml = (text: string): LoadResult => parseConfig(`openai: {api_key: sk-x}\n${text}`, "yaml", {});
const options = (esphome: unknown): LoadResult =>
  parseConfig(JSON.stringify({ openai: { api_key: "sk-x" }, esphome }), "options", {});

describe("esphome options", () => {
  it("defaults: on, discovering from /homeassistant, MP3 replies, no devices, no base URL", () => {
    const c = ok(yaml(""));
    expect(c.esphome).toEqual({
      enabled: true,
      discover: true,
      ha_config_dir: "/homeassistant",
      devices: [],
      reply_format: "mp3",
    });
  });

  it("reads a listed device with the default port, its key and take_over; the UI form too", () => {
    const c = ok(
      yaml(
        `esphome:\n  reply_format: wav\n  reply_base_url: http://192.168.1.5:8765\n  devices:\n` +
          `    - {name: kitchen, host: 192.168.1.20, encryption_key: "${KEY}", take_over: true}\n` +
          `    - {host: voice-pe.local, port: 6054}\n`,
      ),
    );
    expect(c.esphome.devices).toEqual([
      { name: "kitchen", host: "192.168.1.20", port: 6053, encryption_key: KEY, take_over: true },
      { host: "voice-pe.local", port: 6054 },
    ]);
    expect(c.esphome.reply_format).toBe("wav");
    expect(c.esphome.reply_base_url).toBe("http://192.168.1.5:8765");
    // The add-on UI sends empty strings for fields left empty.
    const ui = ok(
      options({ devices: [{ name: "", host: "10.0.0.9", encryption_key: "" }], reply_base_url: "" }),
    );
    expect(ui.esphome.devices).toEqual([{ host: "10.0.0.9", port: 6053 }]);
    expect(ui.esphome.reply_base_url).toBeUndefined();
  });

  it("says what is wrong with a key, a host, a format, and duplicates", () => {
    expect(problems(yaml(`esphome: {devices: [{host: 10.0.0.2, encryption_key: "not-a-key"}]}`))).toEqual([
      expect.stringMatching(/^esphome\.devices\[0\]\.encryption_key: .*44 characters of base64 \(32 bytes\)/),
    ]);
    expect(problems(yaml(`esphome: {devices: [{host: "http://x"}]}`))[0]).toMatch(
      /^esphome\.devices\[0\]\.host: a host name or an IP address/,
    );
    expect(problems(yaml(`esphome: {devices: [{name: kitchen}]}`))[0]).toMatch(
      /^esphome\.devices\[0\]\.host/,
    );
    expect(problems(yaml(`esphome: {reply_format: ogg}`))[0]).toMatch(/^esphome\.reply_format/);
    expect(problems(yaml(`esphome: {reply_base_url: "ftp://x"}`))[0]).toMatch(/^esphome\.reply_base_url/);
    expect(
      problems(yaml(`esphome: {devices: [{name: a, host: h}, {name: a, host: H, port: 6053}]}`)),
    ).toEqual([
      expect.stringMatching(/^esphome\.devices\[1\]\.name: duplicate device name "a"/),
      expect.stringMatching(/^esphome\.devices\[1\]\.host: two devices at h:6053/),
    ]);
  });

  it("masks encryption keys in the effective configuration and redacts keys in logs", () => {
    const c = ok(yaml(`esphome: {devices: [{host: 10.0.0.2, encryption_key: "${KEY}"}]}`));
    const masked = maskSecrets(c) as { esphome: { devices: { encryption_key: string }[] } };
    expect(masked.esphome.devices[0]!.encryption_key).toBe(MASK);

    let out = "";
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const logger = pino({ redact: REDACT_PATHS }, sink);
    logger.info(
      { noise_psk: KEY, device: { encryption_key: KEY }, entry: { data: { noise_psk: KEY } } },
      "x",
    );
    expect(out).toContain("[Redacted]");
    expect(out).not.toContain(KEY);
  });
});
