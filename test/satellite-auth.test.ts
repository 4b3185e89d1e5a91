import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SatelliteAuth, TOKEN_FILE } from "../src/satellite/auth.js";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), "sat-auth-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe("SatelliteAuth", () => {
  it("accepts the shared token and per-device tokens, and nothing else", () => {
    const auth = new SatelliteAuth({
      token: "shared-token-0123456789",
      devices: [
        { id: "kitchen", token: "kitchen-token-0123456789" },
        { id: "hall", token: "hall-token-0123456789abc" },
      ],
    });
    expect(auth.verify("shared-token-0123456789")).toEqual({ kind: "shared" });
    expect(auth.verify("kitchen-token-0123456789")).toEqual({ kind: "device", deviceId: "kitchen" });
    expect(auth.verify("hall-token-0123456789abc")).toEqual({ kind: "device", deviceId: "hall" });
    expect(auth.verify("shared-token-012345678")).toBeNull();
    expect(auth.verify("shared-token-0123456789 ")).toBeNull();
    expect(auth.verify("")).toBeNull();
    expect(auth.verify("x".repeat(10_000))).toBeNull();
    expect(auth.sharedToken).toBe("shared-token-0123456789");
    expect(auth.generated).toBe(false);
  });

  it("needs at least one token", () => {
    expect(() => new SatelliteAuth({})).toThrow(/at least one token/);
  });

  it("uses configured tokens without touching the data directory", async () => {
    const dir = await tempDir();
    const auth = await SatelliteAuth.load({
      devices: [{ id: "a", token: "device-token-0123456789" }],
      dataDir: dir,
    });
    expect(auth.sharedToken).toBeUndefined();
    await expect(stat(path.join(dir, TOKEN_FILE))).rejects.toThrow(/ENOENT/);
  });

  it("generates a token into <dataDir>/satellite_token (0600) once and keeps it", async () => {
    const dir = path.join(await tempDir(), "nested");
    const first = await SatelliteAuth.load({ dataDir: dir });
    expect(first.generated).toBe(true);
    const token = first.sharedToken!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const file = path.join(dir, TOKEN_FILE);
    expect((await readFile(file, "utf8")).trim()).toBe(token);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const second = await SatelliteAuth.load({ dataDir: dir });
    expect(second.sharedToken).toBe(token);
    expect(second.verify(token)).toEqual({ kind: "shared" });
  });

  it("replaces a token file that holds a too-short token, keeping 0600", async () => {
    const dir = await tempDir();
    const file = path.join(dir, TOKEN_FILE);
    await writeFile(file, "short\n", { mode: 0o644 });
    const auth = await SatelliteAuth.load({ dataDir: dir });
    expect(auth.sharedToken).not.toBe("short");
    expect((await readFile(file, "utf8")).trim()).toBe(auth.sharedToken);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("concurrent first starts agree on one token", async () => {
    const dir = await tempDir();
    const all = await Promise.all([1, 2, 3, 4].map(() => SatelliteAuth.load({ dataDir: dir })));
    expect(new Set(all.map((a) => a.sharedToken)).size).toBe(1);
  });
});
