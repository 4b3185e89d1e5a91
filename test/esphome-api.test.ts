/**
 * The ESPHome API client (src/esphome/api) against the device emulator (test/esphome/emulator), over
 * real TCP on 127.0.0.1; the media player's start rule against a small HTTP server on 127.0.0.1.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import {
  DeviceConnectError,
  TimerEventType,
  VoiceEvent,
  VoiceFeature,
  connectDevice,
  connectFailure,
  probeVoiceOwner,
  type DeviceConnection,
  type VoiceRequest,
} from "../src/esphome/api/index.js";
import {
  LINUX_VOICE_ASSISTANT_FLAGS,
  VOICE_PE_FLAGS,
  startEmulatedDevice,
  type EmulatedDevice,
} from "./esphome/emulator/index.js";
import { fileTypeOf, mp3Info, wavInfo } from "./esphome/emulator/media-player.js";

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function device(o: Parameters<typeof startEmulatedDevice>[0] = {}): Promise<EmulatedDevice> {
  const d = await startEmulatedDevice(o);
  cleanups.push(() => d.close());
  return d;
}

async function connect(
  d: EmulatedDevice,
  o: { encryptionKey?: string; clientInfo?: string } = {},
): Promise<DeviceConnection> {
  const c = await connectDevice({
    host: d.host,
    port: d.port,
    clientInfo: o.clientInfo ?? "OpenVoice MCP",
    timeoutMs: 5000,
    logger,
    ...(o.encryptionKey ? { encryptionKey: o.encryptionKey } : {}),
  });
  cleanups.push(() => c.close());
  return c;
}

async function connectError(p: Promise<unknown>): Promise<DeviceConnectError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DeviceConnectError);
    return err as DeviceConnectError;
  }
  throw new Error("connected, but a failure was expected");
}

const until = async (pred: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("connect", () => {
  it("connects without encryption and reads DeviceInfo", async () => {
    const d = await device({ name: "voice-pe-test", macAddress: "AA:BB:CC:DD:EE:FF" });
    const c = await connect(d);
    expect(c.info).toMatchObject({
      name: "voice-pe-test",
      macAddress: "AA:BB:CC:DD:EE:FF",
      voiceFeatures: 61,
    });
    expect(c.info.voiceFeatures & VoiceFeature.ANNOUNCE).toBeTruthy();
    expect(c.info.voiceFeatures & VoiceFeature.SPEAKER).toBe(0);
  });

  it("connects with Noise and reads the linux-voice-assistant flags", async () => {
    const key = randomBytes(32).toString("base64");
    const d = await device({ encryptionKey: key, featureFlags: LINUX_VOICE_ASSISTANT_FLAGS, name: "lva" });
    const c = await connect(d, { encryptionKey: key });
    expect(c.info.name).toBe("lva");
    expect(c.info.voiceFeatures).toBe(LINUX_VOICE_ASSISTANT_FLAGS);
    expect(VOICE_PE_FLAGS).toBe(61);
  });

  it("a wrong key is bad_key with words, and the key is not in them", async () => {
    const key = randomBytes(32).toString("base64");
    const wrong = randomBytes(32).toString("base64");
    const d = await device({ encryptionKey: key });
    const err = await connectError(connect(d, { encryptionKey: wrong }));
    expect(err.code).toBe("bad_key");
    expect(err.message).toBe("the encryption key does not match");
    expect(err.message).not.toContain(wrong);
  });

  it("a missing key is key_required", async () => {
    const d = await device({ encryptionKey: randomBytes(32).toString("base64") });
    const err = await connectError(connect(d));
    expect(err.code).toBe("key_required");
    expect(err.message).toBe("the device needs an encryption key");
  });

  it("a malformed key is bad_key", async () => {
    const d = await device({ encryptionKey: randomBytes(32).toString("base64") });
    const err = await connectError(connect(d, { encryptionKey: "bm90LWEta2V5" }));
    expect(err.code).toBe("bad_key");
  });

  it("nothing listening is unreachable with the reason", async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const err = await connectError(
      connectDevice({ host: "127.0.0.1", port, clientInfo: "t", timeoutMs: 2000, logger }),
    );
    expect(err.code).toBe("unreachable");
    expect(err.message).toBe(`cannot reach 127.0.0.1:${port} (ECONNREFUSED)`);
  });

  it("a silent peer is a timeout", async () => {
    const held: net.Socket[] = [];
    const srv = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    cleanups.push(() => {
      held.forEach((s) => s.destroy());
      return new Promise<void>((r) => srv.close(() => r()));
    });
    const port = (srv.address() as net.AddressInfo).port;
    const err = await connectError(
      connectDevice({ host: "127.0.0.1", port, clientInfo: "t", timeoutMs: 500, logger }),
    );
    expect(err.code).toBe("timeout");
  });

  it("maps library and socket errors without passing their text on", () => {
    const refused = Object.assign(new Error("x"), { code: "EHOSTUNREACH" });
    expect(connectFailure(new Error("wrapped", { cause: refused }), "h:1", 1000).message).toBe(
      "cannot reach h:1 (EHOSTUNREACH)",
    );
    const odd = connectFailure(
      Object.assign(new Error("psk=secret"), { name: "DecodingError" }),
      "h:1",
      1000,
    );
    expect(odd.code).toBe("protocol");
    expect(odd.message).not.toContain("secret");
  });

  it("close is emitted once, when the device goes away", async () => {
    const d = await device();
    const c = await connect(d);
    const closes: string[] = [];
    c.on("close", ({ reason }) => closes.push(reason));
    await d.close();
    await until(() => closes.length > 0);
    c.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(closes).toHaveLength(1);
  });
});
