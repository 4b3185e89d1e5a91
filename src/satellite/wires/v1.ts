/**
 * Protocol v1 (DESIGN §5) on a `SatelliteConnection`: token check, `hello` → `session_ready`,
 * JSON messages → core intents, core events → JSON messages. Binary frames are microphone PCM16
 * at the hello's input rate and reply PCM16 at its output rate.
 */
import type { SatelliteErrorCode } from "../../errors.js";
import type { TokenMatch } from "../auth.js";
import type { SatelliteCore } from "../core.js";
import { SatelliteConnection, type SatelliteDeps } from "./connection.js";
import type { SatelliteLink } from "./link.js";
import {
  PROTOCOL_VERSION,
  encodeServerMessage,
  errorMessage,
  parseClientMessage,
  type ClientMessage,
  type Hello,
  type ServerMessage,
} from "./v1-protocol.js";

export class V1Wire extends SatelliteConnection {
  readonly wire = "v1";
  /** Set by a valid connect-time token; the hello may then omit its own. */
  #preAuth: TokenMatch | null = null;
  #hello: Hello | null = null;

  /**
   * @param connectToken the token from `Authorization: Bearer` or `?token=`, if any. A present but
   *   invalid token closes the socket with `unauthorized` (1008) at once.
   */
  constructor(link: SatelliteLink, deps: SatelliteDeps, connectToken?: string) {
    super(link, deps);
    this.awaitHandshake(this.limits.helloTimeoutMs);
    if (connectToken !== undefined) {
      this.#preAuth = deps.auth.verify(connectToken);
      if (this.#preAuth === null) this.fail("unauthorized");
    }
  }

  // ── inbound ──────────────────────────────────────────────────────────────────────────────

  protected onText(text: string): void {
    const parsed = parseClientMessage(text);
    if (this.#hello === null) {
      if (!parsed.ok)
        return this.fail(parsed.code === "unsupported_protocol" ? parsed.code : "bad_hello", parsed.message);
      if (parsed.msg.type !== "hello")
        return this.fail("bad_hello", `expected hello, got ${parsed.msg.type}`);
      return this.#onHello(parsed.msg);
    }
    if (!parsed.ok) return this.badFrame("bad_message", parsed.message);
    this.#onMessage(parsed.msg);
  }

  protected onBinary(data: Buffer): void {
    if (this.#hello === null) return this.fail("bad_hello", "binary frame before hello");
    this.micAudio(data);
  }

  #onHello(hello: Hello): void {
    let match = this.#preAuth;
    if (match === null) {
      if (hello.token === undefined)
        return this.fail("unauthorized", "no token: use a Bearer header, ?token= or hello.token");
      match = this.deps.auth.verify(hello.token);
      if (match === null) return this.fail("unauthorized");
    }
    if (match.kind === "device" && match.deviceId !== hello.client_id)
      return this.fail("unauthorized", "this token belongs to another device");
    this.#hello = hello;
    const device = {
      satelliteId: hello.client_id,
      name: hello.name,
      turn: hello.turn,
      audio: { inRate: hello.audio.in.rate, outRate: hello.audio.out.rate },
    };
    this.open(device, (core) => {
      this.#subscribe(core);
      this.#send({
        type: "session_ready",
        protocol: PROTOCOL_VERSION,
        session_id: this.sessionId,
        audio: { in: { rate: hello.audio.in.rate }, out: { rate: hello.audio.out.rate } },
        turn: hello.turn,
      });
      this.#send({ type: "state", value: core.state });
    });
  }

  #onMessage(msg: ClientMessage): void {
    const core = this.core;
    if (core === null) return;
    switch (msg.type) {
      case "hello":
        return this.badFrame("bad_message", "hello was already received");
      case "turn.start":
        this.log.debug({ wake_word: msg.wake_word }, "turn.start");
        return core.startTurn();
      case "turn.end":
        return core.endTurn();
      case "cancel":
        this.log.debug({ reason: msg.reason }, "cancel");
        return core.cancel();
      case "playback.done":
        return core.played(msg.played_ms);
      case "approval.reply":
        return core.answerApproval(msg.id, msg.approve);
    }
  }

  // ── outbound ─────────────────────────────────────────────────────────────────────────────

  #subscribe(core: SatelliteCore): void {
    core.on("state", (value) => this.#send({ type: "state", value }));
    core.on("response.start", ({ id }) => this.#send({ type: "response.start", id }));
    core.on("response.end", ({ id, reason }) => this.#send({ type: "response.end", id, reason }));
    core.on("clear", () => this.#send({ type: "playback.clear" }));
    core.on("transcript", (t) =>
      this.#send({ type: "transcript", role: t.role, text: t.text, final: t.final }),
    );
    core.on("tool", (t) => this.#send({ type: "tool", name: t.name, server: t.server, status: t.status }));
    core.on("approval", (a) =>
      this.#send({
        type: "approval.request",
        id: a.id,
        server: a.server,
        tool: a.tool,
        arguments: a.arguments,
        timeout_s: a.timeoutS,
      }),
    );
  }

  #send(msg: ServerMessage): void {
    this.sendText(encodeServerMessage(msg));
  }

  protected errorFrame(code: SatelliteErrorCode, message: string, fatal: boolean): string {
    const msg = errorMessage(code, message);
    msg.fatal = fatal;
    return encodeServerMessage(msg);
  }

  protected farewell(reason: string): void {
    this.#send({ type: "session.end", reason });
  }
}
