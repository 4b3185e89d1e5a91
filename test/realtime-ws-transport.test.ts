/**
 * The `ws` transport against servers on loopback: the audio append's text on the wire (a plain `ws`
 * server), and the connect time limit (a TCP server that never answers the upgrade).
 */
import { once } from "node:events";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { UpstreamConnectError } from "../src/realtime/transport.js";
import { WsRealtimeTransport } from "../src/realtime/ws-transport.js";

let server: WebSocketServer | undefined;
let transport: WsRealtimeTransport | undefined;

afterEach(async () => {
  transport?.close();
  transport = undefined;
  if (server) {
    for (const c of server.clients) c.terminate();
    await new Promise<void>((r) => server!.close(() => r()));
  }
  server = undefined;
});

/** A transport connected to a server that records every frame it receives (a binary one as `<binary>`). */
async function connected(): Promise<{
  t: WsRealtimeTransport;
  frames: string[];
  arrived: (n: number) => Promise<void>;
}> {
  server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  const frames: string[] = [];
  let waiting: { n: number; resolve: () => void } | null = null;
  server.on("connection", (ws) =>
    ws.on("message", (data, isBinary) => {
      // The Realtime API takes events as text frames only.
      frames.push(isBinary ? "<binary>" : (data as Buffer).toString("utf8"));
      if (waiting && frames.length >= waiting.n) waiting.resolve();
    }),
  );
  const { port } = server.address() as AddressInfo;
  const t = new WsRealtimeTransport({
    url: `ws://127.0.0.1:${port}/v1/realtime`,
    apiKey: "sk-test",
    connectTimeoutMs: 5000,
  });
  transport = t;
  await t.connect();
  return {
    t,
    frames,
    arrived: (n) =>
      frames.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { n, resolve })),
  };
}

describe("WsRealtimeTransport.appendAudio", () => {
  it("writes the same text as send() of the same append, audio as base64 of the PCM", async () => {
    const { t, frames, arrived } = await connected();
    const pcm = Buffer.alloc(960);
    for (let i = 0; i < 480; i++) pcm.writeInt16LE(Math.round(12000 * Math.sin(i / 7)), i * 2);
    const event = { type: "input_audio_buffer.append" as const, audio: pcm.toString("base64") };
    expect(t.appendAudio(pcm)).toBe(true);
    expect(t.send(event)).toBe(true);
    // An odd-length chunk of a larger buffer: base64 of exactly these bytes, padding included.
    const odd = Buffer.from([0, 1, 2, 3, 4, 255, 254]).subarray(1, 6);
    expect(t.appendAudio(odd)).toBe(true);
    await arrived(3);
    expect(frames[0]).toBe(JSON.stringify(event));
    expect(frames[1]).toBe(frames[0]);
    expect(JSON.parse(frames[2]!)).toEqual({
      type: "input_audio_buffer.append",
      audio: odd.toString("base64"),
    });
    expect(Buffer.from((JSON.parse(frames[2]!) as { audio: string }).audio, "base64").equals(odd)).toBe(true);
  });

  it("drops the append (false) unless the connection is open", async () => {
    const unopened = new WsRealtimeTransport({
      url: "ws://127.0.0.1:1/v1/realtime",
      apiKey: "sk-test",
      connectTimeoutMs: 5000,
    });
    expect(unopened.appendAudio(Buffer.alloc(4))).toBe(false);
    const { t } = await connected();
    const closed = new Promise<void>((resolve) => (t.onclose = () => resolve()));
    for (const c of server!.clients) c.close(1000, "bye");
    await closed;
    expect(t.appendAudio(Buffer.alloc(4))).toBe(false);
  });
});

describe("WsRealtimeTransport.connect", () => {
  let silent: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
    silent = undefined;
  });

  it("gives up after connectTimeoutMs when the upgrade is never answered, and closes the socket", async () => {
    // Accepts the TCP connection and reads the upgrade request, but never replies.
    const accepted: Socket[] = [];
    silent = createServer((socket) => {
      accepted.push(socket);
      socket.resume();
    });
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const { port } = silent.address() as AddressInfo;
    const t = new WsRealtimeTransport({
      url: `ws://127.0.0.1:${port}/v1/realtime`,
      apiKey: "sk-test",
      connectTimeoutMs: 300,
    });
    const started = performance.now();
    const err = await t.connect().then(
      () => null,
      (e: unknown) => e,
    );
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(UpstreamConnectError);
    expect((err as UpstreamConnectError).outcome).toBe("timeout");
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(5000);
    expect(t.state).toBe("closed");
    expect(accepted).toHaveLength(1);
    // The transport let the socket go: the server side sees it end.
    if (!accepted[0]!.closed) await once(accepted[0]!, "close");
  });
});
