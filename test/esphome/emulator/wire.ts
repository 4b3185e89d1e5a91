/**
 * ESPHome API framing for the emulator, both roles (`api_frame_helper_plaintext.cpp`,
 * `api_frame_helper_noise.cpp`):
 * - plaintext: `0x00`, varint length, varint type, payload;
 * - Noise: `0x01`, 2-byte big-endian length, body. The client's first frame (its "hello", empty) is
 *   answered by the server hello (`0x01` protocol, node name NUL, MAC NUL); then the handshake
 *   messages, each led by a status byte (`0x00` ok, `0x01` + reason = rejected); then ciphertexts of
 *   `type (2 bytes BE), length (2 bytes BE), payload`.
 * A noise server answers a plaintext first byte with "Bad indicator byte" and closes.
 */
import type { Socket } from "node:net";
import { NoiseHandshake, type CipherState } from "./noise.js";
import { readVarint } from "./proto.js";

export type Role = "server" | "client";
type Phase = "client_hello" | "handshake" | "server_hello" | "data" | "closed";

export interface WireOptions {
  role: Role;
  /** base64 of 32 bytes: Noise; absent: plaintext. */
  psk?: Buffer;
  /** Server: the node name and MAC it announces in the server hello. */
  name?: string;
  mac?: string;
  onMessage: (type: number, payload: Buffer) => void;
  /** The handshake failed or the peer broke the framing; the socket is being closed. */
  onFailure?: (reason: string) => void;
  /** Client: the handshake finished and messages may be sent. */
  onReady?: () => void;
}

const PROLOGUE = Buffer.from("NoiseAPIInit", "ascii");
const MAX_FRAME = 65535;

function varint(v: number): Buffer {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return Buffer.from(out);
}

export class ApiWire {
  private buf: Buffer = Buffer.alloc(0);
  private phase: Phase;
  private hs: NoiseHandshake | null = null;
  private send_: CipherState | null = null;
  private recv: CipherState | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly o: WireOptions,
  ) {
    this.phase = o.psk ? (o.role === "server" ? "client_hello" : "server_hello") : "data";
    socket.on("data", (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      try {
        this.drain();
      } catch (err) {
        this.fail(err instanceof Error ? err.message : String(err));
      }
    });
    if (o.psk && o.role === "client") {
      // The client hello (empty) and the first handshake message go out together, as aioesphomeapi does.
      const hello = Buffer.alloc(0);
      this.hs = new NoiseHandshake(true, o.psk, Buffer.concat([PROLOGUE, Buffer.from([0, 0])]));
      this.writeNoiseFrame(hello);
      this.writeNoiseFrame(Buffer.concat([Buffer.from([0]), this.hs.writeMessage1()]));
    } else if (!o.psk && o.role === "client") {
      queueMicrotask(() => o.onReady?.());
    }
  }

  get ready(): boolean {
    return this.phase === "data";
  }

  send(type: number, payload: Buffer): void {
    if (this.phase !== "data" || this.socket.destroyed) return;
    if (!this.o.psk) {
      this.socket.write(Buffer.concat([Buffer.from([0]), varint(payload.length), varint(type), payload]));
      return;
    }
    const head = Buffer.alloc(4);
    head.writeUInt16BE(type, 0);
    head.writeUInt16BE(payload.length, 2);
    this.writeNoiseFrame(this.send_!.encrypt(Buffer.alloc(0), Buffer.concat([head, payload])));
  }

  private writeNoiseFrame(body: Buffer): void {
    const head = Buffer.from([1, 0, 0]);
    head.writeUInt16BE(body.length, 1);
    this.socket.write(Buffer.concat([head, body]));
  }

  private fail(reason: string): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.o.onFailure?.(reason);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 100).unref();
  }

  private reject(reason: string): void {
    this.writeNoiseFrame(Buffer.concat([Buffer.from([1]), Buffer.from(reason, "ascii")]));
    this.fail(reason);
  }

  private drain(): void {
    while (this.phase !== "closed") {
      if (!this.o.psk) {
        if (!this.takePlaintext()) return;
      } else if (!this.takeNoise()) return;
    }
  }

  private takePlaintext(): boolean {
    if (this.buf.length === 0) return false;
    if (this.buf[0] !== 0) {
      // A Noise client talking to a plaintext device: the device closes.
      this.fail("Bad indicator byte");
      return false;
    }
    const len = readVarint(this.buf, 1);
    if (!len) return false;
    const type = readVarint(this.buf, len.next);
    if (!type) return false;
    if (type.next + len.value > this.buf.length) return false;
    const payload = Buffer.from(this.buf.subarray(type.next, type.next + len.value));
    this.buf = this.buf.subarray(type.next + len.value);
    this.o.onMessage(type.value, payload);
    return true;
  }

  private takeNoise(): boolean {
    if (this.buf.length === 0) return false;
    if (this.buf[0] !== 1) {
      if (this.o.role === "server") this.reject("Bad indicator byte");
      else this.fail("the device answered in plaintext");
      return false;
    }
    if (this.buf.length < 3) return false;
    const size = this.buf.readUInt16BE(1);
    if (size > MAX_FRAME) throw new Error("frame too large");
    if (this.buf.length < 3 + size) return false;
    const body = Buffer.from(this.buf.subarray(3, 3 + size));
    this.buf = this.buf.subarray(3 + size);
    if (this.o.role === "server") this.serverFrame(body);
    else this.clientFrame(body);
    return true;
  }

  private serverFrame(body: Buffer): void {
    if (this.phase === "client_hello") {
      const size = Buffer.alloc(2);
      size.writeUInt16BE(body.length);
      this.hs = new NoiseHandshake(false, this.o.psk!, Buffer.concat([PROLOGUE, size, body]));
      const hello = Buffer.concat([
        Buffer.from([1]),
        Buffer.from(`${this.o.name ?? ""}\0`, "utf8"),
        Buffer.from(`${this.o.mac ?? ""}\0`, "utf8"),
      ]);
      this.writeNoiseFrame(hello);
      this.phase = "handshake";
      return;
    }
    if (this.phase === "handshake") {
      if (body.length === 0) return this.reject("Empty handshake message");
      if (body[0] !== 0) return this.reject("Bad handshake error byte");
      try {
        this.hs!.readMessage1(body.subarray(1));
      } catch {
        return this.reject("Handshake MAC failure");
      }
      this.writeNoiseFrame(Buffer.concat([Buffer.from([0]), this.hs!.writeMessage2()]));
      ({ send: this.send_, receive: this.recv } = this.hs!.split());
      this.phase = "data";
      return;
    }
    this.dataFrame(body);
  }

  private clientFrame(body: Buffer): void {
    if (this.phase === "server_hello") {
      if (body[0] !== 1) return this.fail("unsupported server hello");
      this.phase = "handshake";
      return;
    }
    if (this.phase === "handshake") {
      if (body[0] !== 0) return this.fail(`handshake rejected: ${body.subarray(1).toString("ascii")}`);
      this.hs!.readMessage2(body.subarray(1));
      ({ send: this.send_, receive: this.recv } = this.hs!.split());
      this.phase = "data";
      this.o.onReady?.();
      return;
    }
    this.dataFrame(body);
  }

  private dataFrame(body: Buffer): void {
    const plain = this.recv!.decrypt(Buffer.alloc(0), body);
    if (plain.length < 4) throw new Error("data frame too short");
    const type = plain.readUInt16BE(0);
    const len = plain.readUInt16BE(2);
    if (len > plain.length - 4) throw new Error("data frame length beyond its body");
    this.o.onMessage(type, Buffer.from(plain.subarray(4, 4 + len)));
  }
}
