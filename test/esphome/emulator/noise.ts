/**
 * Noise_NNpsk0_25519_ChaChaPoly_SHA256 (noiseprotocol.org rev. 34) with Node's crypto, both roles, as
 * the ESPHome API uses it (`api_frame_helper_noise.cpp`): prologue "NoiseAPIInit" + the client's first
 * frame (2-byte length + body), PSK = the 32-byte key, empty payloads. After the two handshake messages
 * `split()` gives the transport ciphers.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";

const PROTOCOL = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");
const TAG = 16;

function hmac(key: Buffer, data: Buffer): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function hkdf(ck: Buffer, ikm: Buffer, n: 2 | 3): Buffer[] {
  const temp = hmac(ck, ikm);
  const o1 = hmac(temp, Buffer.from([1]));
  const o2 = hmac(temp, Buffer.concat([o1, Buffer.from([2])]));
  if (n === 2) return [o1, o2];
  return [o1, o2, hmac(temp, Buffer.concat([o2, Buffer.from([3])]))];
}

function nonce(n: bigint): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64LE(n, 4);
  return b;
}

/** A Noise CipherState: ChaChaPoly with a counter nonce. */
export class CipherState {
  private n = 0n;
  constructor(private readonly k: Buffer) {}

  encrypt(ad: Buffer, plaintext: Buffer): Buffer {
    const c = createCipheriv("chacha20-poly1305", this.k, nonce(this.n++), { authTagLength: TAG });
    c.setAAD(ad, { plaintextLength: plaintext.length });
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  /** Throws when the tag does not verify (a wrong key). */
  decrypt(ad: Buffer, ciphertext: Buffer): Buffer {
    if (ciphertext.length < TAG) throw new Error("ciphertext shorter than its tag");
    const d = createDecipheriv("chacha20-poly1305", this.k, nonce(this.n++), { authTagLength: TAG });
    d.setAAD(ad, { plaintextLength: ciphertext.length - TAG });
    d.setAuthTag(ciphertext.subarray(ciphertext.length - TAG));
    return Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - TAG)), d.final()]);
  }
}

function rawPublic(key: KeyObject): Buffer {
  return key.export({ format: "der", type: "spki" }).subarray(SPKI_X25519.length);
}

function dh(priv: KeyObject, pubRaw: Buffer): Buffer {
  const publicKey = createPublicKey({
    key: Buffer.concat([SPKI_X25519, pubRaw]),
    format: "der",
    type: "spki",
  });
  return diffieHellman({ privateKey: priv, publicKey });
}

/** The SymmetricState + HandshakeState of NNpsk0 for one side. */
export class NoiseHandshake {
  private ck: Buffer;
  private h: Buffer;
  private k: CipherState | null = null;
  private readonly e = generateKeyPairSync("x25519");
  private re: Buffer | null = null;

  constructor(
    private readonly initiator: boolean,
    psk: Buffer,
    prologue: Buffer,
  ) {
    if (psk.length !== 32) throw new Error("the PSK must be 32 bytes");
    this.h = createHash("sha256").update(PROTOCOL).digest();
    this.ck = this.h;
    this.mixHash(prologue);
    this.psk = psk;
  }

  private readonly psk: Buffer;

  private mixHash(data: Buffer): void {
    this.h = createHash("sha256").update(this.h).update(data).digest();
  }

  private mixKey(ikm: Buffer): void {
    const [ck, k] = hkdf(this.ck, ikm, 2) as [Buffer, Buffer];
    this.ck = ck;
    this.k = new CipherState(k);
  }

  private mixKeyAndHash(ikm: Buffer): void {
    const [ck, th, k] = hkdf(this.ck, ikm, 3) as [Buffer, Buffer, Buffer];
    this.ck = ck;
    this.mixHash(th);
    this.k = new CipherState(k);
  }

  private encryptAndHash(p: Buffer): Buffer {
    const c = this.k ? this.k.encrypt(this.h, p) : p;
    this.mixHash(c);
    return c;
  }

  private decryptAndHash(c: Buffer): Buffer {
    const p = this.k ? this.k.decrypt(this.h, c) : c;
    this.mixHash(c);
    return p;
  }

  private writeE(): Buffer {
    const pub = rawPublic(this.e.publicKey);
    this.mixHash(pub);
    this.mixKey(pub);
    return pub;
  }

  private readE(msg: Buffer): Buffer {
    if (msg.length < 32) throw new Error("handshake message too short");
    this.re = Buffer.from(msg.subarray(0, 32));
    this.mixHash(this.re);
    this.mixKey(this.re);
    return msg.subarray(32);
  }

  /** Initiator: `-> psk, e` with an empty payload. */
  writeMessage1(): Buffer {
    if (!this.initiator) throw new Error("only the initiator writes message 1");
    this.mixKeyAndHash(this.psk);
    const e = this.writeE();
    return Buffer.concat([e, this.encryptAndHash(Buffer.alloc(0))]);
  }

  /** Responder: reads message 1; throws on a MAC failure (a different PSK). */
  readMessage1(msg: Buffer): void {
    this.mixKeyAndHash(this.psk);
    this.decryptAndHash(this.readE(msg));
  }

  /** Responder: `<- e, ee` with an empty payload. */
  writeMessage2(): Buffer {
    const e = this.writeE();
    this.mixKey(dh(this.e.privateKey, this.re ?? Buffer.alloc(32)));
    return Buffer.concat([e, this.encryptAndHash(Buffer.alloc(0))]);
  }

  /** Initiator: reads message 2; throws on a MAC failure. */
  readMessage2(msg: Buffer): void {
    const rest = this.readE(msg);
    this.mixKey(dh(this.e.privateKey, this.re ?? Buffer.alloc(32)));
    this.decryptAndHash(rest);
  }

  /** The transport ciphers: `send` and `receive` for this side. */
  split(): { send: CipherState; receive: CipherState } {
    const [k1, k2] = hkdf(this.ck, Buffer.alloc(0), 2) as [Buffer, Buffer];
    const c1 = new CipherState(k1);
    const c2 = new CipherState(k2);
    return this.initiator ? { send: c1, receive: c2 } : { send: c2, receive: c1 };
  }
}
