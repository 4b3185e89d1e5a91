/**
 * The ESPHome device manager through the whole service and its admin API, against emulated devices on
 * loopback: a wrong key and an unreachable device in words, a device that comes back, another client
 * owning the voice assistant, and taking over / giving back from the UI with the choice kept in /data.
 */
import { execFile } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { startEmulatedDevice, type EmulatedDevice } from "./esphome/emulator/index.js";
import { startHarness, utterance, type Harness } from "./esphome-helpers.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const OTHER_KEY = Buffer.alloc(32, 9).toString("base64");

const harnesses: Harness[] = [];
const servers: net.Server[] = [];
const emulators: EmulatedDevice[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  for (const d of emulators.splice(0)) await d.close();
  for (const h of harnesses.splice(0)) await h.close();
});

async function harness(o: Parameters<typeof startHarness>[0]): Promise<Harness> {
  const h = await startHarness(o);
  harnesses.push(h);
  return h;
}

/** A port nothing listens on (bound once, then freed). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("ESPHome devices", () => {
  it("a wrong key says so in words and the key is never shown", async () => {
    const h = await harness({
      devices: [{ encryptionKey: KEY }],
      entries: [{ name: "kitchen", encryption_key: OTHER_KEY }],
    });
    const d = await h.waitDevice("kitchen", (x) => x.error !== null);
    expect(d).toMatchObject({ connected: false, phase: "offline" });
    expect(d.error).toMatch(/encryption key does not match/);
    const body = JSON.stringify(await h.list());
    expect(body).not.toContain(KEY);
    expect(body).not.toContain(OTHER_KEY);
  });

  it("an unreachable device shows why and is served once it comes back, within the backoff", async () => {
    const port = await freePort();
    const dev = await startEmulatedDevice({ name: "office-node" });
    emulators.push(dev);
    const h3 = await harness({
      devices: [],
      esphome: { devices: [{ name: "office", host: "127.0.0.1", port, take_over: true }] },
    });
    const down = await h3.waitDevice("office", (x) => x.error !== null);
    expect(down.connected).toBe(false);
    expect(down.error).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
    const relay = net.createServer((inbound) => {
      const out = net.connect(dev.port, "127.0.0.1");
      inbound.pipe(out).pipe(inbound);
      inbound.on("error", () => out.destroy());
      out.on("error", () => inbound.destroy());
      inbound.on("close", () => out.destroy());
    });
    servers.push(relay);
    await new Promise<void>((r) => relay.listen(port, "127.0.0.1", r));
    const up = await h3.waitDevice("office", (x) => x.connected && x.owner === "openvoice", 10_000);
    expect(up.error).toBeNull();
    const run = await dev.wake(await utterance());
    expect(run.error).toBeNull();
  });

  it("another client owning the voice assistant is said in words; served once it lets go", async () => {
    const h = await harness({
      entries: [{ take_over: true }],
      overrides: { ownershipRounds: 3, ownershipRoundMs: 50, ownershipRetryMs: 200 },
    });
    const dev = h.devices[0]!;
    const ha = await dev.connectAsOtherClient("Home Assistant 2025.10.0");
    // Connected before the other client subscribed? Give it back and take over again, to start from its subscribe.
    await h.post(`/api/esphome/${dev.name}`, { take_over: false });
    const { json } = await h.post(`/api/esphome/${dev.name}`, { take_over: true });
    const shown = (json as { device: { error: string | null; owner: string | null } }).device;
    expect(dev.voiceOwner).toBe("Home Assistant 2025.10.0");
    expect(shown.owner).not.toBe("openvoice");
    expect(shown.error).toMatch(/Home Assistant (still owns|may still own|still answers)/);
    ha.close();
    await h.waitDevice(dev.name, (x) => x.owner === "openvoice" && x.error === null);
    expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);
  });

  it("take over and give back from the UI; the choice is kept in /data until the option changes", async () => {
    const h = await harness({});
    const dev = h.devices[0]!;
    const before = await h.waitDevice(dev.name, (x) => x.connected);
    expect(before).toMatchObject({ take_over: false, owner: null });
    expect(dev.voiceOwner).toBeNull();

    const on = await h.post(`/api/esphome/${dev.name}`, { take_over: true });
    expect(on.status).toBe(200);
    expect(on.json).toMatchObject({ device: { name: dev.name, take_over: true, owner: "openvoice" } });
    expect(dev.voiceOwner).toMatch(/^OpenVoice MCP /);

    const off = await h.post(`/api/esphome/${dev.name}`, { take_over: false });
    expect(off.json).toMatchObject({ device: { take_over: false } });
    await expect.poll(() => dev.voiceOwner).toBeNull();
    await h.post(`/api/esphome/${dev.name}`, { take_over: true });

    expect((await h.post("/api/esphome/nope", { take_over: true })).status).toBe(404);
    expect((await h.post(`/api/esphome/${dev.name}`, { take_over: "yes" })).status).toBe(400);
  });

  it("the UI's choice survives a restart, and an option that changed wins over it", async () => {
    const first = await harness({});
    const dev = first.devices[0]!;
    await first.waitDevice(dev.name, (x) => x.connected);
    await first.post(`/api/esphome/${dev.name}`, { take_over: true });
    const dataDir = first.dataDir;
    await first.app.close();

    // The same device keeps running: only the service restarts.
    const again = await harness({
      dataDir,
      devices: [],
      esphome: { devices: [{ host: dev.host, port: dev.port }] },
    });
    await again.waitDevice(dev.name, (x) => x.take_over && x.owner === "openvoice");
    // The UI gives it back: kept against the option as it is now (unset, false).
    await again.post(`/api/esphome/${dev.name}`, { take_over: false });
    await again.app.close();
    const restart = (take_over?: boolean): Promise<Harness> =>
      harness({
        dataDir,
        devices: [],
        esphome: {
          devices: [{ host: dev.host, port: dev.port, ...(take_over !== undefined ? { take_over } : {}) }],
        },
      });

    // The option changes to true: it wins over the UI's older "off".
    const third = await restart(true);
    await third.waitDevice(dev.name, (x) => x.take_over && x.owner === "openvoice");
    // The UI turns it off again while the option says true: the UI wins from now on...
    await third.post(`/api/esphome/${dev.name}`, { take_over: false });
    await third.app.close();
    const fourth = await restart(true);
    await fourth.waitDevice(dev.name, (x) => x.connected);
    await new Promise((r) => setTimeout(r, 300));
    expect((await fourth.list())[0]).toMatchObject({ take_over: false });
    expect(dev.voiceOwner).toBeNull();
    await fourth.app.close();
    // ...until the option changes again.
    const fifth = await restart(false);
    await fifth.waitDevice(dev.name, (x) => x.connected);
    await new Promise((r) => setTimeout(r, 300));
    expect((await fifth.list())[0]).toMatchObject({ take_over: false });
    await fifth.post(`/api/esphome/${dev.name}`, { take_over: true });
    await fifth.app.close();
    const sixth = await restart(false);
    await sixth.waitDevice(dev.name, (x) => x.take_over && x.owner === "openvoice");
  });

  it("start-up stays lean: the device manager, the turn and the API client load only once the service listens", async () => {
    const script = fileURLToPath(new URL("./esphome/lazy-service.mjs", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", script]);
    expect(JSON.parse(stdout)).toEqual({
      before: [],
      after: ["runtime", "devices", "turn", "esphome-client"],
    });
  });

  it("announce: 404 for an unknown device, 409 with words when not taken over", async () => {
    const h = await harness({});
    const dev = h.devices[0]!;
    await h.waitDevice(dev.name, (x) => x.connected);
    const missing = await h.post("/api/esphome/nope/announce", { text: "hello" });
    expect(missing.status).toBe(404);
    const refused = await h.post(`/api/esphome/${dev.name}/announce`, { text: "hello" });
    expect(refused.status).toBe(409);
    expect(JSON.stringify(refused.json)).toMatch(/Answer with OpenVoice/);
  });
});
