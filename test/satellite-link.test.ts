/**
 * The satellite sockets' write path over real WebSockets on 127.0.0.1: neither the satellite port nor
 * the firmware port negotiates compression, and the frames a connection sends within one tick reach
 * the OS in one write.
 */
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { startFirmware, UZ_TOKEN, type FirmwareHarness } from "./firmware-helpers.js";
import { TestSatellite, startApp, tonePcm, type TestApp } from "./satellite-helpers.js";

let app: TestApp | null = null;
let firmware: FirmwareHarness | null = null;
const sockets: { close(): void }[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await app?.close();
  await firmware?.close();
  app = firmware = null;
});

/** A `ws` client that offers permessage-deflate (the `ws` default), once open. */
async function offeringDeflate(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers, perMessageDeflate: true });
  sockets.push({ close: () => ws.terminate() });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return ws;
}

describe("compression", () => {
  it("the satellite port accepts a client offering permessage-deflate with no extension", async () => {
    app = await startApp();
    const offered: (string | undefined)[] = [];
    app.app.server.on("upgrade", (req: { headers: Record<string, string | undefined> }) =>
      offered.push(req.headers["sec-websocket-extensions"]),
    );
    const ws = await offeringDeflate(app.url);
    expect(offered).toEqual([expect.stringContaining("permessage-deflate")]);
    expect(ws.extensions).toBe("");
  });

  it("the firmware port accepts a client offering permessage-deflate with no extension", async () => {
    firmware = await startFirmware({ dialects: ["underzenith"] });
    const ws = await offeringDeflate(firmware.url("/device/ws"), { Authorization: `Bearer ${UZ_TOKEN}` });
    expect(ws.extensions).toBe("");
  });
});

describe("write batching", () => {
  it("a burst of reply frames sent in one tick is one write to the OS, every frame intact", async () => {
    app = await startApp();
    const raw: Socket[] = [];
    app.app.server.on("connection", (s: Socket) => raw.push(s));
    const sat = await TestSatellite.connect(app.url);
    sockets.push(sat);
    await sat.hello();
    sat.send({ type: "turn.start" });
    await sat.waitJson("state", (m) => m.value === "listening");
    const conv = await app.source.nth(0);
    expect(raw).toHaveLength(1);

    // Count the stream's calls into the OS (Writable's implementer methods), from here on.
    const socket = raw[0]! as Socket & {
      _write(...args: unknown[]): void;
      _writev(...args: unknown[]): void;
    };
    let writes = 0;
    for (const name of ["_write", "_writev"] as const) {
      const original = socket[name].bind(socket);
      socket[name] = (...args: unknown[]) => {
        writes++;
        original(...args);
      };
    }
    const reply = tonePcm(500, 24000);
    conv.emit("response.start", { id: "r1" });
    conv.emit("audio", { responseId: "r1", itemId: "i1", pcm: reply });
    await new Promise((resolve) => setImmediate(resolve));
    // The 200 ms lead (ten 20 ms frames) went out at once, with the state change before it.
    expect(writes).toBe(1);
    await sat.waitJson("state", (m) => m.value === "speaking");
    await expect.poll(() => sat.audio().length).toBeGreaterThanOrEqual(10);
    for (const f of sat.audio().slice(0, 10)) expect(f.binary!.byteLength).toBe(640);
  });
});
