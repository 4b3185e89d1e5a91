/**
 * A fake OpenAI Realtime server (GA protocol) on 127.0.0.1 for tests and benchmarks.
 *
 * Usage:
 *   const fake = await startFakeRealtime({ apiKey: "sk-test", sessionSetupDelayMs: 0 });
 *   // point the engine at fake.url (ws://127.0.0.1:PORT/v1/realtime) with api key "sk-test"
 *   const conn = await fake.nextConnection();           // one FakeConnection per upstream socket
 *   await conn.waitFor("session.update");               // every client event is recorded in conn.received
 *   fake.script({ kind: "function_call", name: "echo", arguments: '{"message":"hi"}' }); // next response.create
 *   conn.drop();  conn.expire("close");  conn.expire("error");  conn.send({...GA server event...});
 *   await fake.close();
 *
 * Behaviour: checks `Authorization: Bearer <apiKey>` (401 otherwise) and rejects an `OpenAI-Beta`
 * header (400). Sends `session.created` (after `sessionSetupDelayMs`) and answers each `session.update`
 * with `session.updated` carrying the merged session. Every `type:"mcp"` tool newly present in an
 * update gets a `mcp_list_tools` item and `mcp_list_tools.in_progress → completed|failed` (scripted per
 * server_label through `mcp`). Appended audio drives a simple server VAD (RMS over 10 ms frames of the
 * appended PCM; audio time, not wall time): `speech_started` after `vad.speechMs` of loud audio,
 * `speech_stopped` + commit + user transcript after `vad.silenceMs` of quiet, then a response when
 * `create_response` is on. `response.create` plays the next scripted turn (default: a spoken reply of
 * `replyAudio` in `response.output_audio.delta` chunks, `audioSpeed` times faster than real time).
 * A second `response.create` while one is active gets `conversation_already_has_active_response`.
 * A function call turn is answered, on `function_call_output` + `response.create`, by a spoken answer
 * that quotes the output. An approval turn emits an `mcp_approval_request` item; an approving
 * `mcp_approval_response` runs the `mcp_call` (its output scripted), after which `response.create` speaks.
 * A commit (client or VAD) is transcribed (`transcribe(pcm)` or `userTranscript`): word deltas, then
 * `.completed` (or `.failed`), after or before the user item's `conversation.item.done` (`transcription`).
 * `turn_detection.create_response: false` commits turns without a response. An out-of-band `response.create`
 * (`response.conversation: "none"`) speaks the text of its `input` in `speechAudio(text, voice)` (the voice
 * named in the response, else the session's), echoes `metadata`,
 * runs beside any other response and adds nothing to the conversation.
 * Every server event is typed with the `openai` package's `RealtimeServerEvent`, so drift breaks the build.
 * The parts: `script.ts` (options, scripted turns, faults), `socket.ts` (one socket, session set-up and
 * tools), `input.ts` (input buffer, VAD, transcription), `connection.ts` (responses), `usage.ts`,
 * `audio.ts`. This file is the server and re-exports what tests use.
 */
import { EventEmitter } from "node:events";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import { tone } from "./audio.js";
import { FakeConnection } from "./connection.js";
import type { FakeFault, FakeRealtimeOptions, FakeTurn } from "./script.js";

export { rms, tone } from "./audio.js";
export { FakeConnection } from "./connection.js";
export type { FakeFault, FakeMcpScript, FakeRealtimeOptions, FakeTurn, FakeUpstreamError } from "./script.js";

export class FakeRealtimeServer extends EventEmitter<{ connection: [FakeConnection] }> {
  readonly opts: FakeRealtimeOptions;
  readonly connections: FakeConnection[] = [];
  /** Upgrade requests refused (bad key, beta header, wrong path). */
  readonly rejected: { status: number; reason: string }[] = [];
  readonly replyAudio: Buffer;
  readonly #wss: WebSocketServer;
  readonly #turns: FakeTurn[] = [];
  #taken = 0;
  /** The outage in force (see `fault`), or null. */
  faultMode: FakeFault | null = null;
  /** Connection attempts refused (or left silent) by a fault, since the server started. */
  faultAttempts = 0;

