/**
 * A minimal protobuf codec for the api.proto messages the emulated device uses (esphome/esphome
 * `esphome/components/api/api.proto`). Written for the emulator alone: it shares nothing with the
 * client under test.
 */

export type FieldValue = number | Buffer;
export type Fields = Map<number, FieldValue[]>;

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

export class ProtoWriter {
  private readonly parts: Buffer[] = [];

  private varint(v: number): void {
    const out: number[] = [];
    let n = BigInt.asUintN(64, BigInt(Math.trunc(v)));
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n > 0n) b |= 0x80;
      out.push(b);
    } while (n > 0n);
    this.parts.push(Buffer.from(out));
  }

  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** uint32 / enum; proto3 leaves zero out. */
  uint(field: number, v: number): this {
    if (v !== 0) {
      this.key(field, VARINT);
      this.varint(v);
    }
    return this;
  }

  bool(field: number, v: boolean): this {
    return this.uint(field, v ? 1 : 0);
  }

  bytes(field: number, v: Buffer): this {
    if (v.length > 0) {
      this.key(field, LEN);
      this.varint(v.length);
      this.parts.push(v);
    }
    return this;
  }

  string(field: number, v: string): this {
    return this.bytes(field, Buffer.from(v, "utf8"));
  }

  /** Repeated and nested: written even when empty. */
  message(field: number, v: Buffer): this {
    this.key(field, LEN);
    this.varint(v.length);
    this.parts.push(v);
    return this;
  }

  float(field: number, v: number): this {
    if (v !== 0) {
      this.key(field, FIXED32);
      const b = Buffer.alloc(4);
      b.writeFloatLE(v);
      this.parts.push(b);
    }
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export function readVarint(buf: Buffer, at: number): { value: number; next: number } | null {
  let result = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length && i < at + 10; i++) {
    const b = buf[i] ?? 0;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value: Number(BigInt.asUintN(32, result)), next: i + 1 };
    shift += 7n;
  }
  return null;
}

/** Decodes one message into its fields; throws on a malformed message. */
export function decodeFields(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let at = 0;
  const push = (f: number, v: FieldValue): void => {
    const list = fields.get(f);
    if (list) list.push(v);
    else fields.set(f, [v]);
  };
  while (at < buf.length) {
    const key = readVarint(buf, at);
    if (!key) throw new Error("truncated field key");
    at = key.next;
    const field = key.value >>> 3;
    const wire = key.value & 7;
    if (wire === VARINT) {
      const v = readVarint(buf, at);
      if (!v) throw new Error("truncated varint");
      push(field, v.value);
      at = v.next;
    } else if (wire === LEN) {
      const len = readVarint(buf, at);
      if (!len || len.next + len.value > buf.length) throw new Error("truncated length-delimited field");
      push(field, buf.subarray(len.next, len.next + len.value));
      at = len.next + len.value;
    } else if (wire === FIXED32) {
      if (at + 4 > buf.length) throw new Error("truncated fixed32");
      push(field, buf.subarray(at, at + 4));
      at += 4;
    } else if (wire === FIXED64) {
      if (at + 8 > buf.length) throw new Error("truncated fixed64");
      push(field, buf.subarray(at, at + 8));
      at += 8;
    } else {
      throw new Error(`unknown wire type ${wire}`);
    }
  }
  return fields;
}

export const num = (f: Fields, n: number): number => {
  const v = f.get(n)?.[0];
  return typeof v === "number" ? v : 0;
};
export const str = (f: Fields, n: number): string => {
  const v = f.get(n)?.[0];
  return Buffer.isBuffer(v) ? v.toString("utf8") : "";
};
export const bufs = (f: Fields, n: number): Buffer[] =>
  (f.get(n) ?? []).filter((v): v is Buffer => Buffer.isBuffer(v));
export const float = (f: Fields, n: number): number => {
  const v = f.get(n)?.[0];
  return Buffer.isBuffer(v) && v.length === 4 ? v.readFloatLE(0) : 0;
};
