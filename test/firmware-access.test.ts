/**
 * Who may use the firmware port: device entries with an address (config model), refused devices
 * listed for the UI, and the ingress Allow button (`POST /api/firmware/allow`) that persists them.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApprovalQueue } from "../src/approvals/queue.js";
import { ConfigSchema } from "../src/config/model.js";
import { ingressPlugin } from "../src/http/ingress.js";
import { AddressAllowList, normalizeAddress, parseAddressOrSubnet } from "../src/net/address.js";
import { FirmwareAccess } from "../src/satellite/firmware/access.js";
import { RuntimeState, STATE_FILE } from "../src/state/runtime-state.js";
import { PersistentServerAdmin } from "../src/state/server-admin.js";

const logger = pino({ level: "silent" });

describe("satellites.devices with an address", () => {
  const parse = (devices: unknown[]) =>
    ConfigSchema.safeParse({ openai: { api_key: "k" }, satellites: { devices, dialects: ["fjfricke"] } });

  it("accepts an address instead of a token, or both", () => {
    expect(parse([{ id: "kitchen", address: "192.168.1.50" }]).success).toBe(true);
    expect(parse([{ id: "hall", address: "fd00::5", token: "0123456789abcdef" }]).success).toBe(true);
  });

  it("refuses a device with neither, an address that is not an IP, two devices at one address, an unknown dialect", () => {
    expect(parse([{ id: "kitchen" }]).success).toBe(false);
    expect(parse([{ id: "kitchen", address: "kitchen.local" }]).success).toBe(false);
    expect(
      parse([
        { id: "a", address: "192.168.1.50" },
        { id: "b", address: "192.168.1.50" },
      ]).success,
    ).toBe(false);
    const dialect = ConfigSchema.safeParse({
      openai: { api_key: "k" },
      satellites: { dialects: ["xiaozhi"] },
    });
    expect(dialect.success).toBe(false);
  });

  it("parses addresses and subnets of both families, and nothing else", () => {
    expect(parseAddressOrSubnet("192.168.1.20")).toEqual({ address: "192.168.1.20", family: "ipv4" });
    expect(parseAddressOrSubnet(" 192.168.1.0/24 ")).toEqual({
      address: "192.168.1.0",
      prefix: 24,
      family: "ipv4",
    });
    expect(parseAddressOrSubnet("::1")).toEqual({ address: "::1", family: "ipv6" });
    expect(parseAddressOrSubnet("fd00::/8")).toEqual({ address: "fd00::", prefix: 8, family: "ipv6" });
    expect(parseAddressOrSubnet("FD00:0000:0:0:0:0:0:0005")?.family).toBe("ipv6");
    expect(parseAddressOrSubnet("::ffff:192.168.1.50")?.family).toBe("ipv6");
    for (const bad of [
      "fd00::zz",
      "1:2:3:4:5:6:7:8:9",
      ":::1",
      "192.168.1.256",
      "homeassistant.local",
      "",
      "fd00::/129",
      "10.0.0.0/33",
      "10.0.0.0/8/8",
    ])
      expect(parseAddressOrSubnet(bad), bad).toBeNull();
    const list = new AddressAllowList(["127.0.0.0/8", "::1", "fd00::/8"]);
    expect(list.allows("::1")).toBe(true);
    expect(list.allows("fd12::3")).toBe(true);
    expect(list.allows("::ffff:127.0.0.1")).toBe(true);
    expect(list.allows("fe80::1")).toBe(false);
  });

  it("reads IPv4-mapped peers as plain IPv4", () => {
    expect(normalizeAddress("::ffff:192.168.1.50")).toBe("192.168.1.50");
    expect(normalizeAddress("FD00::5")).toBe("fd00::5");
  });

  it("writes IPv6 in one form, so a configured fd00:0::5 is the peer fd00::5", () => {
    expect(normalizeAddress("fd00:0::5")).toBe("fd00::5");
    expect(normalizeAddress("FD00:0000:0:0:0:0:0:0005")).toBe("fd00::5");
    const access = new FirmwareAccess({
      devices: [{ id: "hall", address: "fd00:0::5" }],
      state: { allowedDevices: [], allowDevice: () => Promise.resolve() },
      logger,
    });
    expect(access.deviceAt(normalizeAddress("fd00::5"))).toEqual({ id: "hall" });
    // Two spellings of one address are one address.
    expect(
      parse([
        { id: "a", address: "fd00::5" },
        { id: "b", address: "fd00:0::5" },
      ]).success,
    ).toBe(false);
  });
});

describe("the Allow button: POST /api/firmware/allow", () => {
  let app: FastifyInstance;
  let dataDir: string;
  let access: FirmwareAccess;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "firmware-access-"));
    const state = await RuntimeState.load(dataDir, logger);
    access = new FirmwareAccess({ devices: [{ id: "kitchen", address: "192.168.1.10" }], state, logger });
    app = Fastify({ logger: false });
    await app.register(ingressPlugin, {
      servers: new PersistentServerAdmin({ targets: [], state, logger }),
      approvals: new ApprovalQueue({ timeoutS: 30 }),
      status: () => ({
        upstream: { state: "connected" },
        sessions: {},
        satellites: { connected: 0 },
        firmware: { port: 8080, dialects: ["fjfricke"], refused: access.refused() },
      }),
      satelliteToken: () => undefined,
      allowFirmwareDevice: (address) => access.allow(address),
      logger,
    });
    await app.ready();
  });
  afterEach(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("lists a refused device in the status, allows it, persists it, and forgets the refusal", async () => {
    expect(access.deviceAt("192.168.1.10")).toEqual({ id: "kitchen" });
    expect(access.deviceAt("192.168.1.50")).toBeNull();
    access.refuse("192.168.1.50", "fjfricke");
    access.refuse("192.168.1.50", "fjfricke");
    const status = (await app.inject({ method: "GET", url: "/api/status" })).json<{
      firmware: { refused: { address: string; dialect: string; attempts: number }[] };
    }>();
    expect(status.firmware.refused).toMatchObject([
      { address: "192.168.1.50", dialect: "fjfricke", attempts: 2 },
    ]);

    const res = await app.inject({
      method: "POST",
      url: "/api/firmware/allow",
      payload: { address: "192.168.1.50" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ address: "192.168.1.50", id: "fjfricke-192.168.1.50" });
    expect(access.deviceAt("192.168.1.50")).toEqual({ id: "fjfricke-192.168.1.50" });
    expect(access.refused()).toEqual([]);
    const onDisk = JSON.parse(await readFile(join(dataDir, STATE_FILE), "utf8")) as Record<string, unknown>;
    expect(onDisk).toEqual({
      version: 1,
      servers: {},
      allowed_devices: [{ id: "fjfricke-192.168.1.50", address: "192.168.1.50", dialect: "fjfricke" }],
    });
  });

  it("404 for an address that was not refused, 400 for a bad body; nothing is persisted", async () => {
    const unknown = await app.inject({
      method: "POST",
      url: "/api/firmware/allow",
      payload: { address: "10.0.0.9" },
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: { code: "not_found" } });
    const bad = await app.inject({ method: "POST", url: "/api/firmware/allow", payload: { ip: "10.0.0.9" } });
    expect(bad.statusCode).toBe(400);
    await expect(readFile(join(dataDir, STATE_FILE))).rejects.toThrow(/ENOENT/);
  });

  it("the page has the Firmware devices card and its script posts to the endpoint", async () => {
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.body).toContain('id="firmware-card"');
    const script = await app.inject({ method: "GET", url: "/admin.js" });
    expect(script.body).toContain("./api/firmware/allow");
    expect(script.body).toContain("tried to connect with the");
  });
});