  constructor(wss: WebSocketServer, opts: FakeRealtimeOptions) {
    super();
    this.#wss = wss;
    this.opts = opts;
    this.replyAudio = opts.replyAudio ?? tone(400);
  }

  /** `ws://127.0.0.1:PORT/v1/realtime` (the engine appends `?model=`). */
  get url(): string {
    const { port } = this.#wss.address() as AddressInfo;
    return `ws://127.0.0.1:${port}/v1/realtime`;
  }

  /** Queues turns played by the next `response.create`s (any connection), in order. */
  script(...turns: FakeTurn[]): void {
    this.#turns.push(...turns);
  }

  takeTurn(): FakeTurn | undefined {
    return this.#turns.shift();
  }

  /** Resolves with the next connection not yet handed out by this method (waits if needed). */
  nextConnection(timeoutMs = 5000): Promise<FakeConnection> {
    const existing = this.connections[this.#taken];
    if (existing) {
      this.#taken++;
      return Promise.resolve(existing);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("connection", on);
        reject(new Error(`fake realtime: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (c: FakeConnection): void => {
        clearTimeout(timer);
        this.off("connection", on);
        this.#taken++;
        resolve(c);
      };
      this.on("connection", on);
    });
  }

  /**
   * Starts an outage: every connection attempt from now on is refused (`quota`, `bad_key`) or left
   * silent, for as long as it lasts, until `fault(null)`. `dropOpen` also cuts every open socket at once
   * without a close frame, as a network drop does.
   */
  fault(kind: FakeFault | null, opts: { dropOpen?: boolean } = {}): void {
    this.faultMode = kind;
    if (opts.dropOpen) for (const c of this.connections) if (!c.closed) c.drop();
  }

  /**
   * Drops the closed connections `nextConnection` has already handed out, so a long run (a benchmark
   * that opens hundreds a round) holds only what it still uses. Returns how many it dropped.
   */
  forgetClosed(): number {
    const handedOut = this.connections.slice(0, this.#taken);
    const kept = handedOut.filter((c) => !c.closed);
    this.connections.splice(0, this.#taken, ...kept);
    this.#taken = kept.length;
    return handedOut.length - kept.length;
  }

  /** Connections still open. */
  get open(): FakeConnection[] {
    return this.connections.filter((c) => !c.closed);
  }

  /** Terminates every socket and stops listening. */
  async close(): Promise<void> {
    for (const c of this.connections) if (!c.closed) c.drop();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeRealtime(opts: FakeRealtimeOptions = {}): Promise<FakeRealtimeServer> {
  const apiKey = opts.apiKey ?? "sk-test";
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    verifyClient: (info, cb) => {
      const req = info.req;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const refuse = (status: number, reason: string): void => {
        server.rejected.push({ status, reason });
        cb(false, status, reason);
      };
      if (path !== "/v1/realtime") return refuse(404, "Not Found");
      if (req.headers["openai-beta"] !== undefined)
        return refuse(400, "OpenAI-Beta header is not accepted by the GA API");
      if (req.headers.authorization !== `Bearer ${apiKey}`) return refuse(401, "Unauthorized");
      if (server.faultMode === "unavailable") {
        server.faultAttempts++;
        return refuse(503, "Service Unavailable");
      }
      cb(true);
    },
  });
  const server = new FakeRealtimeServer(wss, opts);
  wss.on("connection", (ws, req) => {
    const conn = new FakeConnection(ws, req, server);
    server.connections.push(conn);
    server.emit("connection", conn);
  });
  await new Promise<void>((resolve, reject) => {
    wss.once("listening", resolve);
    wss.once("error", reject);
  });
  return server;
}
